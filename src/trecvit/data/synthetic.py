"""A procedural "synthetic motion" video classification dataset (no download needed).

Every clip shows one textured object over a static textured background, and the class is
the object's *motion*.  The classes are built so that they cannot be told apart from the
frames as an unordered set: only a model that uses the frame order can solve them.

Classes (:data:`MOTION_CLASSES`, in this order)
-----------------------------------------------
====  =========================  ======================================================
  0   moving left                 horizontal translation by 32-50 % of the frame side
  1   moving right                class 0 played backwards
  2   moving up                   vertical translation by 32-50 % of the frame side
  3   moving down                 class 2 played backwards
  4   zooming in                  the object grows by a factor 1.8-2.2
  5   zooming out                 class 4 played backwards
  6   rotating clockwise          rotation by 180-270 degrees (clockwise on screen)
  7   rotating anticlockwise      class 6 played backwards
  8   appearing                   opacity 0 -> 1 while the object grows from half size
  9   disappearing                class 8 played backwards
 10   moving away and back        ("pretending") class 11 with its frames reordered:
                                  out along a diagonal over the first half, back over
                                  the second, ending near the start
 11   moving away                 along a diagonal by 32-50 % of the frame side
====  =========================  ======================================================

Frame-order construction
------------------------
Every clip is rendered as the *canonical* motion of its group, then its frames are
reordered (:func:`frame_order`).  The random parameters (:class:`MotionParams`, drawn by
:func:`sample_params`) depend only on the group: moving left/right, up/down, zooming,
rotating, appearing/disappearing, and the diagonal motions 10/11.  The canonical motions
are classes 0, 2, 4, 6, 8 and 11, which move the object uniformly from ``start`` to ``end``
(frame ``t`` at ``w = t / (T - 1)``; identity order).  The second class of a pair
(:data:`REVERSED_PAIRS`) takes the frames in reverse order.  Class 10 takes the frames of
class 11 in the order ``0, 2, 4, ..., then the odd ones backwards, ..., 5, 3, 1`` (for
``T = 8``: ``0 2 4 6 7 5 3 1``): the object goes out at double speed over the first half of
the clip, turns, and comes back over the second half, ending ``d / (T - 1)`` from its start
(``d`` the diagonal displacement; 1.5-2.3 pixels at 8 frames of 32x32, against 10-16 pixels
for class 11).

So with the same parameters, the clips of the classes of a group are *exact* permutations
of each other's frames (noise included, bit for bit), and the parameters of the classes of
a group are drawn from the same distribution: the frames of a clip, as a set, carry no
information at all about which class of its group it is.  An order-blind model (anything
that is a function of the set of frames, e.g. one averaging per-frame features) is at
chance within each group, i.e. at best 50 % on the 12 classes; a model that uses the
order can reach 100 %.

Content
-------
* Background: static, two random smooth colour fields, each a sum of two oriented
  sinusoids (1-3 cycles per frame side), on a random tinted base; either dark (luminance
  0.15-0.32) or bright (0.68-0.85).
* Object: the opposite brightness (so it is always easy to find), a saturated random colour,
  its own texture (three oriented sinusoids, 1-2.4 cycles across the object) and a linear
  colour gradient across it.  The shape is an ellipse, a rectangle, an irregular triangle or
  an irregular pentagon with soft edges, 28-45 % of the frame side across (58-70 % when
  rotating, so that its rim and spot sweep across patches; 25-40 % before a 2x zoom, i.e.
  17-59 % over the clip); it starts in a random orientation, and its texture moves, scales
  and rotates with it.  A contrasting spot off the centre (on the sprite's x axis) travels
  along a circle as the object turns, to make the direction of rotation visible at 32x32.  Rotations turn by
  180-270 degrees, at most 39 degrees per frame at 8 frames; the spot and the colour gradient
  make every object asymmetric, so consecutive frames are unambiguous.
* Translations move the object centre by 32-50 % of the frame side (10-16 pixels at 32x32)
  with both ends in ``[0.15, 0.85]^2`` of the frame.
* Grey uniform per-frame noise of +-0.02.

Rendering and determinism
-------------------------
Rendering is vectorised over a batch of clips: the background and an RGBA sprite of the
object are computed once per clip (float64), and one
:func:`torch.nn.functional.grid_sample` call per batch resamples the sprite at every frame's
pose; compositing and noise are float32, and the result is quantised to uint8
(:func:`render_batch`; about 2,000-2,500 clips of 8x32x32 per second on one CPU core).
:meth:`SyntheticMotion.__getitem__` renders one clip through the same code and returns
``uint8 / 255``, identical to the clip from :meth:`SyntheticMotion.materialize` (all
per-pixel operations are elementwise, so they do not depend on the batch; the only possible
differences are float64 rounding in the per-clip set-up, ~1e-16, which does not survive the
quantisation).  Everything about a clip is a function of ``(seed, index)`` only.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import operator
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F

from trecvit.validation import int_at_least as _int_at_least

__all__ = [
    "MOTION_CLASSES",
    "PRETEND_PAIR",
    "REVERSED_PAIRS",
    "MotionParams",
    "SyntheticMotion",
    "frame_order",
    "reversed_partner",
    "render_batch",
    "render_clip",
    "sample_params",
    "write_synthetic_videos",
]

PathLike = Union[str, "os.PathLike[str]"]

MOTION_CLASSES: tuple[str, ...] = (
    "moving left",
    "moving right",
    "moving up",
    "moving down",
    "zooming in",
    "zooming out",
    "rotating clockwise",
    "rotating anticlockwise",
    "appearing",
    "disappearing",
    "moving away and back",
    "moving away",
)

#: ``(a, b)``: the clip of class ``b`` is the clip of class ``a`` played backwards.
REVERSED_PAIRS: tuple[tuple[int, int], ...] = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))
#: Class 10 ("moving away and back") is class 11 ("moving away") with its frames reordered.
PRETEND_PAIR: tuple[int, int] = (11, 10)

#: The kind of random parameters each class is drawn with (shared within a pair and by 10/11).
KINDS: tuple[str, ...] = ("horizontal", "vertical", "zoom", "rotate", "appear", "diagonal")
#: Object shapes (an ellipse or a convex polygon).
SHAPES: tuple[str, ...] = ("ellipse", "rectangle", "triangle", "pentagon")
_KIND_OF_CLASS: tuple[int, ...] = (0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5)
_REVERSED: frozenset[int] = frozenset(b for _, b in REVERSED_PAIRS)

#: Amplitude of the uniform per-frame pixel noise.
NOISE_AMPLITUDE = 0.02
#: The sprite spans ``[-EXTENT, EXTENT]`` in object units (the object fits in the unit disc).
_SPOT_CENTRE, _SPOT_RADIUS = 0.65, 0.22  # the orientation spot, in object units
_EXTENT = 1.2
_MAX_EDGES = 5
_BG_FIELDS, _BG_WAVES, _OBJ_WAVES = 2, 2, 3
_PARAM_SALT, _LABEL_SALT = 0x5EED_3071, 0x1ABE_15ED


def reversed_partner(label: int) -> int | None:
    """The class whose clips are ``label``'s clips played backwards, or ``None`` (10, 11)."""
    label = _class_id(label, "label")
    for a, b in REVERSED_PAIRS:
        if label == a:
            return b
        if label == b:
            return a
    return None


