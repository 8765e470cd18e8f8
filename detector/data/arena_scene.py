"""Rendering of one "arena" scene: a game-like frame with humanoid figures of two teams (PIL + numpy).

A scene is a sky/ground/backdrop, props standing on the ground (pillars, crates, low walls, barrels, flags,
lamps) and figures, drawn back to front by their ground contact ``y`` (the painter's algorithm), then
lighting, blur/noise and a HUD. Every item is a list of primitives (ellipse, polygon, rectangle, thick line)
so the same geometry is drawn twice: once in colour and once into an id map that measures occlusion.

Labelling policy (the one Roboflow's halo export follows): a person is labelled with the box of its **full
extent** (also the parts hidden behind scenery or other figures; clipped to the frame) as long as at least
``MIN_VISIBLE`` of it is visible; figures hidden more than that are removed from the scene rather than drawn
unlabelled. A head gets a box only when the figure faces the camera (a visor, not a backpack) and at least
``MIN_HEAD_VISIBLE`` of it is visible. The HUD is an overlay
and does not count as occlusion.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

ARENA_CLASSES = ("enemy", "enemy-head", "friendly", "friendly-head")  # the halo classes, in category-id order
ENEMY, ENEMY_HEAD, FRIENDLY, FRIENDLY_HEAD = range(4)  # labels: indices into ARENA_CLASSES
ENEMY_SHARE = 0.75  # enemy : friendly ≈ 3 : 1, like halo-infinite-angel-videogame
MIN_VISIBLE = 0.3  # figures more than 70 % hidden are removed
MIN_HEAD_VISIBLE = 0.5  # a head less than half visible gets no box
HEIGHT_RANGE = (
    0.055,
    0.34,
)  # standing figure height / frame size: far (heads of a few px) to a third of the frame
FIGURE_COUNTS = (0, 1, 2, 3, 4, 5, 6, 7)
FIGURE_COUNT_P = (0.03, 0.15, 0.22, 0.21, 0.16, 0.11, 0.07, 0.05)
AWAY_P = 0.15  # figures turned away from the camera: their heads get no box
COVER_P = 0.3  # chance that a figure stands right behind a crate or low wall
HEAD_PARTS = ("head", "visor")

Prim = tuple[str, list[float], str, int]  # (shape, flat coords, part, line width)


@dataclass
class Item:
    """Something standing on the ground: a figure (``label`` set) or a prop (``label`` None)."""

    depth: float
    prims: list[Prim]
    palette: dict[str, tuple[int, int, int]]
    label: int | None = None


def _rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return int(r * 255), int(g * 255), int(b * 255)


def _shade(colour: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return tuple(int(min(255, max(0, c * factor))) for c in colour)  # type: ignore[return-value]


def _noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth noise in ``[0, 1]``, ``float32 [size, size]``: a ``cells × cells`` grid upsampled bicubically."""
    small = Image.fromarray((rng.random((cells, cells)) * 255).astype(np.uint8))
    return np.asarray(small.resize((size, size), Image.BICUBIC), dtype=np.float32) / 255.0


def draw_prims(
    draw: ImageDraw.ImageDraw, prims: list[Prim], fill_of, dx: float = 0.0, dy: float = 0.0
) -> None:
    """Draw primitives shifted by ``(-dx, -dy)``; ``fill_of(part)`` gives the fill (colour or id)."""
    for shape, coords, part, width in prims:
        c = [v - (dx if k % 2 == 0 else dy) for k, v in enumerate(coords)]
        fill = fill_of(part)
        if shape == "ellipse":
            draw.ellipse(c, fill=fill)
        elif shape == "rect":
            draw.rectangle(c, fill=fill)
        elif shape == "polygon":
            draw.polygon(c, fill=fill)
        else:
            draw.line(c, fill=fill, width=width, joint="curve")


