"""The two generated scenarios of the design, drawn with numpy alone.

`fruits`: apple, orange and banana, with tasks `fruit` and `color`.
`objects`: cube, ball and triangle, with tasks `shape`, `is_cube` and `color`.

Both scenarios share one colour vocabulary (`COLORS`) so that a colour head trained on
fruits can be reused on objects. Every image is an RGB picture of one object on a
cluttered, noisy background; pose, shading and hue vary from image to image so that
the tasks are worth learning. The difficulty knobs (`DEFAULT_KNOBS`) are keyword
arguments of `render` and the `knobs` mapping of `generate_splits`.

Rendering is vectorised over the batch: every image is a set of signed-distance
shapes evaluated on one coordinate grid broadcast to (n, H, W), in chunks small
enough to stay in the CPU cache, drawn by one thread per core.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mtl.errors import UserError

# Bump whenever a change to the drawing code changes the images: it is part of the
# cache key, so cached data sets drawn by an older generator are never reused.
GENERATOR_VERSION = 1

COLORS: tuple[str, ...] = ("red", "green", "yellow", "orange", "brown", "blue", "purple")
SCENARIOS: tuple[str, ...] = ("fruits", "objects")

KINDS = {"fruits": ("apple", "orange", "banana"), "objects": ("cube", "ball", "triangle")}
KIND_TASK = {"fruits": "fruit", "objects": "shape"}
SCENARIO_COLORS = {
    "fruits": ("red", "green", "yellow", "orange", "brown"),
    "objects": ("red", "green", "yellow", "orange", "blue", "purple"),
}
# The colours each fruit usually has; `color_correlation` is the probability of drawing one.
TYPICAL_FRUIT_COLORS = {
    "apple": ("red", "green", "yellow"),
    "orange": ("orange", "green"),
    "banana": ("yellow", "green", "brown"),
}

# Each colour as (hue in degrees, saturation, value). Brown is a dark, less saturated
# orange and red/orange/yellow are 24-28 degrees apart, so hue jitter and shading make
# those neighbours genuinely confusable.
COLOR_HSV = {
    "red": (0.0, 0.85, 0.80),
    "green": (115.0, 0.70, 0.65),
    "yellow": (52.0, 0.85, 0.92),
    "orange": (28.0, 0.90, 0.95),
    "brown": (25.0, 0.75, 0.48),
    "blue": (220.0, 0.80, 0.80),
    "purple": (285.0, 0.65, 0.65),
}

DEFAULT_KNOBS: dict[str, Any] = {
    # fruits only: probability that a fruit has one of its typical colours; otherwise its
    # colour is uniform over the fruit colours (0 = colour independent of the fruit)
    "color_correlation": 0.8,
    # standard deviation of the (uniform) pixel noise, as a fraction of full intensity
    "noise": 0.06,
    # number of faint blobs and lines drawn in random colours behind the object
    "clutter": 3,
    # standard deviation of the object's hue shift in degrees; its saturation and value
    # jitter by 1% per degree as well
    "hue_jitter": 8.0,
    # (smallest, largest) object radius as a fraction of half the image width
    "scale_range": (0.45, 0.8),
    # largest in-plane rotation of the object, in degrees either way
    "rotation": 30.0,
}

STEM_RGB = (0.33, 0.2, 0.08)
LEAF_RGB = (0.2, 0.5, 0.12)
BANANA_TIP_RGB = (0.22, 0.16, 0.06)

# Images rendered at once: large enough to amortise numpy's per-call overhead, small
# enough that the (chunk, H, W) float32 intermediates stay in cache at 32x32.
CHUNK = 256


def _hsv_to_rgb(hue: np.ndarray, saturation: np.ndarray, value: np.ndarray) -> np.ndarray:
    """RGB in [0, 1] with a trailing axis of 3, from hue in degrees and s, v in [0, 1]."""
    sector = (np.asarray(hue, np.float32) % 360.0) / 60.0
    offsets = (np.array([5.0, 3.0, 1.0], np.float32) + sector[..., None]) % 6.0
    ramp = np.clip(np.minimum(offsets, 4.0 - offsets), 0.0, 1.0)
    value = np.asarray(value, np.float32)[..., None]
    saturation = np.asarray(saturation, np.float32)[..., None]
    return (value - value * saturation * ramp).astype(np.float32)


_COLOR_HSV_TABLE = np.array([COLOR_HSV[name] for name in COLORS], np.float32)
# The un-jittered colour of each name, 0-255; the reference the colour labels mean.
COLOR_REFERENCE_RGB = np.round(_hsv_to_rgb(*_COLOR_HSV_TABLE.T) * 255.0).astype(np.uint8)


def task_classes(scenario: str) -> dict[str, tuple[str, ...]]:
    """Task name -> class names in label-index order, for one scenario."""
    _check_scenario(scenario)
    tasks = {KIND_TASK[scenario]: KINDS[scenario]}
    if scenario == "objects":
        tasks["is_cube"] = ("no", "yes")
    tasks["color"] = COLORS
    return tasks


def _check_scenario(scenario: str) -> None:
    if scenario not in SCENARIOS:
        raise UserError(
            f"unknown generated scenario {scenario!r}; valid scenarios: {', '.join(SCENARIOS)}"
        )


def resolve_knobs(knobs: Mapping[str, Any] | None) -> dict[str, Any]:
    """All knobs with defaults filled in, checked and normalised to plain Python values."""
    knobs = dict(knobs or {})
    unknown = sorted(set(knobs) - set(DEFAULT_KNOBS))
    if unknown:
        raise UserError(
            f"unknown data knob {unknown[0]!r}; valid knobs: {', '.join(sorted(DEFAULT_KNOBS))}"
        )
    resolved = {**DEFAULT_KNOBS, **knobs}

    def number(name: str, low: float, high: float = float("inf")) -> float:
        try:
            value = float(resolved[name])
        except (TypeError, ValueError):
            raise UserError(f"data knob {name!r} must be a number, got {resolved[name]!r}") from None
        if not low <= value <= high:
            raise UserError(f"data knob {name!r} must be in [{low}, {high}], got {value}")
        return value

    try:
        smallest, largest = (float(x) for x in resolved["scale_range"])
    except (TypeError, ValueError):
        raise UserError(
            f"data knob 'scale_range' must be two numbers (smallest, largest), "
            f"got {resolved['scale_range']!r}"
        ) from None
    if not 0.05 <= smallest <= largest <= 1.0:
        raise UserError(
            f"data knob 'scale_range' must satisfy 0.05 <= smallest <= largest <= 1, "
            f"got ({smallest}, {largest})"
        )
    clutter = number("clutter", 0, 20)
    if clutter != int(clutter):
        raise UserError(f"data knob 'clutter' must be a whole number, got {clutter}")
    return {
        "color_correlation": number("color_correlation", 0.0, 1.0),
        "noise": number("noise", 0.0, 1.0),
        "clutter": int(clutter),
        "hue_jitter": number("hue_jitter", 0.0, 180.0),
        "scale_range": (smallest, largest),
        "rotation": number("rotation", 0.0, 180.0),
    }


# ---------------------------------------------------------------------------- labels


def _balanced_kinds(rng: np.random.Generator, n: int, n_kinds: int) -> np.ndarray:
    """Kind indices in random order with every kind appearing n // n_kinds or one more times."""
    return rng.permutation(np.arange(n) % n_kinds)


