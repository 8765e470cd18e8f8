# %% [markdown]
# # Chapter 2 · The backbone
#
# A detector does not look at pixels directly: a **backbone** — a classification network with its classifier
# cut off — turns the image into feature maps at several resolutions. Fine maps (small stride) keep the position
# of small things; coarse maps (stride 32) have seen a large part of the image and know more about *what* is
# there. The neck (Chapter 3) mixes them, the head (Chapter 4) predicts on them.
#
# In this chapter you will
#
# 1. ask [timm](https://github.com/huggingface/pytorch-image-models) for a backbone with `features_only=True`
#    and read the **strides and channels** of its levels from `feature_info`,
# 2. split the network into **stages** and **freeze** all but the last `N` of them,
# 3. keep the **BatchNorm** layers of frozen stages in eval mode — the trap that `requires_grad=False` alone
#    falls into,
# 4. count parameters per stage, trainable and frozen.
#
# Vocabulary: `images [B, 3, H, W]` float, normalised with the backbone's mean/std; a *level* is one returned
# feature map `[B, C_l, H / s_l, W / s_l]` with stride `s_l`.
#
# All models here are created with `pretrained=False` (nothing is downloaded in this course), so their weights
# are **random**. That is fine for everything about shapes, strides and freezing; where it matters for a
# figure, the text says so.

# %%
import math

import matplotlib.pyplot as plt
import timm
import torch
from torch import Tensor, nn

from course import arena_dir, check, hint
from course.reference import ch02 as reference
from detector.config import load_config
from detector.data import CocoDetection, eval_transforms
from detector.model import Backbone
from detector.model.backbone import _module_stages

torch.manual_seed(0)
arena = arena_dir()
train_set = CocoDetection(arena / "train", transforms=eval_transforms(320))
image, target = train_set[2]  # uint8 [3, 320, 320], letterboxed
print(image.shape, image.dtype, len(target["boxes"]), "boxes")

# %% [markdown]
# ## 1. `features_only`: a classifier without its classifier
#
# `timm.create_model(name, features_only=True, out_indices=...)` removes the pooling and the classifier and
# returns a module whose forward gives a **list** of feature maps, one per requested level. Which levels exist,
# their channels and their *reduction* (the stride, in input pixels) are described by `model.feature_info`:

# %%
resnet = timm.create_model("resnet18", pretrained=False, features_only=True)
for level, info in enumerate(resnet.feature_info.info):
    print(level, info)

# %% [markdown]
# For a ResNet, level 0 is the stem (a stride-2 7×7 conv; the max-pool that follows belongs to level 1), and
# levels 1–4 are `layer1` … `layer4` at strides 4, 8, 16, 32. Which levels a detector takes is a decision
# about the data. RetinaNet and FCOS (which add coarser levels on top), YOLOX and YOLOv8 take levels 2, 3, 4 —
# the *P3, P4, P5* maps of strides 8/16/32 — and leave stride 4 out: it would quadruple the number of points (Chapter 5), which pays only when many objects
# are smaller than about 8 pixels. The arena is such a data set (about half of its heads are that small;
# Chapter 5 measures it), so the course's demo config takes one level finer. Its choice, read from the config:

# %%
demo = load_config("arena_cpu")  # the `make train` demo, also trained in Chapters 8–10
demo_strides = Backbone(demo.model.backbone, out_indices=demo.model.out_indices).strides  # from feature_info
print(f"arena_cpu: backbone {demo.model.backbone}, out_indices {list(demo.model.out_indices)} → strides {demo_strides}")

# %% [markdown]
# **Predict, then run.** A non-square `96 × 64` image (height × width) goes through `resnet18` with
# `out_indices=(2, 3, 4)`. Write down the three map shapes `[B, C, H, W]` before you run the cell: the channels
# are printed in the table above, and every stride-2 step halves the side.

# %%
with torch.no_grad():
    print([tuple(f.shape) for f in timm.create_model("resnet18", features_only=True, out_indices=(2, 3, 4))(torch.zeros(1, 3, 96, 64))])

# %% [markdown]
# Strides 8, 16, 32: `96 / 8 = 12` rows and `64 / 8 = 8` columns at level 2, then halves — `[1, 128, 12, 8]`,
# `[1, 256, 6, 4]`, `[1, 512, 3, 2]`. The width of the image is the *last* axis.
#
# **Exercise 2.1** — write `create_backbone(name, out_indices)`: return the timm features model and, read from
# its `feature_info`, the channels and strides of the requested levels. Never hard-code them: a backbone
# swap (`resnet50`, `efficientnet_b0`) must just work.