def _figure(rng: np.random.Generator, cx: float, foot: float, h: float, label: int) -> Item:
    """A humanoid: helmet with visor, torso with chest plate, two arms, two legs, sometimes a rifle."""
    facing = float(rng.choice([-1, 1]))
    pose = rng.choice(["stand", "run", "crouch", "aim"], p=[0.3, 0.25, 0.15, 0.3])
    bulk = rng.uniform(0.85, 1.15)
    away = rng.random() < AWAY_P
    total = h * (0.74 if pose == "crouch" else 1.0)
    top = foot - total
    hx, hy = cx + facing * 0.01 * h, top + 0.09 * h
    sy, hip = top + 0.19 * h, top + (0.47 if pose == "crouch" else 0.53) * h
    sw, hw = 0.17 * h * bulk, 0.11 * h * bulk
    lw, aw = max(1, round(0.085 * h * bulk)), max(1, round(0.07 * h * bulk))
    legs = {
        "stand": [[cx - 0.06 * h, hip, cx - 0.08 * h, foot], [cx + 0.06 * h, hip, cx + 0.08 * h, foot]],
        "run": [
            [cx, hip, cx + facing * 0.13 * h, hip + 0.2 * h, cx + facing * 0.07 * h, foot],
            [cx, hip, cx - facing * 0.05 * h, hip + 0.23 * h, cx - facing * 0.18 * h, foot - 0.04 * h],
        ],
        "crouch": [
            [cx - 0.05 * h, hip, cx + facing * 0.16 * h, hip + 0.1 * h, cx + facing * 0.12 * h, foot],
            [cx + 0.05 * h, hip, cx - facing * 0.02 * h, hip + 0.16 * h, cx - facing * 0.15 * h, foot],
        ],
    }[pose if pose in ("run", "crouch") else "stand"]
    back, front = [cx - facing * 0.15 * h, sy + 0.02 * h], [cx + facing * 0.15 * h, sy + 0.02 * h]
    armed = pose == "aim" or rng.random() < 0.4
    if armed:
        hand = [cx + facing * 0.3 * h, sy + 0.1 * h]
        arms = [back + [cx + facing * 0.1 * h, sy + 0.18 * h] + hand, front + hand]
        gun = [cx + facing * 0.05 * h, sy + 0.13 * h, cx + facing * 0.45 * h, sy + 0.08 * h]
    else:
        swing = 0.1 * h if pose == "run" else 0.03 * h
        arms = [
            back + [back[0] - facing * swing, sy + 0.3 * h],
            front + [front[0] + facing * swing, sy + 0.3 * h],
        ]
        gun = None
    prims: list[Prim] = [("line", arms[0], "limb", aw)] + [("line", leg, "limb", lw) for leg in legs]
    prims += [
        ("polygon", [cx - sw, sy, cx + sw, sy, cx + hw, hip, cx - hw, hip], "armour", 0),
        (
            "polygon",
            [cx - 0.7 * sw, sy + 0.03 * h, cx + 0.7 * sw, sy + 0.03 * h, cx, sy + 0.2 * h],
            "plate",
            0,
        ),
        (
            "ellipse",
            [hx - 0.075 * h * bulk, top, hx + 0.075 * h * bulk, top + 0.18 * h],
            "helmet" if away else "head",
            0,
        ),
    ]
    if away:  # seen from behind: a backpack instead of a visor, and no head box
        prims.append(("rect", [cx - 0.6 * hw, sy + 0.03 * h, cx + 0.6 * hw, hip - 0.08 * h], "pack", 0))
    else:
        visor = [
            hx + facing * 0.03 * h - 0.045 * h,
            hy - 0.03 * h,
            hx + facing * 0.03 * h + 0.045 * h,
            hy + 0.035 * h,
        ]
        prims.append(("ellipse", visor, "visor", 0))
    prims.append(("line", arms[1], "limb", aw))
    if gun is not None:
        prims.append(("line", gun, "gun", max(1, round(0.045 * h))))
    hue = rng.normal(0.0, 0.025) if label == ENEMY else rng.uniform(0.55, 0.66)
    if label == ENEMY and rng.random() < 0.15:
        hue = rng.choice([rng.uniform(0.04, 0.08), rng.uniform(0.9, 0.95)])  # orange or magenta variants
    armour = _rgb(hue, rng.uniform(0.55, 0.95), rng.uniform(0.5, 0.95))
    palette = {
        "armour": armour,
        "limb": _shade(armour, 0.7),
        "plate": _shade(armour, rng.uniform(0.8, 1.3)),
        "head": _shade(armour, rng.uniform(0.9, 1.1)),
        "gun": (50, 52, 56),
        "pack": (62, 66, 58),
        "visor": _rgb(rng.uniform(0.1, 0.15), 0.8, 0.95) if rng.random() < 0.7 else (40, 40, 48),
    }
    palette["helmet"] = palette["head"]
    return Item(foot, prims, palette, label)


