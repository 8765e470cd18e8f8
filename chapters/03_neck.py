# %% [markdown]
# # Chapter 3 · The neck: FPN + PAN
#
# The backbone (Chapter 2) gives three maps: C3 at stride 8 is sharp but has seen little context, C5 at stride
# 32 has a receptive field larger than the whole 320-pixel input (computed in section 3) but is coarse. An object
# is best *detected* on the level that matches its size, but every level should know both *what* (semantics from
# C5) and *where* (detail from C3). The **neck** mixes the levels:
#
# - **FPN** (feature pyramid network, Lin et al. 2017) runs *top-down*: semantics flow from coarse to fine,
# - **PAN** (path aggregation network, Liu et al. 2018) runs *bottom-up* afterwards: localisation detail flows
#   back from fine to coarse, through a short path instead of the whole backbone.
#
# YOLOv5/v8, YOLOX and PP-YOLOE all use this FPN + PAN shape. In this chapter you will build it as modules:
#
# 1. the top-down merge (nearest upsampling and addition),
# 2. the FPN (1×1 lateral convs, top-down merges, 3×3 output convs),
# 3. the PAN (3×3 stride-2 convs, additions, 3×3 output convs),
# 4. the neck that chains them — and check it against the package's `FpnPan` with the same weights.
#
# Vocabulary: the backbone maps `C3, C4, C5` are `[B, in_channels[l], H_l, W_l]`; every neck output `P3, P4,
# P5` is `[B, width, H_l, W_l]` — same sizes, one common width, so that one head can serve all levels.
#
# The examples use the classic levels of strides 8/16/32 and their names; the demo model takes one level finer
# (strides 4/8/16, Chapter 2), and the same neck serves any run of consecutive levels (its choice is printed at the
# end of the chapter).

# %%
import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from torch import Tensor, nn

from course import arena_dir, check, hint
from course.reference import ch03 as reference
from detector.config import load_config
from detector.data import CocoDetection, eval_transforms
from detector.model import Backbone, FpnPan

torch.manual_seed(0)
arena = arena_dir()
image, target = CocoDetection(arena / "train", transforms=eval_transforms(320))[2]  # uint8 [3, 320, 320]

# %% [markdown]
# Every conv of the neck is a conv → BatchNorm → SiLU block, as in the YOLO family. Its padding `k // 2` keeps
# the size for stride 1 and gives `ceil(H / 2)` for stride 2.