# %%
def create_backbone(
    name: str, out_indices: tuple[int, ...] = (2, 3, 4)
) -> tuple[nn.Module, list[int], list[int]]:
    """A timm model that returns feature maps, with the channels and strides of those maps.

    Args:
        name: a timm model name (``"resnet18"``, ``"efficientnet_b0"``, ...); created with ``pretrained=False``.
        out_indices: the feature levels to return (which stride a level has depends on the model).

    Returns:
        ``(model, channels, strides)``: ``model(images [B, 3, H, W])`` is a list of ``len(out_indices)`` maps
        ``[B, channels[l], ~H / strides[l], ~W / strides[l]]``; ``channels`` and ``strides`` are lists of ints.
    """
    ### BEGIN SOLUTION Exercise 2.1 · create_backbone: let timm describe the levels, hard-code nothing
    model = timm.create_model(name, pretrained=False, features_only=True, out_indices=tuple(out_indices))
    return model, list(model.feature_info.channels()), list(model.feature_info.reduction())
    ### END SOLUTION


# %%
create_backbone = check("2.1", create_backbone, fallback=reference.create_backbone)

# %% [markdown]
# Two backbones side by side on a 320-pixel input. Their channels differ a lot (ResNet-18 doubles the width at
# every stage, EfficientNet-B0 is much thinner), but the strides agree — which is all the neck and the head
# need to know about the spatial layout.

# %%
x = torch.randn(1, 3, 320, 320)
for name in ("resnet18", "efficientnet_b0"):
    model, channels, strides = create_backbone(name, (1, 2, 3, 4))
    with torch.no_grad():
        shapes = [tuple(f.shape[1:]) for f in model(x)]
    print(f"{name:16s} channels {channels}  strides {strides}\n{'':16s} maps {shapes}")

# %% [markdown]
# ## 2. What the levels see
#
# One arena image through `resnet18` at strides 4, 8, 16 and 32. Each panel shows the per-cell mean of
# `|activation|` over channels. The weights are **random** (nothing is downloaded here), yet the maps keep the
# spatial structure of the image: a random 3×3 filter is still a local contrast detector, and edges of figures,
# walls and the HUD light up. What random weights do *not* give is meaning — after training the coarse maps
# respond to *objects*, not to contrast. Note the grid: at stride 32 a 320-pixel image is 10 × 10 cells, and a
# 6-pixel head is a fifth of one cell.

# %%
model, channels, strides = create_backbone("resnet18", (1, 2, 3, 4))
model.eval()
mean = torch.tensor(model.pretrained_cfg["mean"]).view(1, 3, 1, 1)  # ImageNet statistics
std = torch.tensor(model.pretrained_cfg["std"]).view(1, 3, 1, 1)
images = (image[None].float() / 255 - mean) / std  # [1, 3, 320, 320], normalised as the backbone expects
with torch.no_grad():
    features = model(images)

fig, axes = plt.subplots(1, 5, figsize=(16, 3.4))
axes[0].imshow(image.permute(1, 2, 0))
axes[0].set_title("input 320 × 320")
for ax, feature, stride in zip(axes[1:], features, strides, strict=True):
    energy = feature[0].abs().mean(0)  # [H / s, W / s]
    ax.imshow(energy, cmap="magma")
    ax.set_title(f"stride {stride}: {feature.shape[1]} × {feature.shape[2]} × {feature.shape[3]}")
for ax in axes:
    ax.set_axis_off()
plt.suptitle("mean |activation| per cell (random weights)", y=1.02)
plt.show()

# %% [markdown]
# ## 3. Stages
#
# Fine-tuning often freezes the early part of a pretrained backbone: its edge and texture filters are generic,
# and a small data set (the halo set has 462 training images) cannot improve them — only overfit them. To
# freeze "all but the last `N` stages" we first need the stages.
#
# `feature_info` names, for each level `k`, the module that *produces* it (`info["module"]`: `act1`, `layer1`,
# … for a ResNet; `blocks.0`, `blocks.1`, `blocks.2`, `blocks.4`, `blocks.6` for EfficientNet-B0). We call
# **stage `k`** everything that runs after level `k-1` is produced, up to and including the module of level
# `k`; stage 0 is the stem. timm registers modules in forward order, so "runs before" is "comes earlier in
# `model.named_modules()`". This rule puts EfficientNet's `blocks.3` in stage 3 together with `blocks.4`, and
# ResNet's `conv1` and `bn1` in stage 0 (level 0's module, `act1`, has no parameters at all).
#
# **Exercise 2.2** — write `parameter_stages(model)`: the stage of every parameter, by name.