def _prop(rng: np.random.Generator, kind: str, x: float, base: float, s: float) -> Item:
    """A prop of ``kind`` standing at ``(x, base)``; ``s`` is its perspective scale in pixels."""
    grey = _rgb(rng.uniform(0, 1), rng.uniform(0, 0.25), rng.uniform(0.35, 0.8))
    if kind == "pillar":
        w = s * rng.uniform(0.12, 0.3)
        top = base - s * rng.uniform(1.2, 4.0)
        prims = [
            ("rect", [x - w / 2, top, x + w / 2, base], "main", 0),
            ("rect", [x - w / 2, top, x - w / 4, base], "detail", 0),
        ]
        return Item(base, prims, {"main": grey, "detail": _shade(grey, 0.75)})
    if kind in ("crate", "wall"):
        w, hgt = (
            (s * rng.uniform(0.25, 0.5),) * 2
            if kind == "crate"
            else (s * rng.uniform(0.8, 2.0), s * rng.uniform(0.2, 0.4))
        )
        top = base - hgt
        main = (
            _rgb(rng.uniform(0.06, 0.14), rng.uniform(0.3, 0.6), rng.uniform(0.35, 0.7))
            if kind == "crate"
            else grey
        )
        prims = [
            (
                "polygon",
                [
                    x - w / 2,
                    top,
                    x + w / 2,
                    top,
                    x + w / 2 + 0.15 * hgt,
                    top - 0.15 * hgt,
                    x - w / 2 + 0.15 * hgt,
                    top - 0.15 * hgt,
                ],
                "top",
                0,
            ),
            ("rect", [x - w / 2, top, x + w / 2, base], "main", 0),
            ("line", [x - w / 2, top, x + w / 2, base], "detail", max(1, round(0.04 * hgt))),
        ]
        palette = {"main": main, "top": _shade(main, 1.25), "detail": _shade(main, 0.7)}
        if rng.random() < 0.3:  # a team-coloured stripe: clutter in the classes' colours
            prims.append(("rect", [x - w / 2, top + 0.4 * hgt, x + w / 2, top + 0.55 * hgt], "stripe", 0))
            palette["stripe"] = _rgb(rng.choice([0.0, 0.6]), 0.8, 0.8)
        return Item(base, prims, palette)
    hue = rng.choice([rng.normal(0.0, 0.02), rng.uniform(0.55, 0.66)])  # red or blue clutter
    colour = _rgb(hue, rng.uniform(0.6, 0.95), rng.uniform(0.5, 0.95))
    if kind == "barrel":
        w, hgt = s * rng.uniform(0.12, 0.2), s * rng.uniform(0.22, 0.32)
        prims = [
            ("rect", [x - w / 2, base - hgt, x + w / 2, base], "main", 0),
            ("ellipse", [x - w / 2, base - hgt - 0.1 * w, x + w / 2, base - hgt + 0.1 * w], "top", 0),
            ("rect", [x - w / 2, base - 0.7 * hgt, x + w / 2, base - 0.6 * hgt], "detail", 0),
        ]
        return Item(base, prims, {"main": colour, "top": _shade(colour, 1.2), "detail": _shade(colour, 0.6)})
    pole_h = s * rng.uniform(0.5, 1.0)
    pole = ("line", [x, base, x, base - pole_h], "pole", max(1, round(0.02 * s)))
    if kind == "flag":
        d = float(rng.choice([-1, 1])) * s * rng.uniform(0.15, 0.3)
        cloth = (
            "polygon",
            [x, base - pole_h, x + d, base - pole_h + 0.08 * s, x, base - pole_h + 0.16 * s],
            "main",
            0,
        )
        return Item(base, [pole, cloth], {"pole": (90, 90, 95), "main": colour})
    r = s * rng.uniform(0.04, 0.08)  # lamp: a glowing ball on a pole, head-sized clutter
    ball = ("ellipse", [x - r, base - pole_h - r, x + r, base - pole_h + r], "main", 0)
    return Item(base, [pole, ball], {"pole": (90, 90, 95), "main": _shade(colour, 1.3)})