def _class_id(value: object, name: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a class index in [0, {len(MOTION_CLASSES)}), got {value!r}")
    try:
        value = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(
            f"{name} must be a class index in [0, {len(MOTION_CLASSES)}), got {value!r}"
        ) from None
    if not 0 <= value < len(MOTION_CLASSES):
        raise ValueError(f"{name} must be a class index in [0, {len(MOTION_CLASSES)}), got {value}")
    return value




# --------------------------------------------------------------------------- #
# parameters
# --------------------------------------------------------------------------- #
@dataclasses.dataclass(frozen=True, eq=False)
class MotionParams:
    """The random parameters of one clip (independent of the clip length and resolution).

    Positions are in frame-side units (``x`` right, ``y`` down, the frame is ``[0, 1]^2``),
    angles in radians (positive = clockwise on screen), background frequencies in cycles per
    frame side.  The object lives in its own coordinates, where it fits in the unit disc; one
    object unit is ``radius * scale`` frame sides on screen, and its frequencies are in cycles
    per object unit.  The ``*_start``/``*_end`` pairs describe the canonical motion (see
    :func:`frame_order`): its frame ``t`` is at ``start + t / (T - 1) * (end - start)``.
    """

    kind: str  # one of KINDS
    shape: str  # one of SHAPES
    bg_mean: np.ndarray  # [3]
    bg_freq: np.ndarray  # [fields, waves, 2]
    bg_phase: np.ndarray  # [fields, waves]
    bg_weight: np.ndarray  # [fields, waves]; each field's weights sum to 1
    bg_colour: np.ndarray  # [fields, 3]: the colour offset where a field is +1
    obj_mean: np.ndarray  # [3]
    obj_freq: np.ndarray  # [waves, 2]
    obj_phase: np.ndarray  # [waves]
    obj_weight: np.ndarray  # [waves]; sums to 1
    obj_colour: np.ndarray  # [3]: the colour offset where the texture is +1
    obj_gradient: np.ndarray  # [2]: unit direction of the linear colour gradient
    obj_gradient_colour: np.ndarray  # [3]: colour change per object unit along it
    edges: np.ndarray  # [MAX_EDGES, 3] rows (nx, ny, c): inside where nx x + ny y <= c for every row
    ellipse: np.ndarray  # [2] semi-axes; the object is the intersection of this ellipse and the polygon
    radius: float
    centre_start: np.ndarray  # [2]
    centre_end: np.ndarray  # [2]
    angle_start: float
    angle_end: float
    scale_start: float
    scale_end: float
    opacity_start: float
    opacity_end: float
    noise_seed: int


_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(MotionParams))
_CATEGORICAL = {"kind": KINDS, "shape": SHAPES}