# %%
def stage_boundaries(model: nn.Module) -> list[str]:
    """Names of the modules that produce feature levels ``0 … max(out_indices)``, in order."""
    info = model.feature_info
    return [info.get("module", level) for level in range(max(info.out_indices) + 1)]


def parameter_stages(model: nn.Module) -> dict[str, int]:
    """Stage of every parameter of a timm features model.

    Stage ``k`` holds every module registered after the last module of boundary ``k - 1`` and up to the last
    module inside boundary ``k`` (``stage_boundaries(model)[k]``); stage 0 starts at the beginning. Anything
    after the last boundary belongs to the last stage.

    Args:
        model: a timm model created with ``features_only=True``.

    Returns:
        ``{parameter name as in model.named_parameters(): stage}`` for every parameter, stages ``0 … K``.
    """
    ### BEGIN SOLUTION Exercise 2.2 · parameter_stages: a stage ends with the last module inside its boundary
    modules = list(model.named_modules())
    names = [name for name, _ in modules]
    ends = [
        max(i for i, name in enumerate(names) if name == b or name.startswith(b + "."))
        for b in stage_boundaries(model)
    ]
    stages = {}
    for position, (module_name, module) in enumerate(modules):
        stage = next((k for k, end in enumerate(ends) if position <= end), len(ends) - 1)
        for parameter_name, _ in module.named_parameters(recurse=False):
            stages[f"{module_name}.{parameter_name}" if module_name else parameter_name] = stage
    return stages
    ### END SOLUTION


# %%
parameter_stages = check("2.2", parameter_stages, fallback=reference.parameter_stages)
for name in ("resnet18", "efficientnet_b0"):
    model, _, _ = create_backbone(name, (2, 3, 4))
    stages = parameter_stages(model)
    firsts = {}
    for parameter_name, stage in stages.items():
        firsts.setdefault(stage, parameter_name)
    print(name, "— first parameter of each stage:", firsts)

# %% [markdown]
# ## 4. Freezing — and the BatchNorm trap
#
# Freezing a stage means two things:
#
# 1. `requires_grad=False` on its parameters, so the optimizer never changes them (and autograd skips their
#    gradients: a frozen stem saves memory and time);
# 2. its **BatchNorm layers stay in eval mode**. A BatchNorm in train mode normalises with the statistics of the
#    current batch *and updates its running mean/variance*, which are buffers, not parameters:
#    `requires_grad=False` does not protect them. With batches of 8 arena images they drift away from the
#    statistics the (pre)trained weights were made for, and the "frozen" stage changes what it computes.
#
# `model.train()` switches every submodule to train mode, so a frozen stage must be switched back each time:
# override `train`.
#
# **Exercise 2.3** — write `FrozenStagesBackbone`: with `trainable_stages=N` only the last `N` stages train
# (the stem is frozen whenever anything is frozen; `N=0` freezes everything; `None` freezes nothing), and the
# BatchNorm layers of frozen stages stay in eval mode through `.train()`.