def _draw_colors(
    rng: np.random.Generator, scenario: str, kinds: np.ndarray, color_correlation: float
) -> np.ndarray:
    """Colour index into COLORS for each image."""
    scenario_colors = np.array([COLORS.index(c) for c in SCENARIO_COLORS[scenario]])
    uniform = scenario_colors[rng.integers(len(scenario_colors), size=len(kinds))]
    if scenario == "objects":
        return uniform
    typical = np.empty_like(uniform)
    for index, fruit in enumerate(KINDS["fruits"]):
        members = kinds == index
        choices = [COLORS.index(c) for c in TYPICAL_FRUIT_COLORS[fruit]]
        typical[members] = rng.choice(choices, size=int(members.sum()))
    return np.where(rng.random(len(kinds)) < color_correlation, typical, uniform)


# ---------------------------------------------------------------------------- geometry
# All shapes are signed distances in the object's own frame (u right, v down, radius
# about 1): negative inside, positive outside. Coverage turns them into antialiased
# pixel weights.


def _per_image(values) -> np.ndarray:
    """A per-image value as float32 of shape (m, 1, 1), to broadcast over (m, H, W)."""
    return np.asarray(values, np.float32)[:, None, None]


def _coverage(signed_distance: np.ndarray, pixel: np.ndarray) -> np.ndarray:
    """Fraction of each pixel inside the shape, from its signed distance and the pixel size."""
    return np.clip(0.5 - signed_distance / pixel, 0.0, 1.0)