def _backdrop(rng: np.random.Generator, size: int, horizon: float) -> Image.Image:
    """Sky gradient with clouds, distant silhouettes, and a textured ground with perspective tiles."""
    y = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None, None]
    sky_top = np.array(_rgb(rng.uniform(0, 1), rng.uniform(0.2, 0.7), rng.uniform(0.5, 0.95)), np.float32)
    sky_low = np.array(_rgb(rng.uniform(0, 1), rng.uniform(0.1, 0.5), rng.uniform(0.6, 1.0)), np.float32)
    ground = np.array(
        _rgb(rng.uniform(0.05, 0.4), rng.uniform(0.15, 0.55), rng.uniform(0.3, 0.7)), np.float32
    )
    sky = sky_top + (sky_low - sky_top) * y
    sky = sky * (0.85 + 0.3 * _noise(rng, size, 6)[..., None])
    grain = _noise(rng, size, 24)[..., None] * 0.25 + _noise(rng, size, 5)[..., None] * 0.3
    land = ground * (0.75 + grain) * (0.8 + 0.3 * y)
    rows = np.arange(size)[:, None, None] >= horizon
    image = Image.fromarray(np.clip(np.where(rows, land, sky), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    far = _rgb(rng.uniform(0, 1), rng.uniform(0, 0.3), rng.uniform(0.25, 0.6))
    xs = np.linspace(0, size, 9)
    peaks = horizon - rng.uniform(0.02, 0.2, size=9) * size
    draw.polygon(
        [(0, horizon)] + list(zip(xs.tolist(), peaks.tolist(), strict=True)) + [(size, horizon)], fill=far
    )
    for _ in range(rng.integers(0, 4)):  # buildings with window grids
        x0, w, hgt = rng.uniform(0, size), rng.uniform(0.08, 0.25) * size, rng.uniform(0.1, 0.3) * size
        wall = _rgb(rng.uniform(0, 1), rng.uniform(0, 0.2), rng.uniform(0.3, 0.7))
        draw.rectangle([x0, horizon - hgt, x0 + w, horizon], fill=wall)
        step = max(3.0, w / 5)
        for wx in np.arange(x0 + step / 3, x0 + w - step / 3, step):
            for wy in np.arange(horizon - hgt + step / 3, horizon - step / 2, step):
                draw.rectangle([wx, wy, wx + step / 3, wy + step / 4], fill=_shade(wall, 0.6))
    line = _shade(tuple(int(c) for c in ground), 0.7)
    for k in range(
        1, 9
    ):  # floor tiles: rows closer together towards the horizon, rays from a vanishing point
        yk = horizon + (size - horizon) * (k / 8) ** 2
        draw.line([0, yk, size, yk], fill=line, width=1)
    vx = rng.uniform(0.2, 0.8) * size
    for xk in np.linspace(-size, 2 * size, 13):
        draw.line([vx, horizon, xk, size], fill=line, width=1)
    return image


def _light(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    """Global brightness and tint, a directional ramp, a vignette, sometimes blur, sensor noise."""
    size = image.size[0]
    a = np.array(image, dtype=np.float32)
    xs = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    ramp = 1.0 + rng.uniform(-0.25, 0.25) * xs[None, :] + rng.uniform(-0.15, 0.15) * xs[:, None]
    vignette = 1.0 - rng.uniform(0.0, 0.35) * (xs[None, :] ** 2 + xs[:, None] ** 2) / 2
    gain = rng.uniform(0.65, 1.15) * rng.uniform(0.9, 1.1, size=3).astype(np.float32)
    a *= (ramp * vignette)[..., None] * gain
    a += rng.standard_normal((*a.shape[:2], 1), dtype=np.float32) * np.float32(rng.uniform(0, 5))  # grain
    image = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    if rng.random() < 0.2:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0) * size / 320))
    return image