# %%
class FrozenStagesBackbone(nn.Module):
    """A timm features backbone whose first stages are frozen (the teaching version of ``Backbone``).

    Args:
        name: timm model name, created with ``pretrained=False``.
        out_indices: feature levels to return.
        trainable_stages: ``N``: stages ``K - N + 1 … K`` train (``K`` = last stage), the rest — always
            including the stem, stage 0 — is frozen; ``0`` freezes everything; ``None`` freezes nothing.

    Attributes:
        model, channels, strides: as returned by :func:`create_backbone`.
        frozen_norms: the BatchNorm modules of frozen stages (kept in eval mode).

    The package's ``Backbone`` freezes whole modules (also those without parameters) and accepts
    ``freeze="none" | "all" | N``; it reads the stages the same way.
    """

    def __init__(
        self, name: str, out_indices: tuple[int, ...] = (2, 3, 4), trainable_stages: int | None = None
    ) -> None:
        super().__init__()
        self.model, self.channels, self.strides = create_backbone(name, out_indices)
        stages = parameter_stages(self.model)  # {parameter name: stage}
        ### BEGIN SOLUTION Exercise 2.3 · FrozenStagesBackbone: no gradients and fixed BatchNorm statistics
        last_stage = max(stages.values())
        first_trainable = 0 if trainable_stages is None else max(last_stage - trainable_stages + 1, 1)
        for parameter_name, parameter in self.model.named_parameters():
            parameter.requires_grad_(stages[parameter_name] >= first_trainable)
        self.frozen_norms = [
            module
            for module in self.model.modules()
            if isinstance(module, nn.modules.batchnorm._BatchNorm)
            and module.weight is not None
            and not module.weight.requires_grad
        ]
        self.train()
        ### END SOLUTION

    def train(self, mode: bool = True) -> "FrozenStagesBackbone":
        """Like ``nn.Module.train``, but the BatchNorm layers of frozen stages stay in eval mode."""
        super().train(mode)
        ### BEGIN SOLUTION Exercise 2.3 · FrozenStagesBackbone: no gradients and fixed BatchNorm statistics
        for module in self.frozen_norms:
            module.eval()
        ### END SOLUTION
        return self

    def forward(self, images: Tensor) -> list[Tensor]:
        """``images [B, 3, H, W]`` normalised → the feature maps of ``out_indices``."""
        return self.model(images)


# %%
FrozenStagesBackbone = check("2.3", FrozenStagesBackbone, fallback=reference.frozen_stages_backbone)

# %% [markdown]
# The trap, measured. We put two copies of resnet18 in train mode — the usual state during training — after
# freezing everything: one with `requires_grad=False` only, one with `FrozenStagesBackbone(trainable_stages=0)`.
# One forward pass over 8 arena images, then we look at the running mean of the stem's BatchNorm and at what
# the network computes *in eval mode* afterwards.

# %%
batch = torch.stack([train_set[i][0] for i in range(8)]).float() / 255
batch = (batch - mean) / std  # [8, 3, 320, 320]

naive = FrozenStagesBackbone("resnet18", trainable_stages=None)
for parameter in naive.parameters():
    parameter.requires_grad_(False)  # "frozen" — but naive.train() still puts BatchNorm in train mode
careful = FrozenStagesBackbone("resnet18", trainable_stages=0)
careful.load_state_dict(naive.state_dict())

with torch.no_grad():
    eval_before = [f.clone() for f in naive.eval()(batch[:2])]
    for backbone in (naive, careful):
        before = backbone.model.bn1.running_mean.clone()
        backbone.train()(batch)  # one training-mode forward pass
        drift = (backbone.model.bn1.running_mean - before).abs().max().item()
        after = backbone.eval()(batch[:2])
        change = max((a - r).abs().max().item() for a, r in zip(after, eval_before, strict=True))
        print(
            f"{type(backbone).__name__ if backbone is careful else 'requires_grad=False only':28s} "
            f"stem BN running-mean drift {drift:.4f}; eval output change {change:.4f}"
        )

# %% [markdown]
# With `requires_grad=False` alone, a single forward pass moved the running statistics, and with them the
# output of a network whose parameters never changed. (With random weights the size of the numbers means little;
# what matters is that they are not zero, and that the drift adds up over every step of training.)
#
# ## 5. Counting parameters
#
# **Predict, then run.** The first conv of `layer2` is a 3×3 conv from 64 to 128 channels without bias, followed by
# a BatchNorm of 128 channels. How many parameter *elements* do the two hold, and how many parameter *tensors*?

# %%
block = resnet.layer2[0]
print(
    "conv1:", [tuple(p.shape) for p in block.conv1.parameters()], sum(p.numel() for p in block.conv1.parameters()),
    "| bn1:", [tuple(p.shape) for p in block.bn1.parameters()], sum(p.numel() for p in block.bn1.parameters()),
)

# %% [markdown]
# `3 · 3 · 64 · 128 = 73 728` weights in one tensor; BatchNorm has a weight and a bias of 128 each (its running
# mean and variance are buffers, not parameters): 256 elements in two tensors.
#
# **Exercise 2.4** — write `parameters_per_stage(model, stages)`: the number of parameters (elements, not
# tensors) in each stage, in total and trainable.