# The uniform draws one clip is made of, in order: (name, count).
_DRAW_LAYOUT: tuple[tuple[str, int], ...] = (
    ("look", 5),  # dark/bright, background and object luminance, background tint amount and hue
    ("bg_wave", 4 * _BG_FIELDS * _BG_WAVES),  # magnitude, direction, phase, weight
    ("bg_colour", 3 * _BG_FIELDS),  # luminance amount, its sign, hue
    ("obj_wave", 4 * _OBJ_WAVES),
    ("obj_colour", 6),  # tint amount and hue, texture luminance and hue, gradient amount and sign
    ("gradient", 2),  # gradient direction and hue
    ("shape", 12),  # type, aspect ratio, 5 vertex angles, 5 vertex radii
    ("pose", 9),  # angle, diameter, length, 2 placement, diagonal, jitter, zoom, rotation
)
_DRAWS: dict[str, slice] = {}
_offset = 0
for _name, _count in _DRAW_LAYOUT:
    _DRAWS[_name] = slice(_offset, _offset + _count)
    _offset += _count
NUM_DRAWS = _offset
del _name, _count, _offset


def _hue(amount: np.ndarray, hue: np.ndarray) -> np.ndarray:
    """Zero-mean RGB offsets ``[..., 3]`` of hue angle ``2 pi hue``, largest channel ``amount``."""
    angle = 2 * math.pi * hue
    e1 = np.array([1.0, -1.0, 0.0]) / math.sqrt(2.0)
    e2 = np.array([1.0, 1.0, -2.0]) / math.sqrt(6.0)
    v = np.cos(angle)[..., None] * e1 + np.sin(angle)[..., None] * e2
    return amount[..., None] * v / np.abs(v).max(axis=-1, keepdims=True)


def _waves(u: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frequencies ``[..., K, 2]`` (magnitudes in ``[lo, hi]``), phases and weights from ``u [..., 4, K]``."""
    magnitude = lo + (hi - lo) * u[..., 0, :]
    direction = 2 * math.pi * u[..., 1, :]
    freq = np.stack([magnitude * np.cos(direction), magnitude * np.sin(direction)], axis=-1)
    weight = 0.5 + 0.5 * u[..., 3, :]
    return freq, 2 * math.pi * u[..., 2, :], weight / weight.sum(axis=-1, keepdims=True)


def _polygon_edges(vertices: np.ndarray) -> np.ndarray:
    """Half-planes ``[N, MAX_EDGES, 3]`` of convex polygons ``[N, V, 2]`` (vertices sorted by angle).

    Rows past ``V`` repeat the last edge, which leaves the shape unchanged.
    """
    following = np.concatenate([vertices[:, 1:], vertices[:, :1]], axis=1)
    d = following - vertices
    normal = np.stack([d[..., 1], -d[..., 0]], axis=-1)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    c = (normal * vertices).sum(axis=-1)
    sign = np.where(c < 0, -1.0, 1.0)  # normals point away from the origin (inside: n . p <= c)
    edges = np.concatenate([normal * sign[..., None], (c * sign)[..., None]], axis=-1)
    pad = np.repeat(edges[:, -1:], _MAX_EDGES - edges.shape[1], axis=1)
    return np.concatenate([edges, pad], axis=1)


def _shapes(u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shape indices ``[N]``, polygon edges ``[N, MAX_EDGES, 3]`` and ellipse semi-axes ``[N, 2]``.

    From the ``shape`` draws ``[N, 12]``.  An ellipse gets a polygon (a square) that contains
    it, a polygon an ellipse (a huge circle) that contains it.
    """
    n = len(u)
    kind = np.minimum((u[:, 0] * len(SHAPES)).astype(np.int64), len(SHAPES) - 1)
    square = np.broadcast_to(np.array([[2.0, 2.0], [-2.0, 2.0], [-2.0, -2.0], [2.0, -2.0]]), (n, 4, 2))
    b = 0.45 + 0.3 * u[:, 1]
    a = 1.0 / np.sqrt(1.0 + b * b)  # corners on the unit circle
    rectangle = np.stack([a, a * b], axis=-1)[:, None, :] * np.array([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0],
                                                                     [1.0, -1.0]])
    candidates = [_polygon_edges(square), _polygon_edges(rectangle)]
    for corners, jitter in ((3, 0.35), (5, 0.25)):  # irregular triangle and pentagon
        angle = np.arange(corners) * (2 * math.pi / corners) + jitter * (2 * u[:, 2:2 + corners] - 1)
        r = 0.85 + 0.15 * u[:, 7:7 + corners]
        candidates.append(_polygon_edges(np.stack([r * np.cos(angle), r * np.sin(angle)], axis=-1)))
    edges = np.stack(candidates)[kind, np.arange(n)]
    is_ellipse = (kind == SHAPES.index("ellipse"))[:, None]
    ellipse = np.where(is_ellipse, np.stack([np.ones(n), 0.5 + 0.25 * u[:, 1]], axis=-1), 1e3)
    return kind, edges, ellipse