def _circle(u: np.ndarray, v: np.ndarray, cu: float, cv: float, radius: float) -> np.ndarray:
    return np.sqrt((u - cu) ** 2 + (v - cv) ** 2) - radius


def _segment(u, v, start: tuple[float, float], end: tuple[float, float], half_width: float):
    """Capsule around the segment start-end."""
    du, dv = end[0] - start[0], end[1] - start[1]
    along = np.clip(((u - start[0]) * du + (v - start[1]) * dv) / (du * du + dv * dv), 0.0, 1.0)
    return np.sqrt((u - start[0] - along * du) ** 2 + (v - start[1] - along * dv) ** 2) - half_width


def _ellipse(u, v, centre: tuple[float, float], half_axes: tuple[float, float], angle: float):
    """Approximate signed distance to a rotated ellipse (exact enough for leaves a few pixels long)."""
    cos, sin = np.cos(angle), np.sin(angle)
    du, dv = u - centre[0], v - centre[1]
    along, across = du * cos + dv * sin, -du * sin + dv * cos
    normalised = np.sqrt((along / half_axes[0]) ** 2 + (across / half_axes[1]) ** 2)
    return (normalised - 1.0) * min(half_axes)


def _random_bytes(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Uniform random uint8 of the given shape, drawn eight at a time (several times
    faster than rng.bytes or rng.integers with dtype uint8)."""
    count = math.prod(shape)
    words = rng.integers(0, np.iinfo(np.uint64).max, size=-(-count // 8), dtype=np.uint64, endpoint=True)
    return words.view(np.uint8)[:count].reshape(shape)


def _power_of_two(x: np.ndarray, doublings: int) -> np.ndarray:
    """x ** (2 ** doublings) by repeated squaring, much faster than np.power on arrays."""
    for _ in range(doublings):
        x = x * x
    return x


def _sphere_lighting(u, v, radius: float, light: np.ndarray):
    """(diffuse, specular) of a sphere of the given radius lit from `light` (m, 3)."""
    lx, ly, lz = (light[:, i, None, None] for i in range(3))
    nu, nv = u / radius, v / radius
    nz = np.sqrt(np.clip(1.0 - nu * nu - nv * nv, 0.0, 1.0))
    diffuse = np.clip(nu * lx + nv * ly + nz * lz, 0.0, 1.0)
    # Blinn-Phong: the half vector between the light and a viewer looking down -z.
    hx, hy, hz = lx, ly, lz + 1.0
    norm = np.sqrt(hx * hx + hy * hy + hz * hz)
    specular = np.clip((nu * hx + nv * hy + nz * hz) / norm, 0.0, 1.0)
    return diffuse, specular


@dataclass
class _Drawing:
    """One kind of object in its own frame, ready to be coloured and composited."""

    body: np.ndarray  # signed distance to the part painted in the labelled colour
    shade: np.ndarray  # brightness of the body colour: < 1 darkens, > 1 blends towards white
    gloss: np.ndarray | float = 0.0  # white specular highlight added on top
    # (signed distance, rgb) parts drawn over the body in a fixed colour: stems, leaves
    details: list[tuple[np.ndarray, tuple[float, float, float]]] = field(default_factory=list)


def _draw_apple(u, v, light, rng) -> _Drawing:
    tapered = u * (1.0 + 0.15 * v)  # narrower towards the bottom (v grows downwards)
    body = np.minimum(_circle(tapered, v, -0.2, 0.0, 0.78), _circle(tapered, v, 0.2, 0.0, 0.78))
    body = np.maximum(body, -_circle(u, v, 0.0, -0.88, 0.2))  # dimple the stem grows from
    diffuse, specular = _sphere_lighting(u, v, 0.9, light)
    return _Drawing(
        body=body,
        shade=0.55 + 0.85 * diffuse,
        gloss=0.45 * _power_of_two(specular, 5),
        details=[
            (_segment(u, v, (0.0, -0.62), (0.14, -1.05), 0.07), STEM_RGB),
            (_ellipse(u, v, (0.34, -0.9), (0.22, 0.09), -0.5), LEAF_RGB),
        ],
    )


def _draw_orange(u, v, light, rng) -> _Drawing:
    diffuse, _ = _sphere_lighting(u, v, 0.88, light)
    # A dimpled peel: pixel-scale brightness speckle (uniform, std 0.13), matte.
    dimples = np.float32(0.775) + _random_bytes(rng, u.shape) * np.float32(0.45 / 255.0)
    return _Drawing(
        body=_circle(u, v, 0.0, 0.0, 0.88),
        shade=(0.55 + 0.85 * diffuse) * dimples,
        details=[(_circle(u, v, 0.0, -0.78, 0.1), LEAF_RGB)],  # the navel where the stem was
    )


def _draw_banana(u, v, light, rng) -> _Drawing:
    v = v - 0.15  # centre the crescent, whose middle lies below its tips
    # The crescent between two equal circles, the lower one's upper arc cut away.
    outer = _circle(u, v, 0.0, -0.6, 1.1)
    inner = _circle(u, v, 0.0, -1.05, 1.1)
    body = np.maximum(outer, -inner)
    # Round across its thickness: bright along the middle of the crescent, darker edges.
    across = np.clip(inner / 0.45, 0.0, 1.0)
    lx = light[:, 0, None, None]
    shade = 0.6 + 0.55 * np.sin(np.pi * across) + 0.2 * lx * np.clip(u, -1.0, 1.0)
    return _Drawing(
        body=body,
        shade=shade,
        details=[
            (_segment(u, v, (-1.0, -0.78), (-1.15, -1.02), 0.08), BANANA_TIP_RGB),  # stalk
            (_circle(u, v, 1.04, -0.8, 0.1), BANANA_TIP_RGB),  # dark flower end
        ],
    )


def _draw_ball(u, v, light, rng) -> _Drawing:
    diffuse, specular = _sphere_lighting(u, v, 0.88, light)
    return _Drawing(
        body=_circle(u, v, 0.0, 0.0, 0.88),
        shade=0.5 + 0.9 * diffuse,
        gloss=0.8 * _power_of_two(specular, 5),
    )


def _draw_cube(u, v, light, rng) -> _Drawing:
    """A cube seen slightly from above and from one side: the square front face
    [-0.8, 0.4] x [-0.4, 0.8], and the top and side faces receding 0.4 up and to the
    right. The top face is lit brighter and the side face darker than the front."""
    front = np.maximum(np.abs(u + 0.2) - 0.6, np.abs(v - 0.2) - 0.6)
    # (u + v) is constant along the receding direction (1, -1): the top face spans
    # u + v in [-1.2, 0] and the side face [0, 1.2], both bands in units of distance.
    band = 0.6 / np.sqrt(2.0)
    sweep = (u + v) / np.sqrt(2.0)
    top = np.maximum(np.abs(v + 0.6) - 0.2, np.abs(sweep + band) - band)
    side = np.maximum(np.abs(u - 0.6) - 0.2, np.abs(sweep - band) - band)
    m = len(u)
    top_brightness = _per_image(rng.uniform(1.15, 1.35, m))
    side_brightness = _per_image(rng.uniform(0.55, 0.75, m))
    # Each pixel takes the brightness of the face it is deepest inside.
    shade = np.where(front <= np.minimum(top, side), np.float32(1.0),
                     np.where(top <= side, top_brightness, side_brightness))
    return _Drawing(body=np.minimum(front, np.minimum(top, side)), shade=shade)


def _draw_triangle(u, v, light, rng) -> _Drawing:
    """An equilateral triangle pointing up, flat or with a linear light gradient."""
    v = v - 0.3  # centre its bounding box rather than its centroid
    circumradius = 1.15
    edge_normal = np.float32(np.sqrt(3.0) / 2.0)
    body = np.maximum(np.maximum(v, edge_normal * u - 0.5 * v), -edge_normal * u - 0.5 * v)
    body = body - 0.5 * circumradius
    gradient = _per_image(rng.uniform(0.0, 0.35, len(u)))
    lx, ly = light[:, 0, None, None], light[:, 1, None, None]
    return _Drawing(body=body, shade=1.0 - gradient * (lx * u + ly * v))


PAINTERS: dict[str, Callable[..., _Drawing]] = {
    "apple": _draw_apple,
    "orange": _draw_orange,
    "banana": _draw_banana,
    "cube": _draw_cube,
    "ball": _draw_ball,
    "triangle": _draw_triangle,
}


# ---------------------------------------------------------------------------- compositing
# Every pixel is a weighted mix of a few colours per image (its palette): background,
# white light, the body colour, the detail colours and the clutter colours. Layers are
# composited front to back into per-pixel weights, so all the per-pixel work is on
# (m, H, W) planes and one batched matrix product turns the weights into RGB.

BACKGROUND, WHITE, BODY, FIRST_DETAIL = 0, 1, 2, 3
MAX_DETAILS = 2
FIRST_CLUTTER = FIRST_DETAIL + MAX_DETAILS


def _clutter_alpha(rng, m: int, xs, ys, pixel: float) -> tuple[np.ndarray, np.ndarray]:
    """One faint blob or line of random colour per image: (opacity (m, H, W), rgb (m, 3)).

    Both are capsules around a segment: a blob a short, fat one with a soft edge, a line
    a long, thin one. One formula keeps the batch vectorised whatever the mix."""
    is_line = rng.random(m) < 0.5
    length = np.where(is_line, rng.uniform(0.6, 1.6, m), 0.0)
    half_width = np.where(is_line, rng.uniform(0.03, 0.07, m), rng.uniform(0.12, 0.35, m))
    start = rng.uniform(-1.0, 1.0, (m, 2))
    heading = rng.uniform(0.0, 2.0 * np.pi, m)
    rgb = _hsv_to_rgb(rng.uniform(0, 360, m), rng.uniform(0.3, 0.9, m), rng.uniform(0.3, 0.95, m))
    opacity = rng.uniform(0.15, 0.45, m)

    du, dv = xs - _per_image(start[:, 0]), ys - _per_image(start[:, 1])
    cos, sin = _per_image(np.cos(heading)), _per_image(np.sin(heading))
    along = np.clip(du * cos + dv * sin, 0.0, _per_image(length))
    distance = np.sqrt((du - along * cos) ** 2 + (dv - along * sin) ** 2)
    softness = _per_image(np.maximum(0.5 * half_width, pixel))
    edge = np.clip((_per_image(half_width) - distance) / softness + 0.5, 0.0, 1.0)
    return _per_image(opacity) * edge, rgb


def _object_frame(rng, m: int, xs, ys, knobs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each image's pixel coordinates in its object's frame, (u, v) of shape (m, H, W),
    and the size of a pixel there, (m, 1, 1): a random pose of size, position (keeping
    the object in the frame), rotation, mirror image and slight stretch."""
    smallest, largest = knobs["scale_range"]
    scale = rng.uniform(smallest, largest, m)
    centre = rng.uniform(-1.0, 1.0, (m, 2)) * (1.0 - scale[:, None])
    angle = np.deg2rad(rng.uniform(-knobs["rotation"], knobs["rotation"], m))
    mirror = np.where(rng.random(m) < 0.5, -1.0, 1.0)
    stretch = rng.uniform(0.9, 1.1, m)

    dx, dy = xs - _per_image(centre[:, 0]), ys - _per_image(centre[:, 1])
    cos, sin, inverse_scale = _per_image(np.cos(angle)), _per_image(np.sin(angle)), _per_image(1.0 / scale)
    u = (cos * dx + sin * dy) * inverse_scale * _per_image(mirror * stretch)
    v = (cos * dy - sin * dx) * inverse_scale
    pixel = 2.0 / xs.shape[-1]  # in image coordinates, which span [-1, 1]
    return u, v, pixel * inverse_scale


def _jittered_rgb(rng, colors: np.ndarray, hue_jitter: float) -> np.ndarray:
    """Each image's body colour, (m, 3): its labelled colour with hue shifted by
    N(0, hue_jitter) degrees and saturation and value scaled by 1% per degree of that."""
    m = len(colors)
    hue, saturation, value = _COLOR_HSV_TABLE[colors].T
    return _hsv_to_rgb(
        hue + hue_jitter * rng.standard_normal(m),
        np.clip(saturation * (1.0 + 0.01 * hue_jitter * rng.standard_normal(m)), 0.0, 1.0),
        np.clip(value * (1.0 + 0.01 * hue_jitter * rng.standard_normal(m)), 0.0, 1.0),
    )


def _with_noise_as_uint8(rng, rgb: np.ndarray, noise: float) -> np.ndarray:
    """rgb in [0, 255] plus uniform pixel noise of standard deviation `noise` (a fraction
    of full intensity), rounded to uint8. Random bytes are far cheaper to draw than
    Gaussian floats, and uniform noise looks the same to the eye."""
    half_range = noise * 255.0 * np.sqrt(3.0)
    rgb += _random_bytes(rng, rgb.shape) * np.float32(2.0 * half_range / 255.0)
    rgb += np.float32(0.5 - half_range)  # the 0.5 makes the truncating cast round
    np.clip(rgb, 0.0, 255.0, out=rgb)
    return rgb.astype(np.uint8)


def _render_chunk(rng, scenario, kinds, colors, image_size, knobs):
    """uint8 images and body masks for one chunk of labelled draws."""
    m = len(kinds)
    # Drawn grouped by kind, so that each kind's images are one contiguous slice of every
    # array (views rather than copies); put back in the given order at the end.
    order = np.argsort(kinds, kind="stable")
    kinds, colors = kinds[order], colors[order]
    bounds = np.searchsorted(kinds, np.arange(len(KINDS[scenario]) + 1))
    coords = (np.arange(image_size, dtype=np.float32) + 0.5) * (2.0 / image_size) - 1.0
    xs, ys = coords[None, None, :], coords[None, :, None]

    u, v, local_pixel = _object_frame(rng, m, xs, ys, knobs)
    # Light from the viewer's side, tilted up to ~37 degrees in a random direction.
    tilt = rng.uniform(0.0, 0.6, m) * np.exp(1j * rng.uniform(0.0, 2.0 * np.pi, m))
    light = np.stack([tilt.real, tilt.imag, np.sqrt(1.0 - np.abs(tilt) ** 2)], axis=1).astype(np.float32)

    clutter = knobs["clutter"]
    palette = np.zeros((m, FIRST_CLUTTER + clutter, 3), np.float32)
    palette[:, BACKGROUND] = _hsv_to_rgb(  # greyish, faintly tinted
        rng.uniform(0, 360, m), rng.uniform(0.0, 0.25, m), rng.uniform(0.3, 0.85, m))
    palette[:, WHITE] = 1.0
    palette[:, BODY] = _jittered_rgb(rng, colors, knobs["hue_jitter"])
    weights = np.zeros((m, FIRST_CLUTTER + clutter, image_size, image_size), np.float32)
    # How much of whatever lies further back still shows through, per pixel.
    transmittance = np.ones((m, image_size, image_size), np.float32)

    masks = np.zeros((m, image_size, image_size), bool)
    for kind_index, kind in enumerate(KINDS[scenario]):
        members = slice(bounds[kind_index], bounds[kind_index + 1])
        if members.start == members.stop:
            continue
        drawing = PAINTERS[kind](u[members], v[members], light[members], rng)
        shows = np.ones_like(u[members])
        # The last detail listed is the front-most.
        for slot, (signed_distance, rgb) in reversed(list(enumerate(drawing.details, FIRST_DETAIL))):
            part = _coverage(signed_distance, local_pixel[members])
            weights[members, slot] = part * shows
            palette[members, slot] = rgb
            shows *= 1.0 - part
        body = _coverage(drawing.body, local_pixel[members])
        masks[members] = (body > 0.5) & (shows > 0.5)
        body *= shows
        # Shading below 1 darkens the body colour; above 1 it blends towards white, and
        # the gloss adds white on top: rgb * (darken - lift) + white * (lift + gloss).
        lift = np.maximum(drawing.shade - 1.0, 0.0)
        weights[members, BODY] = body * (np.minimum(drawing.shade, 1.0) - lift)
        weights[members, WHITE] = body * (lift + drawing.gloss)
        transmittance[members] = shows - body

    for slot in range(FIRST_CLUTTER, FIRST_CLUTTER + clutter):
        alpha, palette[:, slot] = _clutter_alpha(rng, m, xs, ys, 2.0 / image_size)
        weights[:, slot] = alpha * transmittance
        transmittance *= 1.0 - alpha

    weights[:, BACKGROUND] = transmittance
    # A soft light gradient across the background: adds (or removes) a little white.
    slope = rng.uniform(-0.12, 0.12, (m, 2))
    weights[:, WHITE] += transmittance * (_per_image(slope[:, 0]) * xs + _per_image(slope[:, 1]) * ys)

    flat_weights = weights.reshape(m, -1, image_size * image_size)
    rgb = np.einsum("mkp,mkc->mpc", flat_weights, palette * 255.0, optimize=True)
    images = np.empty((m, image_size, image_size, 3), np.uint8)
    images[order] = _with_noise_as_uint8(rng, rgb, knobs["noise"]).reshape(m, image_size, image_size, 3)
    unsorted_masks = np.empty_like(masks)
    unsorted_masks[order] = masks
    return images, unsorted_masks


def render(
    scenario: str,
    n: int,
    seed: int | np.random.SeedSequence,
    image_size: int = 32,
    *,
    return_masks: bool = False,
    **knobs: Any,
):
    """Draw n labelled images of a scenario.

    Returns (images uint8 (n, H, W, 3), labels {task: int64 (n,)}), and with
    return_masks=True a third value: bool (n, H, W), the pixels painted in the object's
    labelled colour (its body, without stems, leaves or tips). The same arguments give
    the same arrays."""
    _check_scenario(scenario)
    knobs = resolve_knobs(knobs)
    if image_size < 8:
        raise UserError(f"image_size must be at least 8 pixels, got {image_size}")
    # Labels come from one stream and each chunk of pixels from its own, so chunks can be
    # drawn in parallel threads (numpy releases the GIL) with a result that does not
    # depend on scheduling.
    streams = _child_streams(seed, 1 + math.ceil(n / CHUNK))
    label_rng = np.random.default_rng(streams[0])
    kinds = _balanced_kinds(label_rng, n, len(KINDS[scenario]))
    colors = _draw_colors(label_rng, scenario, kinds, knobs["color_correlation"])

    images = np.empty((n, image_size, image_size, 3), np.uint8)
    masks = np.empty((n, image_size, image_size), bool)

    def draw_chunk(index: int) -> None:
        chunk = slice(index * CHUNK, (index + 1) * CHUNK)
        rng = np.random.default_rng(streams[1 + index])
        images[chunk], masks[chunk] = _render_chunk(rng, scenario, kinds[chunk], colors[chunk], image_size, knobs)

    with ThreadPoolExecutor(max_workers=_usable_cores()) as pool:
        list(pool.map(draw_chunk, range(len(streams) - 1)))

    labels = {KIND_TASK[scenario]: kinds.astype(np.int64)}
    if scenario == "objects":
        labels["is_cube"] = (kinds == KINDS["objects"].index("cube")).astype(np.int64)
    labels["color"] = colors.astype(np.int64)
    if return_masks:
        return images, labels, masks
    return images, labels


def _usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):  # Linux: the cores this process may run on
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _child_streams(seed: int | np.random.SeedSequence, count: int) -> list[np.random.SeedSequence]:
    """`count` independent streams derived from seed. Unlike SeedSequence.spawn this does
    not change the seed object, so passing the same one twice gives the same streams."""
    parent = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    return [np.random.SeedSequence(parent.entropy, spawn_key=(*parent.spawn_key, child))
            for child in range(count)]