# %%
def parameters_per_stage(model: nn.Module, stages: dict[str, int]) -> tuple[list[int], list[int]]:
    """Parameter counts per stage.

    Args:
        model: a module whose ``named_parameters()`` are the keys of ``stages``.
        stages: ``{parameter name: stage}`` as returned by :func:`parameter_stages`.

    Returns:
        ``(total, trainable)``: two lists of length ``max(stage) + 1``; ``total[k]`` is the number of parameter
        elements (``numel``) in stage ``k``, ``trainable[k]`` those with ``requires_grad``.
    """
    ### BEGIN SOLUTION Exercise 2.4 · parameters_per_stage: count elements, not tensors, stage by stage
    total = [0] * (max(stages.values()) + 1)
    trainable = [0] * len(total)
    for name, parameter in model.named_parameters():
        total[stages[name]] += parameter.numel()
        if parameter.requires_grad:
            trainable[stages[name]] += parameter.numel()
    return total, trainable
    ### END SOLUTION


# %%
parameters_per_stage = check("2.4", parameters_per_stage, fallback=reference.parameters_per_stage)

# %% [markdown]
# Where the parameters are. A 3×3 conv has `9 · C_in · C_out` weights whatever the size of its map, and ResNet-18
# doubles the channels at every stage, so the last stage — 512 channels on a 10 × 10 map — holds most of the
# parameters (its share is printed under the figure). Freezing the last stages removes most of the capacity;
# freezing the first ones removes few parameters.

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
for ax, name in zip(axes, ("resnet18", "efficientnet_b0"), strict=True):
    backbone = FrozenStagesBackbone(name, trainable_stages=2)
    total, trainable = parameters_per_stage(backbone.model, parameter_stages(backbone.model))
    labels = ["stem"] + [f"stage {k}" for k in range(1, len(total))]
    ax.bar(labels, [t / 1e6 for t in total], color="lightgrey", label="frozen")
    ax.bar(labels, [t / 1e6 for t in trainable], color="tab:blue", label="trainable")
    for k, value in enumerate(total):
        ax.text(k, value / 1e6, f"{value / 1e6:.2f}M", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("parameters (millions)")
    share = sum(trainable) / sum(total)
    ax.set_title(
        f"{name}, trainable_stages=2: {sum(trainable) / 1e6:.2f}M of {sum(total) / 1e6:.2f}M trainable ({share:.0%})"
    )
    ax.legend()
    if name == "resnet18":
        last_share = total[-1] / sum(total)
plt.tight_layout()
plt.show()
print(f"resnet18: the last stage holds {last_share:.0%} of the parameters")

# %% [markdown]
# Parameters are not compute. A conv's cost is its weights *times the number of cells it slides over*: halving the
# map side quarters the cells, and ResNet doubles the channels at the same time, which quadruples `C_in · C_out`.
# The two cancel, so each ResNet stage costs about the same number of multiply-adds. What *does* sit early is
# **activation memory**: every layer's output is kept for the backward pass, and the early maps are large. Both
# measured on one 320-pixel image (forward hooks on every leaf module; multiply-adds of the convs; outputs in float32):

# %%
def cost_per_stage(model: nn.Module, side: int = 320) -> tuple[list[float], list[float]]:
    """Per stage: conv multiply-adds (G) and the float32 size of all leaf-module outputs (MB), batch 1."""
    boundaries = stage_boundaries(model)
    stage_of = {id(module): stage for module, stage in _module_stages(model, boundaries)}
    macs, activations = [0.0] * len(boundaries), [0.0] * len(boundaries)

    def hook(module, _inputs, output):
        stage = stage_of[id(module)]
        activations[stage] += output.numel() * 4 / 1e6
        if isinstance(module, nn.Conv2d):
            kernel = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            macs[stage] += output.numel() * kernel / 1e9

    handles = [m.register_forward_hook(hook) for m in model.modules() if id(m) in stage_of and not list(m.children())]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, side, side))
    for handle in handles:
        handle.remove()
    return macs, activations


model, _, _ = create_backbone("resnet18", (1, 2, 3, 4))
macs, activations = cost_per_stage(model)
for stage, (gmacs, megabytes) in enumerate(zip(macs, activations, strict=True)):
    name = "stem" if stage == 0 else f"stage {stage}"
    print(f"resnet18 {name:8s} {gmacs:5.2f} GMACs   activations {megabytes:5.1f} MB")