def _derive(kind: np.ndarray, u: np.ndarray, noise_seed: np.ndarray) -> dict[str, np.ndarray]:
    """Turn uniform draws ``u [N, NUM_DRAWS]`` of clips of kinds ``kind [N]`` into parameter arrays.

    Vectorised over clips; returns ``{field of MotionParams: array [N, ...]}`` (``kind`` and
    ``shape`` as indices into KINDS and SHAPES).
    """
    n = len(kind)
    look = u[:, _DRAWS["look"]]
    dark = look[:, 0] < 0.5
    bg_l = np.where(dark, 0.15 + 0.17 * look[:, 1], 0.85 - 0.17 * look[:, 1])
    obj_l = np.where(dark, 0.68 + 0.17 * look[:, 2], 0.32 - 0.17 * look[:, 2])
    bg_waves = u[:, _DRAWS["bg_wave"]].reshape(n, _BG_FIELDS, 4, _BG_WAVES)
    bg_freq, bg_phase, bg_weight = _waves(bg_waves, 1.0, 3.0)
    c = u[:, _DRAWS["bg_colour"]].reshape(n, _BG_FIELDS, 3)
    bg_colour = ((0.03 + 0.03 * c[..., 0]) * np.where(c[..., 1] < 0.5, -1.0, 1.0))[..., None]
    bg_colour = bg_colour + _hue(np.full(c.shape[:2], 0.04), c[..., 2])
    obj_freq, obj_phase, obj_weight = _waves(u[:, _DRAWS["obj_wave"]].reshape(n, 4, _OBJ_WAVES), 0.5, 1.2)
    oc = u[:, _DRAWS["obj_colour"]]
    grad = u[:, _DRAWS["gradient"]]
    direction = 2 * math.pi * grad[:, 0]
    shape, edges, ellipse = _shapes(u[:, _DRAWS["shape"]])

    p = u[:, _DRAWS["pose"]]
    ones, zeros = np.ones(n), np.zeros(n)
    angle = 2 * math.pi * p[:, 0]
    is_kind = {name: kind == index for index, name in enumerate(KINDS)}
    diameter = np.select([is_kind["zoom"], is_kind["rotate"]], [0.25 + 0.15 * p[:, 1], 0.58 + 0.12 * p[:, 1]],
                         0.28 + 0.17 * p[:, 1])
    length = 0.32 + 0.18 * p[:, 2]
    # horizontal / vertical: canonical motion towards smaller coordinates (left / up)
    across = 0.25 + 0.5 * p[:, 3]
    along = 0.15 + length / 2 + (0.7 - length) * p[:, 4]
    axis_start = np.stack([along + length / 2, across], axis=-1)
    axis_end = np.stack([along - length / 2, across], axis=-1)
    # diagonal: one of the four diagonals +- 10 degrees, both ends in [0.15, 0.85]^2
    theta = math.pi / 4 + (math.pi / 2) * np.minimum((4 * p[:, 5]).astype(np.int64), 3)
    theta = theta + (math.pi / 18) * (2 * p[:, 6] - 1)
    step = 0.5 * length[:, None] * np.stack([np.cos(theta), np.sin(theta)], axis=-1)
    mid = 0.15 + np.abs(step) + (0.7 - 2 * np.abs(step)) * p[:, 3:5]
    # zoom / rotate / appear: a fixed centre
    lo = np.select([is_kind["zoom"], is_kind["rotate"]], [0.38, 0.4], 0.3)[:, None]
    fixed = lo + (1 - 2 * lo) * p[:, 3:5]
    moving = [is_kind["horizontal"][:, None], is_kind["vertical"][:, None], is_kind["diagonal"][:, None]]
    centre_start = np.select(moving, [axis_start, axis_start[:, ::-1], mid - step], fixed)
    centre_end = np.select(moving, [axis_end, axis_end[:, ::-1], mid + step], fixed)
    zoom = 1.8 + 0.4 * p[:, 7]
    return {
        "kind": kind,
        "shape": shape,
        "bg_mean": bg_l[:, None] + _hue(0.06 * look[:, 3], look[:, 4]),
        "bg_freq": bg_freq,
        "bg_phase": bg_phase,
        "bg_weight": bg_weight,
        "bg_colour": bg_colour,
        "obj_mean": obj_l[:, None] + _hue(0.05 + 0.1 * oc[:, 0], oc[:, 1]),
        "obj_freq": obj_freq,
        "obj_phase": obj_phase,
        "obj_weight": obj_weight,
        "obj_colour": (0.03 + 0.03 * oc[:, 2])[:, None] + _hue(np.full(n, 0.04), oc[:, 3]),
        "obj_gradient": np.stack([np.cos(direction), np.sin(direction)], axis=-1),
        "obj_gradient_colour": ((0.05 + 0.03 * oc[:, 4]) * np.where(oc[:, 5] < 0.5, -1.0, 1.0))[:, None]
        + _hue(np.full(n, 0.04), grad[:, 1]),
        "edges": edges,
        "ellipse": ellipse,
        "radius": diameter / 2,
        "centre_start": centre_start,
        "centre_end": centre_end,
        "angle_start": angle,
        "angle_end": angle + np.where(is_kind["rotate"], math.pi + math.pi / 2 * p[:, 8], 0.0),
        "scale_start": np.select([is_kind["zoom"], is_kind["appear"]], [zoom ** -0.5, 0.5 * ones], ones),
        "scale_end": np.where(is_kind["zoom"], zoom ** 0.5, ones),
        "opacity_start": np.where(is_kind["appear"], zeros, ones),
        "opacity_end": ones,
        "noise_seed": np.asarray(noise_seed, dtype=np.uint64),
    }