# ---------------------------------------------------------------------------- splits and cache


def split_seed(seed: int, split: str) -> np.random.SeedSequence:
    """The random stream of one split: depends on the data seed and the split's name only."""
    return np.random.SeedSequence(entropy=seed, spawn_key=(zlib.crc32(split.encode()),))


def cache_path(cache_dir: str | Path, scenario: str, sizes: Mapping[str, int], seed: int,
               image_size: int, knobs: Mapping[str, Any] | None) -> Path:
    """Where generate_splits caches this configuration: named by a hash of everything that
    determines the arrays."""
    config = {
        "version": GENERATOR_VERSION,
        "scenario": scenario,
        "sizes": {name: int(size) for name, size in sizes.items()},
        "seed": int(seed),
        "image_size": int(image_size),
        "knobs": resolve_knobs(knobs),
    }
    digest = hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
    return Path(cache_dir) / "generated" / f"{scenario}-{digest}.npz"


def generate_splits(
    scenario: str,
    sizes: Mapping[str, int],
    seed: int,
    image_size: int = 32,
    knobs: Mapping[str, Any] | None = None,
    cache_dir: str | Path | None = None,
) -> dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Split name -> (images, labels), each split drawn from its own stream (see split_seed).

    With cache_dir, the splits are stored in cache_dir/generated/ and reloaded from there
    when the same configuration is asked for again."""
    _check_scenario(scenario)
    knobs = resolve_knobs(knobs)
    for name, size in sizes.items():
        if int(size) != size or size < 0:
            raise UserError(f"size of split {name!r} must be a whole number >= 0, got {size!r}")
    tasks = list(task_classes(scenario))
    path = None
    if cache_dir is not None:
        path = cache_path(cache_dir, scenario, sizes, seed, image_size, knobs)
        cached = _load_cache(path, sizes, tasks)
        if cached is not None:
            return cached

    splits = {
        name: render(scenario, int(size), split_seed(seed, name), image_size, **knobs)
        for name, size in sizes.items()
    }
    if path is not None:
        _save_cache(path, splits)
    return splits


def _load_cache(path: Path, sizes: Mapping[str, int], tasks: list[str]):
    """The cached splits, or None when there is no usable cache file."""
    try:
        with np.load(path) as stored:
            return {
                name: (stored[f"{name}.images"], {task: stored[f"{name}.{task}"] for task in tasks})
                for name in sizes
            }
    # A missing file is the usual case; a damaged one (which the atomic write should
    # prevent) is regenerated rather than trusted.
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None


def _save_cache(path: Path, splits: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]) -> None:
    """Write all splits to one .npz, atomically: readers see the whole file or none."""
    arrays = {}
    for name, (images, labels) in splits.items():
        arrays[f"{name}.images"] = images
        arrays.update({f"{name}.{task}": values for task, values in labels.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, **arrays)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