print(
    f"stages 1–4: {min(macs[1:]):.2f}–{max(macs[1:]):.2f} GMACs each (roughly flat); stem + stage 1: "
    f"{(macs[0] + macs[1]) / sum(macs):.0%} of the multiply-adds, "
    f"{(activations[0] + activations[1]) / sum(activations):.0%} of the activation memory"
)
for name in ("resnet18", "efficientnet_b0"):
    macs, activations = cost_per_stage(create_backbone(name, (1, 2, 3, 4))[0])
    print(f"{name:16s} total {sum(macs):.2f} GMACs, {sum(activations):.0f} MB of activations at 320 px")

# %% [markdown]
# So freezing the stem and the first stage saves their share of the backward pass's compute — per stage about as
# much as freezing a later one would — but a larger share of the *memory* of training: when nothing below the first
# trainable stage needs a gradient, autograd does not keep those large early activations at all.

# %% [markdown]
# ## What the package does differently
#
# - `detector.model.Backbone(name, out_indices, pretrained, freeze)` is this chapter's backbone in one class:
#   `freeze="none" | "all" | N`, with the same stage rule. It keeps *every* module of a frozen stage in eval
#   mode (not only BatchNorm — dropout and stochastic depth too), which is what "frozen" should mean.
# - `pretrained` is a **local file** only: the file is compared key by key and shape by shape with the
#   architecture before loading. A ResNet-50 file given to a ResNet-18 would also fail inside timm, with
#   PyTorch's long list of size mismatches; the package's check fails first, with one message that names the file,
#   the mismatching keys and the config keys to fix (`model.backbone`, `model.pretrained`).
# - The backbone does not normalise: `detector.model.Detector` takes uint8 (or `[0, 1]`) images and applies the
#   backbone's `pretrained_cfg` mean/std itself, so no data pipeline has to know them.
#
# ## Summary
#
# `features_only=True` turns any timm classifier into a multi-scale feature extractor; `feature_info` gives each
# level's channels and stride (and the module that produces it) so nothing is hard-coded. Stages are the
# stretches between those modules. Freezing is `requires_grad=False` **and** eval-mode BatchNorm, kept through
# every `.train()` call. The parameters sit in the last stages; the compute is spread about evenly over a ResNet's
# stages; the activation memory sits in the first.
#
# ## Open questions
#
# 1. A pretrained backbone's BatchNorm statistics come from ImageNet photos; the arena images are flat-shaded
#    renders. When would you rather *unfreeze* BatchNorm statistics while keeping the weights frozen?
# 2. EfficientNet-B0's features have far fewer parameters (figure above) and multiply-adds (printed above) than
#    ResNet-18's. Time both on your CPU: is it faster by the same factor? What costs, if not parameters and
#    multiply-adds?
# 3. The demo config takes strides 4/8/16 and leaves stride 32 out. What does it give up, and what would a
#    four-level model (4/8/16/32) cost?

# %% [markdown] tags=["answer"] jupyter={"source_hidden": true}
# **Answers.**
#
# 1. When the new images' statistics differ strongly from ImageNet's (flat-shaded renders, infrared, medical
#    scans) *and* the batches are large enough for reliable batch statistics (a few dozen images per device).
#    A cheaper middle way keeps the weights frozen and only re-estimates the running statistics with a few
#    forward passes over the new data in train mode (the idea of AdaBN, Li et al. 2016). With batches of 8, as
#    here, batch statistics are noisy, which is why frozen stages keep theirs.
# 2. Usually not: on a CPU a conv net is often limited by memory traffic rather than arithmetic. EfficientNet's
#    depthwise convs do little arithmetic per byte they read, and its expanded (inverted-bottleneck) activations
#    are large — compare the activation totals printed above. Many small layers also pay a fixed overhead each.
#    Measure with `torch.utils.benchmark` before choosing a backbone for its parameter count.
# 3. It gives up the coarsest level, whose cells see the most context: the largest arena bodies (about a third
#    of the frame) must now be predicted from the stride-16 level, whose receptive field (Chapter 5 computes it)
#    is still larger than those bodies. It saves the backbone's last stage — most of a ResNet's parameters
#    (ResNet-18's share is printed above; the demo's ResNet-10-T is built the same way) — and one level of neck and
#    head. Adding stride 32 back would add a 10 × 10 level, few points next to the stride-4 level's 80 × 80, and
#    that stage's parameters and multiply-adds.
