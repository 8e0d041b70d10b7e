"""A built-in synthetic point-tracking dataset in the spirit of Kubric MOVi, with exact ground truth.

Every video is a pure function of ``(seed, index)`` (and the constructor's arguments): a
``numpy.random.Generator`` seeded with ``[seed, index]`` draws a scene of layers.  Layer 0 is a tiled
background, layers ``1..K`` are objects in depth order (a higher id is in front).  Each layer is a
procedural texture (``uint8 [h, w, 3]``: colour noise in several octaves, soft stripes and blobs) with a
mask (``bool [h, w]``: a disc, ellipse, rectangle or convex polygon; all True for the background) and, per
frame, an affine map from its texture coordinates to pixel coordinates: rotation, scale and a smooth
curved translation for objects (which may leave the frame), translation and a slight zoom for the
background.

Coordinates: pixel ``(i, j)`` (row, column) covers ``[j, j + 1) x [i, i + 1)`` of continuous pixel
coordinates ``(px, py)``; texel ``(r, c)`` covers ``[c, c + 1) x [r, r + 1)`` of texture coordinates
``(u, v)``.  Rendering is nearest neighbour: per frame and layer, back to front, each pixel centre
``(j + 0.5, i + 0.5)`` is mapped through the layer's inverse affine map, and the texel containing the result
paints the pixel when it is inside the mask (the background is tiled).  The layer-id map records which
layer painted each pixel.

Tracks: a point is a fixed texture coordinate of one layer: the texture coordinate of a pixel centre that
shows the layer at a random query frame (so the point is visible there; object points avoid the mask's
edge).  About ``background_fraction`` of the points lie on the background, the rest on the objects in
proportion to their visible area.  A point's position at frame ``t`` is its layer's forward affine map of
that frame, and it is occluded when outside the frame or when the layer-id map shows another layer at its
pixel.  Positions are kept ``1e-3`` pixels away from pixel boundaries, so that any rounding of
``floor(x * W)`` finds the pixel the ground truth was computed on.

Records use the TAP-Vid DAVIS format: ``{"video": uint8 [T, H, W, 3], "points": float32 [n, T, 2]`` of
normalised ``(x, y) = (px / W, py / H)`` (out-of-range for points outside the frame), ``"occluded": bool
[n, T]}`` plus ``"name"``; :func:`write_davis_pickle` writes ``{name: record}`` as TAP-Vid's pickle.
"""

from __future__ import annotations

import math
import operator
import os
import pickle
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

__all__ = ["SyntheticScene", "SyntheticTracks", "apply_affine", "flat_colour", "render_layer_ids",
           "render_scene", "write_davis_pickle"]

MAX_OBJECTS = 16
_EDGE_EPS = 1e-3  # pixels: how far tracked positions are kept from pixel boundaries
_DAVIS_KEYS = ("video", "points", "occluded")


def flat_colour(layer: int) -> np.ndarray:
    """The constant colour of ``layer`` in flat-colour renders (``uint8 [3]``; unique per layer)."""
    return np.array([(23 + 53 * layer) % 256, (200 + 101 * layer) % 256, (90 + 151 * layer) % 256], np.uint8)


def apply_affine(matrix: np.ndarray, x, y) -> tuple[np.ndarray, np.ndarray]:
    """Map points ``(x, y)`` through 2x3 affine matrices ``[..., 2, 3]`` (broadcasting).

    The renderer and the tracks both use this function, so their floating-point results agree exactly.
    """
    return (matrix[..., 0, 0] * x + matrix[..., 0, 1] * y + matrix[..., 0, 2],
            matrix[..., 1, 0] * x + matrix[..., 1, 1] * y + matrix[..., 1, 2])


@dataclass(frozen=True)
class SyntheticScene:
    """What one video is made of, for inspection and tests (``SyntheticTracks.scene``).

    ``textures[l]`` (``uint8 [h, w, 3]``) and ``masks[l]`` (``bool [h, w]``) are layer ``l``'s; layer 0 is
    the tiled background.  ``forward[l, t]`` (``float64 [2, 3]``) maps layer ``l``'s texture coordinates
    to pixel coordinates at frame ``t``, ``inverse[l, t]`` back.  Point ``k`` is texture coordinate
    ``point_uv[k]`` (``(u, v)``) of layer ``point_layer[k]``, sampled where visible at ``query_frame[k]``.
    """

    image_size: tuple[int, int]
    textures: tuple[np.ndarray, ...]
    masks: tuple[np.ndarray, ...]
    forward: np.ndarray
    inverse: np.ndarray
    point_layer: np.ndarray
    point_uv: np.ndarray
    query_frame: np.ndarray

    @property
    def num_frames(self) -> int:
        return int(self.forward.shape[1])