# %%
class ConvBnAct(nn.Sequential):
    """``Conv2d(k, stride, padding=k // 2, bias=False) → BatchNorm2d → SiLU``: ``[B, c_in, H, W] → [B, c_out, H', W']``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),  # the conv has no bias: BatchNorm's shift replaces it
            nn.SiLU(inplace=True),
        )


# %% [markdown]
# ## 1. The top-down merge
#
# FPN brings a coarse map down to the next finer level by **nearest-neighbour upsampling** (every coarse cell
# becomes a 2 × 2 block) and **adds** it to that level's lateral map. Nearest, not bilinear: the sum is followed
# by a 3×3 conv that smooths anyway, and nearest keeps each coarse cell's value exactly over the finer cells it
# covers.
#
# When the input side is a multiple of 32, the coarse map is exactly half the size of the finer one. When it is
# not, a ResNet rounds *up* at every stride-2 step (`ceil(H / 2)`): a 100-pixel input gives maps of 13, 7 and 4
# cells, and `2 × 4 = 8 ≠ 7`. So upsample to the lateral's **size**, not by a factor of 2.
#
# **Predict, then run.** A `2 × 2` coarse map `[[1, 2], [3, 4]]` is upsampled to `4 × 4` and added to a lateral
# map of zeros. Write down the `4 × 4` result before you run the cell under the exercise: which output cells get
# the value 3?
#
# **Exercise 3.1** — write `upsample_add(coarse, lateral)`.


# %%
def upsample_add(coarse: Tensor, lateral: Tensor) -> Tensor:
    """Top-down merge: nearest-upsample ``coarse`` to ``lateral``'s size and add.

    Args:
        coarse: ``[B, C, h, w]``, the merged map of the coarser level (usually ``h = ceil(H / 2)``).
        lateral: ``[B, C, H, W]``, this level's lateral map.

    Returns:
        ``[B, C, H, W]``: the lateral map plus, in every cell, the value of the coarse cell that covers it.
    """
    # YOUR CODE HERE
    raise NotImplementedError('Exercise 3.1 · upsample_add: each coarse cell covers the finer cells under it, then add')


# %%
upsample_add = check("3.1", upsample_add, fallback=reference.upsample_add)
print(upsample_add(torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]), torch.zeros(1, 1, 4, 4))[0, 0])

# %% [markdown]
# Every coarse cell becomes a `2 × 2` block: the 3 (row 1, column 0 of the coarse map) fills rows 2–3, columns 0–1.

# %% [markdown]
# ## 2. FPN: the top-down path
#
# For levels `l = 3, 4, 5` (index 0, 1, 2 here):
#
# $$L_l = \mathrm{lateral}_l(C_l) \quad (1\times1), \qquad M_5 = L_5, \quad M_l = L_l + \mathrm{up}(M_{l+1}),
# \qquad F_l = \mathrm{out}_l(M_l) \quad (3\times3).$$
#
# The 1×1 *lateral* conv brings every level to the common `width` (ResNet-18's C3, C4, C5 have 128, 256, 512
# channels) so that maps can be added. The 3×3 *output* conv smooths the sum — nearest upsampling leaves 2×2
# blocks — and gives each level its own mix.
#
# **Exercise 3.2** — write `TopDown`. Name the parts exactly `lateral` and `fpn_out` (one `ConvBnAct` per
# level in `nn.ModuleList`s, fine to coarse): the tests copy the package's weights into them by name.


# %%
class TopDown(nn.Module):
    """FPN top-down path over ``L`` levels, fine to coarse.

    Args:
        in_channels: channels of each backbone level, fine to coarse (e.g. ``[128, 256, 512]``).
        width: channels of every output map.

    Attributes:
        lateral: ``nn.ModuleList`` of ``L`` ``ConvBnAct(in_channels[l], width, kernel_size=1)``.
        fpn_out: ``nn.ModuleList`` of ``L`` ``ConvBnAct(width, width, kernel_size=3)``.

    ``forward(features)``: ``L`` maps ``[B, in_channels[l], H_l, W_l]`` → ``L`` maps ``[B, width, H_l, W_l]``.
    """

    def __init__(self, in_channels: list[int], width: int) -> None:
        super().__init__()
        # YOUR CODE HERE
        raise NotImplementedError('Exercise 3.2 · TopDown: one common width, then semantics flow from coarse to fine')

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        # YOUR CODE HERE
        raise NotImplementedError('Exercise 3.2 · TopDown: one common width, then semantics flow from coarse to fine')


# %%
TopDown = check("3.2", TopDown)

# %% [markdown]
# ## 3. PAN: the bottom-up path
#
# After FPN, the fine level knows about semantics, but the coarse level's knowledge of *where exactly* comes
# from the top of the backbone, many layers away from the pixels (ResNet-18's C5 is 17 convs deep, as counted
# below; ResNet-50's, 49). How far C5 "sees" follows from the kernels and strides along the way: each `k × k` conv adds
# `(k - 1) · j` pixels to the receptive field, where `j` is the product of the strides before it. Counted along
# the main path of the blocks (the shortcut's 1×1 convs add nothing):

# %%
def main_path_layers(model: nn.Module) -> list[nn.Module]:
    """The convs and max-pools of a timm ResNet in forward order, without the 1×1 shortcut ("downsample") convs."""
    return [
        m
        for name, m in model.named_modules()
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d)) and "downsample" not in name
    ]


def receptive_field(layers: list[nn.Module]) -> int:
    """Theoretical receptive field in input pixels after ``layers`` (each with ``kernel_size`` and ``stride``)."""
    field, jump = 1, 1
    for layer in layers:
        kernel = layer.kernel_size if isinstance(layer.kernel_size, int) else layer.kernel_size[0]
        stride = layer.stride if isinstance(layer.stride, int) else layer.stride[0]
        field += (kernel - 1) * jump
        jump *= stride
    return field


resnet18 = Backbone("resnet18", out_indices=(2, 3, 4)).model
layers = main_path_layers(resnet18)
convs = [m for m in layers if isinstance(m, nn.Conv2d)]
print(f"resnet18 C5: {len(convs)} convs deep, receptive field {receptive_field(layers)} px (input: 320 px)")

# %% [markdown]
# The *theoretical* receptive field is larger than the image; the *effective* one — where the output actually
# depends on the input — is much smaller and concentrated near the centre of that field (Luo et al. 2016). Either
# way, C5's cells are far from the pixels. PAN adds a short bottom-up path:
#
# $$N_3 = F_3, \qquad N_l = \mathrm{out}'_l\big(F_l + \mathrm{down}_l(N_{l-1})\big),$$
#
# with `down` a 3×3 conv of stride 2 (it halves the size, `ceil(H / 2)` — the same rounding as the backbone, so
# the sizes always match) and `out'` a 3×3 conv.
#
# **Exercise 3.3** — write `BottomUp`, with parts named `downsample` and `pan_out` (`L - 1` blocks each).


# %%
class BottomUp(nn.Module):
    """PAN bottom-up path over ``L`` levels of equal width, fine to coarse.

    Args:
        width: channels of every map, in and out.
        num_levels: ``L``.

    Attributes:
        downsample: ``nn.ModuleList`` of ``L - 1`` ``ConvBnAct(width, width, kernel_size=3, stride=2)``;
            ``downsample[l - 1]`` takes level ``l - 1`` to the size of level ``l``.
        pan_out: ``nn.ModuleList`` of ``L - 1`` ``ConvBnAct(width, width, kernel_size=3)`` for levels ``1 … L-1``.

    ``forward(features)``: ``L`` maps ``[B, width, H_l, W_l]`` (the FPN outputs) → ``L`` maps of the same shapes.
    """

    def __init__(self, width: int, num_levels: int) -> None:
        super().__init__()
        # YOUR CODE HERE
        raise NotImplementedError('Exercise 3.3 · BottomUp: detail flows back from fine to coarse along a short path')

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        # YOUR CODE HERE
        raise NotImplementedError('Exercise 3.3 · BottomUp: detail flows back from fine to coarse along a short path')


# %%
BottomUp = check("3.3", BottomUp)

# %% [markdown]
# ## 4. The neck
#
# **Exercise 3.4** — chain the two paths in `Neck`, with parts `top_down` and `bottom_up`. Its `state_dict`
# keys are then the package's `FpnPan` keys with a `top_down.` or `bottom_up.` prefix: `top_down.lateral.0.0.weight`
# ↔ `lateral.0.0.weight`. That makes weights portable between the two, and it is how the check compares your
# neck with the package's: same weights in, same maps out.


# %%
class Neck(nn.Module):
    """FPN then PAN: backbone maps ``[B, in_channels[l], H_l, W_l]`` → ``[B, width, H_l, W_l]``, fine to coarse.

    Attributes:
        top_down: :class:`TopDown` ``(in_channels, width)``.
        bottom_up: :class:`BottomUp` ``(width, len(in_channels))``.

    The package's ``FpnPan`` is the same network in one module (keys without the prefixes), and it also resizes
    after the stride-2 convs, for backbones that do not round sizes up the way ResNets do.
    """

    def __init__(self, in_channels: list[int], width: int) -> None:
        super().__init__()
        # YOUR CODE HERE
        raise NotImplementedError('Exercise 3.4 · Neck: the top-down path, then the bottom-up path')

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        # YOUR CODE HERE
        raise NotImplementedError('Exercise 3.4 · Neck: the top-down path, then the bottom-up path')


def to_package_state(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """``Neck`` keys → ``FpnPan`` keys: drop the ``top_down.`` / ``bottom_up.`` prefix."""
    return {key.split(".", 1)[1]: value for key, value in state_dict.items()}


# %%
Neck = check("3.4", Neck, fallback=FpnPan)

backbone = Backbone("resnet18", out_indices=(2, 3, 4)).eval()  # random weights, strides 8/16/32
neck = Neck(backbone.channels, 64).eval()
package_neck = FpnPan(backbone.channels, 64).eval()
if isinstance(neck, FpnPan):  # the check fell back to the package: this compares the package with itself
    print("(Neck is not done yet: `neck` is the package's FpnPan)")
    package_neck.load_state_dict(neck.state_dict())
else:
    package_neck.load_state_dict(to_package_state(neck.state_dict()))
with torch.no_grad():
    c_maps = backbone(torch.randn(2, 3, 320, 320))
    mine, theirs = neck(c_maps), package_neck(c_maps)
for level, (a, b) in enumerate(zip(mine, theirs, strict=True)):
    print(f"P{level + 3}: {tuple(a.shape)}, max |yours - package| = {(a - b).abs().max().item():.2e}")

# %% [markdown]
# ## 5. The data flow
#
# The whole neck as a picture: backbone maps on the left (box height ∝ map size), the FPN path coming down, the
# PAN path going back up, and the three outputs that the head (Chapter 4) reads. Every output has `width`
# channels; every arrow that ends in ⊕ is an addition of two maps of the same shape.


# %%
def draw_neck(ax: plt.Axes, sizes: list[int], in_channels: list[int], width: int) -> None:
    """Diagram of FPN + PAN for three levels: boxes for maps, arrows for convs and merges."""
    rows = {0: 0.0, 1: 2.2, 2: 4.4}  # y position per level: stride 8 at the bottom, 32 on top
    columns = {"C": 0.0, "L": 2.6, "F": 5.2, "N": 7.8}
    titles = {"C": "backbone", "L": "lateral 1×1", "F": "FPN 3×3 (top-down)", "N": "PAN 3×3 (bottom-up)"}
    colors = {"C": "#d9d9d9", "L": "#c6dbef", "F": "#9ecae1", "N": "#fdae6b"}

    def half_height(level: int) -> float:
        return 0.25 + 0.6 * sizes[level] / sizes[0]  # box height ∝ map size

    def box(column: str, level: int, text: str) -> None:
        x, y = columns[column], rows[level]
        ax.add_patch(
            FancyBboxPatch(
                (x, y - half_height(level)),
                1.8,
                2 * half_height(level),
                boxstyle="round,pad=0.05",
                fc=colors[column],
            )
        )
        ax.text(x + 0.9, y, text, ha="center", va="center", fontsize=8)

    def arrow(start, end, text="", color="black", rad=0.0):
        ax.add_patch(
            FancyArrowPatch(
                start,
                end,
                arrowstyle="-|>",
                mutation_scale=12,
                color=color,
                lw=1.3,
                connectionstyle=f"arc3,rad={rad}",
            )
        )
        if text:
            ax.text(
                (start[0] + end[0]) / 2 + 0.08,
                (start[1] + end[1]) / 2,
                text,
                fontsize=7,
                color=color,
                va="center",
            )

    def merge(x: float, y: float, symbol: str = "⊕") -> None:
        ax.text(
            x, y, symbol, ha="center", va="center", fontsize=13, bbox=dict(fc="white", ec="none", pad=0.5)
        )

    fpn_merge_x, pan_merge_x = 4.8, 7.45  # where the two paths add into each level
    for level in range(3):
        stride, side = 8 * 2**level, sizes[level]
        box("C", level, f"C{level + 3}  s={stride}\n{in_channels[level]}×{side}×{side}")
        box("L", level, f"L{level + 3}\n{width}×{side}×{side}")
        box("F", level, f"F{level + 3}\n{width}×{side}×{side}")
        box("N", level, f"P{level + 3} (out)\n{width}×{side}×{side}")
        y = rows[level]
        arrow((1.85, y), (2.55, y))
        arrow((4.45, y), (5.15, y))
        arrow((7.05, y), (7.75, y))
        if level < 2:
            merge(fpn_merge_x, y)  # M_l = L_l + up(M_{l+1})
        if level > 0:
            merge(pan_merge_x, y)  # F_l + down(P_{l-1})
    for level in (2, 1):  # top-down: the merged map M_{l+1} (after ⊕) goes down into level l's ⊕
        arrow(
            (fpn_merge_x, rows[level] - 0.2),
            (fpn_merge_x, rows[level - 1] + 0.2),
            "up ×2\n(nearest)",
            color="tab:blue",
        )
    for level in (1, 2):  # bottom-up: P_{l-1} goes up through a stride-2 conv into level l's ⊕
        start = (8.7, rows[level - 1] + half_height(level - 1) + 0.05)
        arrow(start, (pan_merge_x + 0.05, rows[level] - 0.2), "3×3 s2", color="tab:orange", rad=-0.25)
    for column, title in titles.items():
        ax.text(columns[column] + 0.9, 5.9, title, ha="center", fontsize=9, weight="bold")
    ax.set_xlim(-0.3, 9.9)
    ax.set_ylim(-1.3, 6.3)
    ax.set_axis_off()


fig, ax = plt.subplots(figsize=(12, 5.5))
draw_neck(ax, sizes=[40, 20, 10], in_channels=backbone.channels, width=64)
ax.set_title("FPN + PAN on a 320-pixel input (resnet18 levels, width 64)")
plt.show()

# %% [markdown]
# ## 6. What the levels look like
#
# One arena image through the (random) backbone and neck. The figure shows, per level, the mean `|activation|`
# of the backbone map and of the neck output. With random weights we cannot see *semantics*; what we can see is
# the mixing: the neck's P5 carries finer structure than C5 (it got PAN's bottom-up detail), and its P3 is
# smoother than C3 (it got FPN's coarse context, in 2×2 and 4×4 blocks that the 3×3 output convs only partly
# smooth out).

# %%
mean = torch.tensor(backbone.mean).view(1, 3, 1, 1)
std = torch.tensor(backbone.std).view(1, 3, 1, 1)
with torch.no_grad():
    c_maps = backbone((image[None].float() / 255 - mean) / std)
    p_maps = neck(c_maps)
fig, axes = plt.subplots(2, 4, figsize=(13, 6.4))
for row, (maps, name) in enumerate(((c_maps, "C"), (p_maps, "P"))):
    axes[row, 0].imshow(image.permute(1, 2, 0))
    for column, feature in enumerate(maps, start=1):
        axes[row, column].imshow(feature[0].abs().mean(0), cmap="magma")
        axes[row, column].set_title(
            f"{name}{column + 2}: {feature.shape[1]} × {feature.shape[2]} × {feature.shape[3]}"
        )
for ax in axes.flat:
    ax.set_axis_off()
axes[0, 0].set_title("backbone maps (top), neck outputs (bottom)")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 7. Input sizes that are not multiples of 32
#
# A ResNet halves sizes with `ceil` at each of its five stride-2 steps, so level `l` has `ceil(H / s_l)` cells.
# For sides that are not multiples of 32 the levels stop being exact halves of each other:

# %%
for side in (320, 330, 100, 352):
    with torch.no_grad():
        sizes = [f.shape[-1] for f in backbone(torch.zeros(1, 3, side, side))]
        outputs = neck([torch.randn(1, c, s, s) for c, s in zip(backbone.channels, sizes, strict=True)])
    halves = all(sizes[k] == 2 * sizes[k + 1] for k in range(len(sizes) - 1))
    covered = [s * stride for s, stride in zip(sizes, backbone.strides, strict=True)]
    print(
        f"side {side:3d}: maps {sizes} (ceil(side / s): {[math.ceil(side / s) for s in backbone.strides]}), "
        f"exact halves: {halves}, pixels covered per level {covered}, outputs {[o.shape[-1] for o in outputs]}"
    )
try:
    F.interpolate(torch.zeros(1, 1, 4, 4), scale_factor=2, mode="nearest") + torch.zeros(1, 1, 7, 7)
except RuntimeError as error:
    print("upsampling by a factor instead of to a size:", str(error).splitlines()[0])

# %% [markdown]
# Does nearest resizing to a size still pair each fine cell with "its" coarse cell — fine cell `k` with coarse
# cell `⌊k / 2⌋`, the one that covers it — when the coarse map has `ceil(H / 2)` cells? Nearest resizing reads
# source cell `⌊k · h / H⌋`; with `h = ceil(H / 2)` that is `⌊k / 2⌋` for every `k` (a one-line proof for odd
# `H = 2m + 1`: `k (m + 1) / (2m + 1)` never reaches the next integer). Checked for every size up to 512:

# %%
pairing = []
for fine_size in range(1, 513):
    coarse_size = math.ceil(fine_size / 2)
    index = torch.arange(coarse_size, dtype=torch.float32).view(1, 1, 1, -1)
    source = F.interpolate(index, size=(1, fine_size), mode="nearest")[0, 0, 0]  # the coarse cell each fine cell reads
    pairing.append(torch.equal(source, torch.arange(fine_size) // 2))
print(f"fine cell k reads coarse cell k // 2 for all {len(pairing)} sizes: {all(pairing)}")

# %% [markdown]
# So the levels stay aligned cell by cell. What does go wrong for 330 or 100 pixels:
#
# - **cells outside the image**: 11 cells of stride 32 cover 352 pixels, so the last P5 cell is mostly padding
#   the convs invented, and its point (Chapter 5) at `(10 + 0.5) · 32 = 336` lies outside the 330-pixel image;
# - **levels disagree about the border**: P3 covers 336 pixels, P4 336, P5 352.
#
# That is why the letterbox size (Chapter 1) is a **multiple of the largest stride**: with `S = 320 = 10 · 32`
# every level has exactly `S / s` cells, every coarse cell covers exactly a 2 × 2 block of finer cells, and every
# point lies inside the image. The grey letterbox padding costs a little compute; cells that hang over the border
# see invented padding and give the levels different borders.
#
# ## What the package does differently
#
# - `detector.model.FpnPan` is the same network in one module; its state_dict keys are yours without the
#   `top_down.` / `bottom_up.` prefixes. It checks the number of input levels and names the mismatch.
# - It also resizes after the stride-2 convs when sizes differ (backbones that round down, e.g. some
#   transformers), and skips the resize when they agree, so ResNet inputs pay nothing.
# - The width is `model.neck_width` in the config (the shipped configs' values are printed below). YOLOv8 additionally
#   uses CSP blocks (a split, a few bottlenecks, a concat) instead of single 3×3 convs, and concatenates instead of
#   adding; the idea — two passes, top-down then bottom-up — is the same.
#
# %%
for name in ("arena_cpu", "halo_r50", "roboflow"):
    config = load_config(name)
    print(f"{name:10s} backbone {config.model.backbone:9s} out_indices {list(config.model.out_indices)} neck_width {config.model.neck_width}")

# %% [markdown]
# ## Summary
#
# FPN brings semantics down (1×1 lateral convs to a common width, nearest upsampling, addition, 3×3 output
# convs); PAN brings detail back up (3×3 stride-2 convs, addition, 3×3 output convs). The outputs have the
# backbone's sizes and one width. Inputs should be multiples of the largest stride so that the levels nest
# exactly.
#
# ## Open questions
#
# 1. Adding requires equal widths; concatenating does not. What would concatenation (as in YOLOv8's neck) cost
#    in parameters for the 3×3 output convs, and what might it buy?
# 2. Would a stride-4 level (P2) help the arena's heads under 8 pixels (Chapter 1 printed their share)? What would
#    it cost in points and memory?
# 3. BiFPN (EfficientDet) repeats top-down + bottom-up several times with learned weights per input. When is a
#    second round worth its compute?

# %% [markdown] tags=["answer"] jupyter={"source_hidden": true}
# **Answers.**
#
# 1. A 3×3 conv costs `9 · C_in · C_out` parameters: after concatenating two maps of width `w` its input has
#    `2w` channels, so it doubles. It buys freedom: the conv can weigh the two sources differently per channel
#    instead of adding them with weight 1, and the levels no longer need one common width before merging.
# 2. Yes for the heads that contain no stride-8 point at all: only a finer grid gives them a candidate point
#    (Chapter 5 measures the share). It costs 4× the points of the stride-8 level (an 80 × 80 level on 320 pixels)
#    and its activations, in the neck and in the head — the head runs its towers on every point. The demo config
#    pays that and drops stride 32 instead (Chapter 2).
# 3. When objects of very different sizes must share information in both directions more than once — crowded
#    scenes with large and small objects — and the backbone is weak relative to the neck. EfficientDet found
#    repeated rounds worth it in accuracy per FLOP for its compound-scaled models; on a small CPU model, a second
#    round costs as much as the first and its gain is best measured, not assumed.