def _hud(rng: np.random.Generator, image: Image.Image) -> None:
    """Crosshair, health bar, ammo/score text and a minimap with red/blue dots, drawn on top."""
    size = image.size[0]
    draw = ImageDraw.Draw(image)
    colour = _rgb(rng.choice([0.5, 0.33, 0.15]), 0.5, 1.0)
    c, r = size / 2, size * 0.025
    if rng.random() < 0.8:
        draw.ellipse([c - r, c - r, c + r, c + r], outline=colour, width=max(1, size // 320))
        for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            draw.line([c + dx * r * 0.5, c + dy * r * 0.5, c + dx * r * 1.6, c + dy * r * 1.6], fill=colour)
    if rng.random() < 0.7:
        x0, y0, w, hgt = size * 0.04, size * 0.92, size * 0.3, max(3.0, size * 0.025)
        draw.rectangle([x0, y0, x0 + w, y0 + hgt], outline=colour)
        draw.rectangle(
            [x0 + 1, y0 + 1, x0 + 1 + (w - 2) * rng.uniform(0.1, 1.0), y0 + hgt - 1], fill=(80, 220, 90)
        )
    font = ImageFont.load_default(size=max(8, size // 28))
    if rng.random() < 0.7:
        draw.text(
            (size * 0.75, size * 0.9),
            f"{rng.integers(0, 60):02d}/{rng.integers(60, 400)}",
            fill=colour,
            font=font,
        )
    if rng.random() < 0.5:
        draw.text((size * 0.03, size * 0.03), f"SCORE {rng.integers(0, 50)}", fill=colour, font=font)
    if rng.random() < 0.4:
        m, mr = size * 0.88, size * 0.08
        draw.ellipse([m - mr, size * 0.12 - mr, m + mr, size * 0.12 + mr], fill=(30, 40, 50), outline=colour)
        for _ in range(rng.integers(1, 5)):
            px, py = m + rng.uniform(-0.6, 0.6) * mr, size * 0.12 + rng.uniform(-0.6, 0.6) * mr
            dot = (230, 50, 50) if rng.random() < 0.6 else (60, 110, 240)
            draw.ellipse([px - 2, py - 2, px + 2, py + 2], fill=dot)


def _layout(rng: np.random.Generator, size: int, horizon: float) -> list[Item]:
    """Figures and props placed in perspective: the lower an item stands, the closer and larger it is."""
    h_min, h_max = (f * size for f in HEIGHT_RANGE)
    span = 1.02 * size - horizon
    items: list[Item] = []
    for _ in range(rng.choice(FIGURE_COUNTS, p=FIGURE_COUNT_P)):
        h = float(np.exp(rng.uniform(np.log(h_min), np.log(h_max))))
        foot = horizon + min(1.0, (h / h_max) * rng.uniform(0.9, 1.05)) * span
        cx = rng.uniform(0.03, 0.97) * size
        label = ENEMY if rng.random() < ENEMY_SHARE else FRIENDLY
        items.append(_figure(rng, cx, foot, h, label))
        if rng.random() < COVER_P:
            kind = str(rng.choice(["crate", "wall"]))
            items.append(_prop(rng, kind, cx + rng.normal(0, 0.1 * h), foot + rng.uniform(0.01, 0.05) * h, h))
    kinds = {"pillar": 2, "crate": 3, "wall": 1, "barrel": 3, "flag": 1, "lamp": 2}
    for kind, most in kinds.items():
        for _ in range(rng.integers(0, most + 1)):
            base = horizon + rng.uniform(0.05, 1.0) ** 0.7 * span
            scale = h_max * (base - horizon) / span
            items.append(_prop(rng, kind, rng.uniform(0, 1) * size, base, scale))
    items.sort(key=lambda item: item.depth)
    return items


def _id_of(index: int):
    return lambda part: 2 * index + 2 if part in HEAD_PARTS else 2 * index + 1


def _own_mask(item: Item) -> tuple[np.ndarray, float, float]:
    """The item drawn alone (1 = body, 2 = head) on a local canvas, and the canvas' origin ``(x0, y0)``."""
    coords = np.concatenate([np.asarray(p[1], dtype=np.float32) for p in item.prims])
    pad = max(p[3] for p in item.prims) + 2
    x0, y0 = np.floor(coords[0::2].min()) - pad, np.floor(coords[1::2].min()) - pad
    w, h = int(np.ceil(coords[0::2].max() - x0)) + pad, int(np.ceil(coords[1::2].max() - y0)) + pad
    canvas = Image.new("L", (w, h), 0)
    draw_prims(ImageDraw.Draw(canvas), item.prims, lambda part: 2 if part in HEAD_PARTS else 1, x0, y0)
    return np.asarray(canvas), float(x0), float(y0)


def _extent(mask: np.ndarray, x0: float, y0: float, size: int) -> list[float] | None:
    """Tight box ``[x, y, w, h]`` of a local mask, clipped to the frame (None when empty after clipping)."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    x1, y1 = max(0.0, xs.min() + x0), max(0.0, ys.min() + y0)
    x2, y2 = min(float(size), xs.max() + 1 + x0), min(float(size), ys.max() + 1 + y0)
    return [x1, y1, x2 - x1, y2 - y1] if x2 > x1 and y2 > y1 else None


def _visible_figures(items: list[Item], size: int) -> tuple[list[Item], list[list[float]]]:
    """Remove figures hidden more than ``1 - MIN_VISIBLE``; return the kept items and their boxes.

    Each figure's body and head get ids in an id map drawn back to front (props draw 0); the visible share is
    the pixels of the figure left in the map over the pixels of the figure drawn alone (outside the frame
    counts as hidden). Removing a figure can reveal others, so this repeats until nothing changes.
    """
    masks = {id(it): _own_mask(it) for it in items if it.label is not None}
    while True:
        idmap = Image.new("L", (size, size), 0)
        draw = ImageDraw.Draw(idmap)
        for k, item in enumerate(items):
            draw_prims(draw, item.prims, _id_of(k) if item.label is not None else (lambda part: 0))
        counts = np.bincount(np.asarray(idmap).ravel(), minlength=256)
        hidden, annotations = set(), []
        for k, item in enumerate(items):
            if item.label is None:
                continue
            mask, x0, y0 = masks[id(item)]
            own_head, own_all = int((mask == 2).sum()), int((mask > 0).sum())
            if counts[2 * k + 1] + counts[2 * k + 2] < MIN_VISIBLE * own_all:
                hidden.add(id(item))
                continue
            body = _extent(mask, x0, y0, size)
            if body is not None:
                annotations.append((item.label, body))
            head = _extent(mask == 2, x0, y0, size)
            if head is not None and counts[2 * k + 2] >= MIN_HEAD_VISIBLE * own_head:
                annotations.append((item.label + 1, head))
        if not hidden:
            return items, annotations
        items = [it for it in items if id(it) not in hidden]


def render_scene(rng: np.random.Generator, size: int) -> tuple[Image.Image, list[tuple[int, list[float]]]]:
    """One ``size × size`` RGB frame and its annotations ``[(label, [x, y, w, h]), ...]`` (pixels).

    Labels index ``(enemy, enemy-head, friendly, friendly-head)``; all randomness comes from ``rng``.
    """
    horizon = rng.uniform(0.3, 0.55) * size
    image = _backdrop(rng, size, horizon)
    items, annotations = _visible_figures(_layout(rng, size, horizon), size)
    draw = ImageDraw.Draw(image)
    for item in items:
        draw_prims(draw, item.prims, item.palette.__getitem__)
    image = _light(rng, image)
    if rng.random() < 0.75:
        _hud(rng, image)
    return image, annotations