def _render(scene: SyntheticScene, flat_colours: bool = False, interiors: list[np.ndarray] | None = None):
    """``(video, layer_ids, uv, interior)``: ``uv`` the texture coordinate of each pixel centre in its shown
    layer, ``interior`` whether its texel is inside ``interiors[layer]`` (eroded masks)."""
    (h, w), t = scene.image_size, scene.num_frames
    xs, ys = np.arange(w) + 0.5, (np.arange(h) + 0.5)[:, None]
    video, ids = np.empty((t, h, w, 3), np.uint8), np.zeros((t, h, w), np.uint8)
    uv, interior = np.empty((t, h, w, 2)), np.zeros((t, h, w), bool)
    for layer, (texture, mask) in enumerate(zip(scene.textures, scene.masks)):
        u, v = apply_affine(scene.inverse[layer][:, None, None], xs, ys)
        col, row = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
        th, tw = mask.shape
        if layer == 0:
            col, row, cover = col % tw, row % th, np.ones(u.shape, bool)
        else:
            inside = (col >= 0) & (col < tw) & (row >= 0) & (row < th)
            np.clip(col, 0, tw - 1, out=col)
            np.clip(row, 0, th - 1, out=row)
            cover = inside & mask[row, col]
        col, row = col[cover], row[cover]
        video[cover] = flat_colour(layer) if flat_colours else texture[row, col]
        ids[cover] = layer
        uv[cover] = np.stack([u[cover], v[cover]], -1)
        if interiors is not None:
            interior[cover] = interiors[layer][row, col]
    return video, ids, uv, interior