def _draw(rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """The uniform draws and the noise seed of one clip."""
    return rng.random(NUM_DRAWS), int(rng.integers(2**63))


def _params_from_arrays(arrays: dict[str, np.ndarray], n: int) -> MotionParams:
    values = {}
    for name in _FIELDS:
        value = arrays[name][n]
        if name in _CATEGORICAL:
            value = _CATEGORICAL[name][int(value)]
        elif value.ndim == 0:
            value = int(value) if name == "noise_seed" else float(value)
        else:
            value = value.copy()
        values[name] = value
    return MotionParams(**values)


def _arrays_from_params(params: Sequence[MotionParams]) -> dict[str, np.ndarray]:
    arrays = {}
    for name in _FIELDS:
        values = [getattr(p, name) for p in params]
        if name in _CATEGORICAL:
            arrays[name] = np.array([_CATEGORICAL[name].index(v) for v in values], dtype=np.int64)
        elif name == "noise_seed":
            arrays[name] = np.array(values, dtype=np.uint64)
        else:
            arrays[name] = np.stack([np.asarray(v, dtype=np.float64) for v in values])
    return arrays


def sample_params(rng: np.random.Generator, label: int) -> MotionParams:
    """Draw the parameters of a clip of class ``label``: the canonical motion of its group.

    The parameters depend only on the group (``kind``), so the classes of a group (a reversed
    pair, or 10 and 11) draw identical distributions; see :func:`frame_order`.
    """
    kind = _KIND_OF_CLASS[_class_id(label, "label")]
    u, noise_seed = _draw(rng)
    return _params_from_arrays(_derive(np.array([kind]), u[None], np.array([noise_seed])), 0)


def frame_order(label: int, num_frames: int) -> np.ndarray:
    """Which frame of the canonical clip of its group each frame of a ``label`` clip shows.

    The identity for the canonical classes 0, 2, 4, 6, 8 and 11; reversed for 1, 3, 5, 7 and 9;
    for 10 the even frames in order, then the odd frames backwards (``0 2 4 6 7 5 3 1`` at 8
    frames), so the object goes out and comes back.
    """
    label = _class_id(label, "label")
    order = np.arange(num_frames)
    if label in _REVERSED:
        return order[::-1].copy()
    if label == PRETEND_PAIR[1]:
        return np.concatenate([order[0::2], order[1::2][::-1]])
    return order


# --------------------------------------------------------------------------- #
# rendering
# --------------------------------------------------------------------------- #
def _field(freq: torch.Tensor, phase: torch.Tensor, weight: torch.Tensor, x: torch.Tensor,
           y: torch.Tensor) -> torch.Tensor:
    """``sum_k weight_k sin(2 pi (f_k . (x, y)) + phase_k)`` for waves ``[N, K]`` on the grid ``y x x``.

    ``x`` and ``y`` are 1-d; returns ``[N, len(y), len(x)]``.  Uses ``sin(a + b) = sin a cos b +
    cos a sin b`` so that only ``[N, K, S]`` sines are evaluated and the sum is one ``bmm``.
    """
    ax = (2 * math.pi) * freq[..., 0, None] * x + phase[..., None]  # [N, K, X]
    by = (2 * math.pi) * freq[..., 1, None] * y  # [N, K, Y]
    left = torch.cat([torch.cos(by), torch.sin(by)], dim=1).transpose(1, 2)  # [N, Y, 2K]
    right = torch.cat([torch.sin(ax), torch.cos(ax)], dim=1) * weight.repeat(1, 2)[..., None]  # [N, 2K, X]
    return torch.bmm(left, right)


def _render(arrays: dict[str, np.ndarray], labels: Sequence[int], num_frames: int, size: int) -> torch.Tensor:
    """Render parameter arrays (as :func:`_derive` returns them) to uint8 ``[N, T, 3, S, S]``.

    The background, the sprite and the poses are computed in float64, the per-frame sampling
    and compositing in float32 (elementwise operations whose results do not depend on the
    batch), in units of 1/255; then the clips are quantised and their frames reordered
    (:func:`frame_order`).
    """
    n, t_len = len(labels), num_frames
    if n == 0:
        return torch.zeros(0, t_len, 3, size, size, dtype=torch.uint8)
    a = {k: torch.from_numpy(v) for k, v in arrays.items() if k not in _CATEGORICAL and k != "noise_seed"}
    f32 = torch.float32

    # static background [N, 3, S, S], shifted by -NOISE_AMPLITUDE (the noise below is >= 0)
    pix = (torch.arange(size, dtype=torch.float64) + 0.5) / size  # pixel centres in frame sides
    bg = a["bg_mean"][:, :, None, None] - NOISE_AMPLITUDE
    for j in range(a["bg_freq"].shape[1]):
        field = _field(a["bg_freq"][:, j], a["bg_phase"][:, j], a["bg_weight"][:, j], pix, pix)
        bg = bg + field[:, None] * a["bg_colour"][:, j, :, None, None]

    # object sprite [N, 4, R, R] over [-EXTENT, EXTENT]^2 object units: premultiplied RGB and alpha
    res = max(32, size)
    q = ((torch.arange(res, dtype=torch.float64) + 0.5) / res * 2 - 1) * _EXTENT
    edges, axes = a["edges"][..., None, None], a["ellipse"][..., None, None]
    sdf = (edges[:, :, 0] * q - edges[:, :, 2]) + edges[:, :, 1] * q[:, None]  # [N, E, R, R] polygon edges
    k = ((q / axes[:, 0]) ** 2 + (q[:, None] / axes[:, 1]) ** 2).sqrt_()
    sdf = torch.maximum(sdf.amax(1), (k - 1) * axes.amin(1))  # intersected with the ellipse (~distance)
    alpha = (0.5 - sdf / (1.5 * 2 * _EXTENT / res)).clamp_(0.0, 1.0)  # soft edge, ~1.5 sprite pixels
    texture = _field(a["obj_freq"], a["obj_phase"], a["obj_weight"], q, q)
    direction = a["obj_gradient"][..., None, None]
    gradient = direction[:, 0] * q + direction[:, 1] * q[:, None]
    rgb = (a["obj_mean"][:, :, None, None]
           + texture[:, None] * a["obj_colour"][:, :, None, None]
           + gradient[:, None] * a["obj_gradient_colour"][:, :, None, None]).clamp_(0.0, 1.0)
    # a contrasting spot off-centre on the sprite's x axis: it travels along a circle when the object
    # rotates, which makes the direction of rotation legible at 32x32 with 8x8 patches
    spot_dist = ((q - _SPOT_CENTRE) ** 2 + q[:, None] ** 2).sqrt()  # [R, R]
    spot = (0.5 - (spot_dist - _SPOT_RADIUS) / (1.5 * 2 * _EXTENT / res)).clamp(0.0, 1.0)
    rgb = torch.lerp(rgb, (1.0 - a["obj_mean"])[:, :, None, None], spot)
    # composite(rgb, bg) - A == composite(rgb - A, bg - A) with premultiplied rgb
    sprite = torch.cat([(rgb - NOISE_AMPLITUDE) * (255 * alpha[:, None]), alpha[:, None]], dim=1).to(f32)

    # per-frame pose [N, T] of the canonical motion
    w = torch.arange(t_len, dtype=torch.float64) / (t_len - 1)

    def lerp(name: str) -> torch.Tensor:
        start, end = a[f"{name}_start"], a[f"{name}_end"]
        if start.dim() == 1:
            return start[:, None] + (end - start)[:, None] * w
        return start[:, None, :] + (end - start)[:, None, :] * w[:, None]

    centre, angle, scale, opacity = lerp("centre"), lerp("angle"), lerp("scale"), lerp("opacity")
    # sampling grid: sprite coords = M (p - c), M = R(-angle) / unit, unit = frame sides per half sprite,
    # p = the pixel centre; laid out [N, Y, T, X, 2] so that one grid_sample renders all frames side by side
    unit = scale * a["radius"][:, None] * _EXTENT
    cos, sin = torch.cos(angle) / unit, torch.sin(angle) / unit
    mx, my = torch.stack([cos, -sin], dim=-1), torch.stack([sin, cos], dim=-1)  # [N, T, 2] for (gx, gy)
    row = my[:, None] * pix[:, None, None] - (mx * centre[..., :1] + my * centre[..., 1:])[:, None]  # N,Y,T,2
    grid = torch.addcmul(row.to(f32)[:, :, :, None], mx.to(f32)[:, None, :, None], pix.to(f32)[:, None])
    obj = F.grid_sample(sprite, grid.view(n, size, t_len * size, 2), mode="bilinear", padding_mode="zeros",
                        align_corners=False).view(n, 4, size, t_len, size)

    # composite in the [N, C, Y, T, X] layout, in units of 1/255: bg + opacity * (rgb - bg * alpha)
    bg = (bg * 255).to(f32)[:, :, :, None, :]
    frames = torch.addcmul(obj[:, :3], bg, obj[:, 3:], value=-1)
    frames = torch.addcmul(bg, frames, opacity.to(f32)[:, None, None, :, None])
    noise = np.stack([  # grey noise, one byte per pixel and frame
        np.frombuffer(np.random.default_rng(int(s)).bytes(size * t_len * size), dtype=np.uint8)
        for s in arrays["noise_seed"]
    ]).reshape(n, 1, size, t_len, size)
    frames.add_(torch.from_numpy(noise).to(f32), alpha=2 * NOISE_AMPLITUDE)
    frames = frames.round_().clamp_(0, 255).to(torch.uint8)
    # [N, C, Y, T, X] -> [N, T, C, Y, X], with each class's frame order
    video = frames.permute(0, 3, 1, 2, 4).reshape(n * t_len, 3, size, size)
    orders = {label: frame_order(label, t_len) for label in set(labels)}
    order = torch.from_numpy(np.stack([orders[label] for label in labels])) + torch.arange(n)[:, None] * t_len
    return video.index_select(0, order.view(-1)).view(n, t_len, 3, size, size)


def _check_labels(kinds: Sequence[int], labels: Sequence[int]) -> list[int]:
    labels = [_class_id(label, "label") for label in labels]
    if len(labels) != len(kinds):
        raise ValueError(f"got {len(kinds)} parameter sets but {len(labels)} labels")
    for kind, label in zip(kinds, labels):
        if _KIND_OF_CLASS[label] != kind:
            raise ValueError(f"parameters of kind {KINDS[kind]!r} cannot render class {label} "
                             f"({MOTION_CLASSES[label]!r}, kind {KINDS[_KIND_OF_CLASS[label]]!r})")
    return labels


def render_batch(params: Sequence[MotionParams], labels: Sequence[int], *, num_frames: int = 8,
                 image_size: int = 32) -> torch.Tensor:
    """Render clips as uint8 ``[N, T, 3, H, W]`` (``H = W = image_size``).

    ``labels[n]`` must be a class of ``params[n].kind`` (the same group).  The canonical
    motion is rendered, then the frames are put in the class's :func:`frame_order`, so that,
    e.g., ``render_batch([p], [1])[0] == render_batch([p], [0])[0].flip(0)`` and
    ``render_batch([p], [10])[0] == render_batch([p], [11])[0][frame_order(10, T)]``.
    """
    num_frames = _int_at_least(num_frames, "num_frames", 2)
    size = _int_at_least(image_size, "image_size", 4)
    labels = _check_labels([KINDS.index(p.kind) for p in params], labels)
    if not params:
        return torch.zeros(0, num_frames, 3, size, size, dtype=torch.uint8)
    return _render(_arrays_from_params(params), labels, num_frames, size)


def render_clip(params: MotionParams, label: int, *, num_frames: int = 8,
                image_size: int = 32) -> torch.Tensor:
    """One clip, ``[T, 3, H, W]`` float32 in [0, 1] (``uint8 / 255``, as the dataset returns it)."""
    video = render_batch([params], [label], num_frames=num_frames, image_size=image_size)[0]
    return video.to(torch.float32).div_(255.0)


# --------------------------------------------------------------------------- #
# dataset
# --------------------------------------------------------------------------- #
class SyntheticMotion(torch.utils.data.Dataset):
    """``size`` procedurally generated clips of the classes in :data:`MOTION_CLASSES`.

    Items are ``{"video": [T, 3, H, W] float32 in [0, 1], "label": int, "index": i}``, a pure
    function of ``(seed, i)`` (no global RNG; the same in any worker and call order).  Use
    different seeds for training and held-out data (e.g. 0 and 1).

    ``classes`` selects a subset of the 12 classes (indices into :data:`MOTION_CLASSES`); labels
    are then positions in that subset (``0 .. num_classes - 1``), ``classes`` holds their names
    and ``class_ids`` their original indices.  Labels are balanced: every block of
    ``num_classes`` consecutive indices holds each class once, in a seeded random order.
    """

    def __init__(self, size: int, *, num_frames: int = 8, image_size: int = 32, seed: int = 0,
                 classes: Sequence[int] | None = None) -> None:
        self.size = _int_at_least(size, "size", 0)
        self.num_frames = _int_at_least(num_frames, "num_frames", 2)
        self.image_size = _int_at_least(image_size, "image_size", 4)
        self.seed = _int_at_least(seed, "seed", 0)
        if classes is None:
            ids = tuple(range(len(MOTION_CLASSES)))
        else:
            if isinstance(classes, (str, bytes)):
                raise ValueError(f"classes must be a sequence of class indices, got {classes!r}")
            ids = tuple(_class_id(c, "classes[i]") for c in classes)
            if not ids:
                raise ValueError("classes must not be empty")
            if len(set(ids)) != len(ids):
                raise ValueError(f"classes has duplicates: {list(ids)}")
        self.class_ids: tuple[int, ...] = ids
        self.classes: tuple[str, ...] = tuple(MOTION_CLASSES[c] for c in ids)
        self.num_classes = len(ids)

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return (f"SyntheticMotion(size={self.size}, num_frames={self.num_frames}, "
                f"image_size={self.image_size}, seed={self.seed}, classes={list(self.class_ids)})")

    def _index(self, i: int) -> int:
        i = operator.index(i)
        if i < 0:
            i += self.size
        if not 0 <= i < self.size:
            raise IndexError(f"index {i} out of range for a dataset of {self.size} clips")
        return i

    def _block_order(self, block: int) -> np.ndarray:
        return np.random.default_rng([_LABEL_SALT, self.seed, block]).permutation(self.num_classes)

    def label(self, i: int) -> int:
        """The label (``0 .. num_classes - 1``) of item ``i``."""
        i = self._index(i)
        return int(self._block_order(i // self.num_classes)[i % self.num_classes])

    def item_params(self, i: int) -> tuple[MotionParams, int]:
        """``(params, class_id)`` of item ``i``; ``class_id`` indexes :data:`MOTION_CLASSES`."""
        i = self._index(i)
        class_id = self.class_ids[self.label(i)]
        rng = np.random.default_rng([_PARAM_SALT, self.seed, i])
        return sample_params(rng, class_id), class_id

    def __getitem__(self, i: int) -> dict[str, Any]:
        i = self._index(i)
        params, class_id = self.item_params(i)
        video = render_clip(params, class_id, num_frames=self.num_frames, image_size=self.image_size)
        return {"video": video, "label": self.class_ids.index(class_id), "index": i}

    def _render_range(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Items ``start .. stop - 1`` through the vectorised path (same content as ``self[i]``)."""
        labels, draws, noise_seeds = [], [], []
        orders: dict[int, np.ndarray] = {}
        for i in range(start, stop):
            block = i // self.num_classes
            if block not in orders:
                orders[block] = self._block_order(block)
            labels.append(int(orders[block][i % self.num_classes]))
            u, noise_seed = _draw(np.random.default_rng([_PARAM_SALT, self.seed, i]))
            draws.append(u)
            noise_seeds.append(noise_seed)
        class_ids = [self.class_ids[label] for label in labels]
        kinds = np.array([_KIND_OF_CLASS[c] for c in class_ids], dtype=np.int64)
        arrays = _derive(kinds, np.stack(draws), np.array(noise_seeds, dtype=np.uint64))
        video = _render(arrays, class_ids, self.num_frames, self.image_size)
        return video, torch.tensor(labels, dtype=torch.long)

    def iter_batches(self, batch_size: int = 128, progress: bool = False,
                     desc: str = "synthetic clips") -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """Yield ``(start, uint8 videos [n, T, 3, H, W], labels [n])`` for consecutive ranges.

        With ``progress`` a tqdm bar counts the clips the caller has finished with.
        """
        batch_size = _int_at_least(batch_size, "batch_size", 1)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.size, desc=desc, unit="clip", leave=False)
        try:
            for start in range(0, self.size, batch_size):
                video, labels = self._render_range(start, min(start + batch_size, self.size))
                yield start, video, labels
                if bar is not None:
                    bar.update(len(labels))
        finally:
            if bar is not None:
                bar.close()

    def materialize(self, progress: bool = False, batch_size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
        """All clips as ``(uint8 [N, T, 3, H, W], long [N])``, rendered in batches.

        ``videos[i].float() / 255`` equals ``self[i]["video"]`` and ``labels[i]`` its label.
        """
        s, t = self.image_size, self.num_frames
        videos = torch.empty(self.size, t, 3, s, s, dtype=torch.uint8)
        labels = torch.empty(self.size, dtype=torch.long)
        for start, video, label in self.iter_batches(batch_size, progress):
            videos[start:start + len(video)] = video
            labels[start:start + len(label)] = label
        return videos, labels


# --------------------------------------------------------------------------- #
# writing videos
# --------------------------------------------------------------------------- #
def _file_name(i: int, class_name: str) -> str:
    return f"{i:06d}_{class_name.replace(' ', '_')}.mp4"


def _write_mp4(path: Path, clip: torch.Tensor, fps: int, codec: str, crf: int) -> None:
    import av

    frames = clip.permute(0, 2, 3, 1).contiguous().numpy()  # [T, H, W, 3] uint8
    with av.open(str(path), mode="w") as container:
        options = {"crf": str(crf)} if codec in ("libx264", "libx265") else {}
        stream = container.add_stream(codec, rate=fps, options=options)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        if not options:
            stream.bit_rate = 4_000_000
        for t, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = t
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def write_synthetic_videos(out_dir: PathLike, size: int, *, num_frames: int = 8, image_size: int = 32,
                           seed: int = 0, classes: Sequence[int] | None = None, fps: int = 8,
                           codec: str = "libx264", crf: int = 10, overwrite: bool = False,
                           progress: bool = False) -> Path:
    """Write :class:`SyntheticMotion` ``(size, seed, ...)`` as ``.mp4`` files; returns ``out_dir``.

    Layout: ``videos/{i:06d}_{class_name_with_underscores}.mp4`` (yuv420p, ``crf`` for
    libx264/libx265, a high bit rate otherwise), ``labels.csv`` (a header ``path,label``, then
    one row per clip: the path relative to ``out_dir`` and the integer label) and
    ``classes.txt`` (the class names in label order, one per line).  ``image_size`` must be
    even (yuv420p).  An existing non-empty ``out_dir`` is refused unless ``overwrite=True``,
    which deletes its ``videos/`` folder and replaces ``labels.csv`` and ``classes.txt`` (other
    files are left alone).
    """
    import av

    dataset = SyntheticMotion(size, num_frames=num_frames, image_size=image_size, seed=seed, classes=classes)
    if image_size % 2:
        raise ValueError(f"image_size must be even for yuv420p video, got {image_size}")
    fps = _int_at_least(fps, "fps", 1)
    crf = _int_at_least(crf, "crf", 0)
    if codec not in av.codecs_available:
        raise ValueError(f"codec {codec!r} is not available in this PyAV build")
    out = Path(os.fspath(out_dir))
    if out.exists() and not out.is_dir():
        raise ValueError(f"{str(out)!r} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{str(out)!r} is not empty; pass overwrite=True to replace its videos")
        if (out / "videos").is_dir():
            shutil.rmtree(out / "videos")
    videos_dir = out / "videos"
    videos_dir.mkdir(parents=True, exist_ok=True)

    rows = []
    for start, video, labels in dataset.iter_batches(progress=progress, desc="writing mp4"):
        for k in range(len(video)):
            name = _file_name(start + k, dataset.classes[int(labels[k])])
            _write_mp4(videos_dir / name, video[k], fps, codec, crf)
            rows.append((f"videos/{name}", int(labels[k])))
    with open(out / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("path", "label"))
        writer.writerows(rows)
    (out / "classes.txt").write_text("".join(f"{name}\n" for name in dataset.classes))
    return out
