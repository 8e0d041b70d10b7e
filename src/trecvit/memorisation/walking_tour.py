"""Synthetic "walking tour" videos for the long-video memorisation task (paper section 5.4).

The paper uses the Walking Tours dataset (hour-long city walks whose scenery never stops
changing, so the frames seen most recently differ from those seen long ago). Here a camera
walks along an endless procedural strip instead: rich texture at several scales (a pyramid of
smooth noise, from cells twice the frame side down to an eighth of it), sharp-edged coloured
shapes and oriented stripes, on a palette that drifts along the strip. The camera moves forward
at a varying speed, sways sideways and zooms in and out (smooth random walks), and a slow colour
drift (per-channel gain and offset) runs over time, so the frame seen ``T - k`` frames ago shows
another part of the scene, in other colours, than the last one.

Everything is deterministic by ``(seed, index)`` and prefix-consistent: the first ``T`` frames
of a longer video are exactly the ``T``-frame video (a 96-frame test video extends the 64-frame
one). The camera path is drawn in blocks of :data:`PATH_BLOCK` frames and the noise lattice in
blocks of :data:`LATTICE_CHUNK` columns, and only the part of the strip the camera visits is
rendered; frames are then cut out of it with one ``grid_sample`` call (bilinear).

Axis legend: ``T`` frames, ``Hc`` canvas height, ``s`` frame side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

PATH_BLOCK = 32  # frames of camera path drawn per random block (keeps longer videos prefix-consistent)
LATTICE_CHUNK = 8  # lattice columns drawn per random block, at every level of the noise pyramid
LEVELS = 5  # levels of the noise pyramid; cell sizes 16 u, 8 u, 4 u, 2 u, u canvas pixels, u = image_size / 8
# Channels of the noise pyramid and their amplitude at each level (coarse to fine):
# 0-2 texture colour, 3-5 palette, 6 shape mask, 7-9 shape colour, 10 stripe region.
_AMPS = torch.tensor([
    [1.0, 0.8, 0.65, 0.5, 0.4],  # texture: every scale
    [1.0, 0.3, 0.0, 0.0, 0.0],  # palette: the coarsest scales only (drifts along the strip)
    [0.0, 0.3, 1.0, 0.5, 0.1],  # shape mask: blobs of about 16-32 pixels
    [1.0, 0.3, 0.0, 0.0, 0.0],  # shape colour
    [0.0, 1.0, 0.3, 0.0, 0.0],  # stripe region
])
_CHANNEL_GROUP = (0, 0, 0, 1, 1, 1, 2, 3, 3, 3, 4)  # the row of _AMPS of each of the 11 channels
_STREAM_PATH, _STREAM_STYLE = 101, 102  # random streams besides the pyramid levels (0, 1, ...)


def mix_seed(*values: int) -> int:
    """A 63-bit seed from integers (splitmix64 steps): independent streams per (seed, index, stream)."""
    x = 0x9E3779B97F4A7C15
    for v in values:
        x = (x ^ (int(v) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x = (x ^ (x >> 27)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return x & 0x7FFFFFFFFFFFFFFF


@dataclass(frozen=True)
class WalkingTour:
    """A generator of synthetic walking-tour videos.

    Attributes:
        image_size: side of the square output frames in pixels.
        seed: the generator's seed; video ``index`` of seed ``s`` is always the same video.
        canvas_height: height of the procedural strip in canvas pixels (the strip is as long as
            the tour needs); ``None``: three times ``image_size``.
        window: side of the camera's view at zoom 1, as a fraction of ``canvas_height``.
        zoom_range: smallest and largest zoom factor of the view side (a smooth random walk in log
            space between them).
        speed: mean forward speed, in units of ``canvas_height`` per frame.
        colour_drift: amplitude of the slow per-channel gain/offset drift over time.
    """

    image_size: int = 32
    seed: int = 0
    canvas_height: int | None = None
    window: float = 1 / 3
    zoom_range: tuple[float, float] = (0.75, 1.5)
    speed: float = 0.04
    colour_drift: float = 0.15

    def __post_init__(self) -> None:
        if not isinstance(self.image_size, int) or isinstance(self.image_size, bool) or self.image_size < 1:
            raise ValueError(f"WalkingTour.image_size must be a positive int, got {self.image_size!r}")
        if self.canvas_height is None:
            object.__setattr__(self, "canvas_height", 3 * self.image_size)
        if self.canvas_height < self.image_size:
            raise ValueError(f"WalkingTour.canvas_height must be >= image_size ({self.image_size}), got "
                             f"{self.canvas_height}")
        lo, hi = self.zoom_range
        if not 0 < lo <= hi or hi * self.window >= 1:
            raise ValueError(f"WalkingTour.zoom_range {self.zoom_range} must satisfy 0 < lo <= hi and "
                             f"hi * window < 1 (window={self.window})")
        if self.speed <= 0:
            raise ValueError(f"WalkingTour.speed must be > 0, got {self.speed}")

    @property
    def cells(self) -> tuple[int, ...]:
        """Lattice cell sizes of the noise pyramid's levels (canvas pixels), coarse to fine: the
        finest is an eighth of the frame side (4 pixels at 32 x 32)."""
        unit = max(1, round(self.image_size / 8))
        return tuple(unit * 2 ** (LEVELS - 1 - i) for i in range(LEVELS))

    def generator(self, index: int, stream: int) -> torch.Generator:
        """The random stream ``stream`` of video ``index`` (independent of other indices and seeds)."""
        if index < 0:
            raise ValueError(f"video index must be >= 0, got {index}")
        g = torch.Generator()
        g.manual_seed(mix_seed(self.seed, index, stream))
        return g

    # ------------------------------------------------------------------ canvas
    def canvas(self, index: int, width: int) -> torch.Tensor:
        """Columns ``[0, width)`` of the procedural strip of video ``index``: ``[3, Hc, width]`` in
        [0, 1]. A wider canvas extends a narrower one (the same pixels where both exist)."""
        hc, cells = self.canvas_height, self.cells
        c0, c_last = cells[0], cells[-1]
        rows = -(-hc // c0) + 2  # coarse lattice rows, with a margin
        cols = -(-width // c0) + 2  # coarse lattice columns, with a margin of 2 coarse cells
        x = None
        for level, cell in enumerate(cells):
            scale = c0 // cell
            lattice = self._lattice(index, level, rows * scale, cols * scale)  # (11, r, c)
            amps = _AMPS[list(_CHANNEL_GROUP), level][:, None, None]  # (11, 1, 1)
            noise = amps * lattice
            x = noise if x is None else _up(x, 2) + noise
        full = _up(x, c_last)[:, :hc, :width]  # (11, Hc, width)
        style = torch.rand(6, generator=self.generator(index, _STREAM_STYLE))
        base = torch.sigmoid(1.5 * full[3:6]) + 0.25 * full[0:3]
        mask = torch.sigmoid(10.0 * full[6:7])
        img = base * (1 - 0.75 * mask) + 0.75 * mask * torch.sigmoid(2.0 * full[7:10])
        theta, period = float(style[0]) * math.pi, (4.0 + 6.0 * float(style[1])) * c_last / 4
        yy = torch.arange(hc, dtype=torch.float32)[:, None]
        xx = torch.arange(width, dtype=torch.float32)[None, :]
        stripes = torch.sin(2 * math.pi * (xx * math.cos(theta) + yy * math.sin(theta)) / period)  # (Hc, W)
        region = torch.sigmoid(6.0 * full[10])  # (Hc, W)
        tint = (style[3:6] - 0.5)[:, None, None]
        img = img + 0.3 * (region * stripes)[None] * (0.4 + tint)
        return img.clamp(0.0, 1.0)

    def _lattice(self, index: int, level: int, rows: int, cols: int) -> torch.Tensor:
        """``[11, rows, cols]`` standard normal values of pyramid level ``level``, drawn in blocks of
        :data:`LATTICE_CHUNK` columns (more columns only append blocks)."""
        g = self.generator(index, level)
        chunks = -(-cols // LATTICE_CHUNK)
        return torch.cat([torch.randn(len(_CHANNEL_GROUP), rows, LATTICE_CHUNK, generator=g)
                          for _ in range(chunks)], dim=2)[:, :, :cols]

    # ------------------------------------------------------------ camera path
    def path(self, index: int, num_frames: int) -> dict[str, torch.Tensor]:
        """The camera path and colour drift of video ``index``, ``num_frames`` rows each:
        ``x``, ``y`` (view centre in canvas pixels), ``zoom`` ``[T]``; ``gain``, ``offset``
        ``[T, 3]``. The first ``T`` rows do not depend on ``num_frames >= T``."""
        if not isinstance(num_frames, int) or num_frames < 1:
            raise ValueError(f"num_frames must be a positive int, got {num_frames!r}")
        g = self.generator(index, _STREAM_PATH)
        hc = self.canvas_height
        start = torch.rand(3, generator=g)  # x, y, zoom of the first frame
        blocks = -(-num_frames // PATH_BLOCK)
        noise = torch.cat([torch.randn(PATH_BLOCK, 9, generator=g) for _ in range(blocks)])[:num_frames]
        # Forward motion at the mean speed times a smooth factor in [0.4, 1.6].
        factor = 1.0 + 0.6 * torch.tanh(_smooth_walk(noise[:, 0], 0.9))
        step = self.speed * hc * factor
        half_max = 0.5 * self.window * hc * self.zoom_range[1]
        x = half_max * (1.0 + start[0]) + torch.cumsum(step, 0) - step[0]
        # Sideways sway and zoom: smooth random walks mapped into their ranges.
        lo, hi = math.log(self.zoom_range[0]), math.log(self.zoom_range[1])
        zoom_walk = 2.0 * (start[2] - 0.5) + _smooth_walk(noise[:, 1], 0.95)
        zoom = torch.exp(lo + (hi - lo) * torch.sigmoid(zoom_walk))
        half = 0.5 * self.window * hc * zoom  # half the view side in canvas pixels
        y = half + (hc - 2 * half) * torch.sigmoid(2.0 * (start[1] - 0.5) + _smooth_walk(noise[:, 2], 0.95))
        # Slow colour drift over time: per-channel gain and offset.
        walk = torch.tanh(torch.stack([_smooth_walk(noise[:, 3 + i], 0.985) for i in range(6)], dim=1))
        gain = 1.0 + self.colour_drift * walk[:, :3]
        offset = 0.5 * self.colour_drift * walk[:, 3:]
        return {"x": x, "y": y, "zoom": zoom, "gain": gain, "offset": offset}

    # ------------------------------------------------------------------ frames
    def video(self, index: int, num_frames: int) -> torch.Tensor:
        """Video ``index``: ``[T, 3, H, W]`` float32 in [0, 1] (``H = W = image_size``)."""
        p = self.path(index, num_frames)
        hc, s = self.canvas_height, self.image_size
        half = 0.5 * self.window * hc * p["zoom"]  # (T,)
        width = int(math.ceil(float((p["x"] + half).max()))) + 2
        canvas = self.canvas(index, width)  # (3, Hc, width)
        # The view of frame t in grid_sample's [-1, 1] coordinates (pixel centres).
        lin = (torch.arange(s, dtype=torch.float32) + 0.5) / s * 2 - 1  # (s,)
        gx = (p["x"][:, None] + half[:, None] * lin[None]) / width * 2 - 1  # (T, s)
        gy = (p["y"][:, None] + half[:, None] * lin[None]) / hc * 2 - 1  # (T, s)
        grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)  # (T, s, s, 2)
        frames = F.grid_sample(canvas[None], grid.reshape(1, num_frames * s, s, 2), mode="bilinear",
                               padding_mode="border", align_corners=False)  # (1, 3, T s, s)
        frames = frames[0].reshape(3, num_frames, s, s).transpose(0, 1)  # (T, 3, s, s)
        frames = frames * p["gain"][:, :, None, None] + p["offset"][:, :, None, None]
        return frames.clamp(0.0, 1.0).contiguous()

    def batch(self, indices, num_frames: int) -> torch.Tensor:
        """Videos ``indices`` (an iterable of ints) stacked: ``[b, T, 3, H, W]``."""
        return torch.stack([self.video(int(i), num_frames) for i in indices])


def _up(x: torch.Tensor, factor: int) -> torch.Tensor:
    """``[c, h, w]`` -> ``[c, factor h, factor w]``, bilinear (``align_corners=False``)."""
    return F.interpolate(x[None], scale_factor=factor, mode="bilinear", align_corners=False)[0]


def _smooth_walk(steps: torch.Tensor, decay: float) -> torch.Tensor:
    """A unit-variance AR(1) process ``z_t = decay z_{t-1} + sqrt(1 - decay^2) e_t`` (``z_0 = e_0``)
    of the steps ``e [T]`` (causal: a longer ``e`` only appends values)."""
    scale = math.sqrt(1 - decay * decay)
    values = steps.tolist()
    z = values[0]
    out = [z]
    for e in values[1:]:
        z = decay * z + scale * e
        out.append(z)
    return torch.tensor(out, dtype=torch.float32)