def render_scene(scene: SyntheticScene, *, flat_colours: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(video uint8 [T, H, W, 3], layer_ids uint8 [T, H, W])``; with ``flat_colours`` every layer is painted
    in :func:`flat_colour` of its id instead of its texture (for inspection and tests)."""
    video, ids, _, _ = _render(scene, flat_colours)
    return video, ids


def render_layer_ids(scene: SyntheticScene) -> np.ndarray:
    """The id of the front-most layer at every pixel, ``uint8 [T, H, W]`` (for inspection and tests)."""
    return render_scene(scene)[1]


def _hsv(hue: float, sat: float, val: float) -> np.ndarray:
    k = (np.array([5.0, 3.0, 1.0]) + 6.0 * hue) % 6.0
    return val - val * sat * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def _texture(rng: np.random.Generator, h: int, w: int, base: np.ndarray, contrast: float) -> np.ndarray:
    """A tileable procedural texture ``uint8 [h, w, 3]``: octaves of band-limited colour noise (from about
    two cycles across the texture down to a period of 4 texels), soft stripes and soft-edged blobs."""
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
    log_f = np.log2(np.maximum(np.hypot(fx, fy), 1e-9))
    image = np.broadcast_to(255.0 * base, (h, w, 3)).copy()
    f0 = 2.0 / max(h, w)
    for k in range(max(1, int(math.log2(0.25 / f0)) + 1)):
        band = np.exp(-2.0 * (log_f - math.log2(f0) - k) ** 2)
        band[0, 0] = 0.0
        spectrum = band * (rng.standard_normal(band.shape) + 1j * rng.standard_normal(band.shape))
        field = np.fft.irfft2(spectrum, s=(h, w))
        field /= field.std() + 1e-12
        colour = 0.6 * rng.standard_normal(3) + rng.standard_normal()
        image += contrast * 30.0 * 0.85 ** k * field[..., None] * colour
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    for _ in range(rng.integers(1, 3)):
        period, angle = rng.uniform(5.0, 16.0), rng.uniform(0.0, math.pi)
        kx, ky = round(w * math.cos(angle) / period), round(h * math.sin(angle) / period)
        phase = 2 * math.pi * ((kx or 1) * xx / w + ky * yy / h) + rng.uniform(0.0, 2 * math.pi)
        stripes = np.tanh(2.5 * np.sin(phase))[..., None]
        image += contrast * rng.uniform(12.0, 30.0) * stripes * rng.normal(0.0, 1.0, 3)
    for _ in range(rng.integers(2, 6)):
        cx, cy, radius = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.05, 0.2) * max(h, w)
        dx, dy = (xx - cx + w / 2) % w - w / 2, (yy - cy + h / 2) % h - h / 2
        blob = 1.0 / (1.0 + np.exp(np.clip((np.hypot(dx, dy) - radius) / (0.12 * radius), -50, 50)))
        image += contrast * rng.uniform(30.0, 60.0) * blob[..., None] * rng.normal(0.0, 1.0, 3)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _shape_mask(rng: np.random.Generator, side: int) -> np.ndarray:
    """A random disc, ellipse, rectangle or convex polygon filling a ``side x side`` texture."""
    grid = (np.arange(side) + 0.5) / side * 2.0 - 1.0
    x, y = grid[None, :], grid[:, None]
    kind = rng.integers(4)
    if kind == 0:
        return x ** 2 + y ** 2 <= 0.95 ** 2
    if kind == 1:
        return (x / 0.95) ** 2 + (y / rng.uniform(0.45, 0.85)) ** 2 <= 1.0
    if kind == 2:
        a, b = rng.uniform(0.5, 0.95, 2)
        return (np.abs(x) <= a) & (np.abs(y) <= b)
    n = int(rng.integers(3, 9))
    angles = 2 * math.pi * (np.arange(n) + rng.uniform(-0.25, 0.25, n)) / n + rng.uniform(0, 2 * math.pi)
    vx, vy = 0.95 * np.cos(angles), 0.95 * np.sin(angles)
    mask = np.ones((side, side), bool)
    for k in range(n):  # counter-clockwise vertices: the inside is to the left of every edge
        ex, ey = vx[(k + 1) % n] - vx[k], vy[(k + 1) % n] - vy[k]
        mask &= ex * (y - vy[k]) - ey * (x - vx[k]) >= 0
    return mask


def _erode(mask: np.ndarray) -> np.ndarray:
    p = np.pad(mask, 1)
    return mask & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]


def _affines(centre: np.ndarray, theta: np.ndarray, scale: np.ndarray, origin: np.ndarray):
    """Forward and inverse ``[T, 2, 3]`` maps: texture coordinate ``origin`` goes to ``centre[t]``, rotated by
    ``theta[t]`` and scaled by ``scale[t]``."""
    cos, sin = np.cos(theta), np.sin(theta)
    rot = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
    lin, inv = scale[:, None, None] * rot, rot.transpose(0, 2, 1) / scale[:, None, None]
    forward = np.concatenate([lin, (centre - lin @ origin)[..., None]], -1)
    inverse = np.concatenate([inv, (origin - (inv @ centre[..., None])[..., 0])[..., None]], -1)
    return forward, inverse


def _allocate(n: int, areas: np.ndarray) -> np.ndarray:
    """Split ``n`` points over layers in proportion to ``areas``: one+ per visible layer (if n allows)."""
    counts = (areas > 0).astype(np.int64) if n >= np.count_nonzero(areas) else np.zeros(len(areas), np.int64)
    share = (n - counts.sum()) * areas / max(areas.sum(), 1e-12)
    counts += np.floor(share).astype(np.int64)
    order = np.argsort(-(share - np.floor(share)), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    return counts


def _check_int(name: str, value, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return int(value)


def _pair(name: str, value) -> tuple:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ValueError(f"{name} must be a pair (min, max), got {value!r}")
    return tuple(value)


def _check_float(name: str, value, low: float, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not low <= float(value) <= high:
        raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}")
    return float(value)


class SyntheticTracks:
    """``num_videos`` synthetic point-tracking videos in TAP-Vid DAVIS record format (see the module doc).

    ``image_size`` is ``S`` or ``(H, W)`` (each >= 16); ``num_objects`` the inclusive range of the number of
    objects; ``max_speed`` the fastest object speed in units of ``min(H, W)`` per frame (objects move at
    0.35 to 1 times it, the background at 0.2 to 1 times ``background_speed * max_speed``);
    ``max_rotation`` radians per frame; ``object_size`` the range of object diameters in units of
    ``min(H, W)``; ``background_fraction`` the share of points on the background.
    """

    def __init__(self, num_videos: int, *, num_frames: int = 24, image_size: int | tuple[int, int] = 64,
                 num_points: int = 64, num_objects: tuple[int, int] = (3, 6), seed: int = 0,
                 max_speed: float = 0.07, max_rotation: float = 0.06, background_speed: float = 0.5,
                 object_size: tuple[float, float] = (0.2, 0.45), background_fraction: float = 0.2) -> None:
        self.num_videos = _check_int("num_videos", num_videos, 1)
        self.num_frames = _check_int("num_frames", num_frames, 2)
        size = (image_size, image_size) if isinstance(image_size, (int, np.integer)) else image_size
        if isinstance(size, (str, bytes)) or not hasattr(size, "__len__") or len(size) != 2:
            raise ValueError(f"image_size must be an int or (height, width), got {image_size!r}")
        self.image_size = (_check_int("image height", size[0], 16), _check_int("image width", size[1], 16))
        self.num_points = _check_int("num_points", num_points, 1)
        num_objects, object_size = _pair("num_objects", num_objects), _pair("object_size", object_size)
        lo = _check_int("num_objects[0]", num_objects[0], 0, MAX_OBJECTS)
        self.num_objects = (lo, _check_int("num_objects[1]", num_objects[1], lo, MAX_OBJECTS))
        self.seed = _check_int("seed", seed, 0)
        self.max_speed = _check_float("max_speed", max_speed, 0.0, 1.0)
        self.max_rotation = _check_float("max_rotation", max_rotation, 0.0, math.pi)
        self.background_speed = _check_float("background_speed", background_speed, 0.0, 10.0)
        small = _check_float("object_size[0]", object_size[0], 0.05, 2.0)
        self.object_size = (small, _check_float("object_size[1]", object_size[1], small, 2.0))
        self.background_fraction = _check_float("background_fraction", background_fraction, 0.0, 1.0)

    def __len__(self) -> int:
        return self.num_videos

    def _index(self, index) -> int:
        i = operator.index(index)
        if not -self.num_videos <= i < self.num_videos:
            raise IndexError(f"video {i} out of range for {self.num_videos} videos")
        return i % self.num_videos

    def name(self, index: int) -> str:
        return f"synthetic_{self.seed}_{self._index(index):05d}"

    def _layers(self, rng: np.random.Generator):
        """Textures, masks and per-frame affine maps of the background and the objects (back to front)."""
        (h, w), t = self.image_size, self.num_frames
        side, tau = min(h, w), np.arange(t) - (t - 1) / 2
        v_max = self.max_speed * side
        k = int(rng.integers(self.num_objects[0], self.num_objects[1] + 1))
        hue0 = rng.uniform()
        bg_size = (2 * max(h, w), 2 * max(h, w))
        bg_colour = _hsv(rng.uniform(), rng.uniform(0.1, 0.5), rng.uniform(0.3, 0.7))
        textures = [_texture(rng, *bg_size, bg_colour, 1.0)]
        masks = [np.ones(bg_size, bool)]
        angle, bg_speed = rng.uniform(0, 2 * math.pi), rng.uniform(0.2, 1.0) * self.background_speed * v_max
        bg_velocity = bg_speed * np.array([math.cos(angle), math.sin(angle)])
        centre = np.array([w / 2, h / 2]) + tau[:, None] * bg_velocity
        zoom = np.exp(rng.uniform(-0.008, 0.008) * tau)
        maps = [_affines(centre, np.zeros(t), zoom, np.array(bg_size[::-1]) / 2)]
        for j in range(k):
            n = max(8, round(rng.uniform(*self.object_size) * side))
            colour = _hsv((hue0 + j / max(k, 1) + rng.uniform(-0.05, 0.05)) % 1.0, rng.uniform(0.5, 0.9),
                          rng.uniform(0.45, 0.85))
            textures.append(_texture(rng, n, n, colour, 0.8))
            masks.append(_shape_mask(rng, n))
            mid = rng.uniform(0.15, 0.85, 2) * (w, h)
            speed, heading = rng.uniform(0.35, 1.0) * v_max, rng.uniform(0, 2 * math.pi)
            turn = rng.uniform(-0.12, 0.12)
            # constant speed along an arc turning at `turn` radians per frame, at `mid` half way through:
            # the integral of speed * exp(i (heading + turn * s)) ds from 0 to tau
            arc = tau * np.exp(0.5j * turn * tau) * np.sinc(turn * tau / (2 * math.pi))
            path = speed * np.exp(1j * heading) * arc
            theta = rng.uniform(0, 2 * math.pi) + rng.uniform(-1, 1) * self.max_rotation * tau
            scale = np.exp(0.2 * np.sin(rng.uniform(0.1, 0.3) * tau + rng.uniform(0, 2 * math.pi)))
            maps.append(_affines(mid + np.stack([path.real, path.imag], -1), theta, scale,
                                 np.array([n / 2, n / 2])))
        forward, inverse = (np.stack(m) for m in zip(*maps))
        return textures, masks, forward, inverse

    def _generate(self, index: int) -> tuple[SyntheticScene, np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, index])
        textures, masks, forward, inverse = self._layers(rng)
        empty = np.zeros(0, np.int64)
        scene = SyntheticScene(self.image_size, tuple(textures), tuple(masks), forward, inverse, empty,
                               np.zeros((0, 2)), empty)
        interiors = [masks[0]] + [_erode(m) for m in masks[1:]]
        video, ids, uv, interior = _render(scene, interiors=interiors)
        flat_ids, flat_interior, n = ids.ravel(), interior.ravel(), self.num_points
        areas = np.bincount(flat_ids, minlength=len(textures)).astype(np.float64)
        n_bg = n if areas[1:].sum() == 0 else min(n - 1, max(1, round(self.background_fraction * n)))
        counts = np.concatenate([[n_bg], _allocate(n - n_bg, areas[1:])])
        picks = []
        for layer in np.flatnonzero(counts):
            shows = flat_ids == layer
            candidates = np.flatnonzero(shows & flat_interior)
            candidates = candidates if len(candidates) else np.flatnonzero(shows)
            picks.append(rng.choice(candidates, size=counts[layer], replace=counts[layer] > len(candidates)))
        picks = rng.permutation(np.concatenate(picks))
        scene = replace(scene, point_layer=flat_ids[picks].astype(np.int64),
                        point_uv=uv.reshape(-1, 2)[picks], query_frame=picks // ids[0].size)
        return scene, video, ids

    def scene(self, index: int) -> SyntheticScene:
        """The layers and points of video ``index`` (render it with :func:`render_scene`)."""
        return self._generate(self._index(index))[0]

    def __getitem__(self, index: int) -> dict:
        i = self._index(index)
        scene, video, ids = self._generate(i)
        (h, w), t = self.image_size, self.num_frames
        px, py = apply_affine(scene.forward[scene.point_layer], scene.point_uv[:, None, 0],
                              scene.point_uv[:, None, 1])
        col, row = np.floor(px), np.floor(py)
        inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
        shown = ids[np.arange(t)[None], np.clip(row, 0, h - 1).astype(np.int64),
                    np.clip(col, 0, w - 1).astype(np.int64)]
        occluded = ~inside | (shown != scene.point_layer[:, None])
        px, py = (c + np.clip(p - c, _EDGE_EPS, 1 - _EDGE_EPS) for p, c in ((px, col), (py, row)))
        points = np.stack([px / w, py / h], -1).astype(np.float32)
        return {"video": video, "points": points, "occluded": occluded, "name": self.name(i)}

    def records(self) -> dict[str, dict]:
        """``{name: record}`` for every video (a TAP-Vid DAVIS-style dict)."""
        return {self.name(i): self[i] for i in range(self.num_videos)}


def write_davis_pickle(records: dict[str, dict], path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``records`` as a TAP-Vid DAVIS pickle ``{name: {video, points, occluded}}`` and return the path.

    The file is written to a temporary file in the same folder and moved into place with ``os.replace``,
    so readers never see a partial file.  An existing ``path`` raises ``FileExistsError`` unless
    ``overwrite``.
    """
    path = Path(path)
    if not isinstance(records, dict) or not records:
        raise ValueError("records must be a non-empty dict {name: record}")
    data = {}
    for name, record in records.items():
        missing = [key for key in _DAVIS_KEYS if key not in record]
        if missing:
            raise ValueError(f"record {name!r} lacks {missing}")
        data[str(name)] = {key: np.asarray(record[key]) for key in _DAVIS_KEYS}
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists (pass overwrite=True to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
