"""Online point tracking of a video file, frame by frame, and pictures of the tracks (``trecvit track``).

The video is decoded lazily; each frame is resized to the tracker's size and
fed to :meth:`~trecvit.tracking.PointTracker.step`, so memory stays constant
however long the video. Query points are given in the video's own pixels
(``x`` to the right, ``y`` down, from the top-left corner of the frame) with the
frame they are queried at; tracks come back in the same pixels. Drawn frames
mark a visible point with a filled disc and an occluded one with a ring, each
track in its own colour with a short trail.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from trecvit.io import iter_frames, video_info
from trecvit.tracking.model import PointTracker

TRAIL = 8  # frames of trail drawn behind each point


def parse_points(text: str) -> list[tuple[float, float]]:
    """``"x,y;x,y"`` -> ``[(x, y), ...]`` (pixels of the video frame)."""
    points = []
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        fields = part.split(",")
        try:
            if len(fields) != 2:
                raise ValueError
            points.append((float(fields[0]), float(fields[1])))
        except ValueError:
            raise ValueError(f"--points takes 'x,y;x,y;...' in pixels, got {part!r} in {text!r}") from None
    if not points:
        raise ValueError(f"--points holds no point: {text!r}")
    return points


def grid_points(width: int, height: int, grid: int) -> list[tuple[float, float]]:
    """``grid x grid`` points at the centres of equal cells of a ``width x height`` frame."""
    if grid < 1:
        raise ValueError(f"--grid must be >= 1, got {grid}")
    return [((i + 0.5) * width / grid, (j + 0.5) * height / grid) for j in range(grid) for i in range(grid)]


def check_points(points: list[tuple[float, float]], width: int, height: int) -> None:
    """Every point inside the ``width x height`` frame, else ``ValueError`` naming it."""
    for x, y in points:
        if not (math.isfinite(x) and math.isfinite(y) and 0 <= x < width and 0 <= y < height):
            raise ValueError(f"point ({x:g}, {y:g}) is outside the {width}x{height} video frame "
                             f"(x in [0, {width}), y in [0, {height}))")


def track_colours(n: int) -> np.ndarray:
    """``[n, 3]`` uint8: distinct colours around the hue circle."""
    import matplotlib

    cmap = matplotlib.colormaps["hsv"]
    return (np.array([cmap(i / max(n, 1))[:3] for i in range(n)]) * 255).astype(np.uint8)


def draw_tracks(frame: np.ndarray, history: list[tuple[np.ndarray, np.ndarray]], colours: np.ndarray,
                radius: int) -> np.ndarray:
    """``frame [H, W, 3]`` uint8 with the points of ``history`` (the newest last: ``(xy [n, 2]
    pixels, visible [n])`` per frame) drawn: the trail as small dots, the newest as a filled disc
    (visible) or a ring (occluded). Points not yet queried are ``NaN`` and skipped."""
    out = frame.copy()
    h, w = out.shape[:2]
    for age, (xy, visible) in enumerate(reversed(history)):
        r = radius if age == 0 else max(radius // 3, 1)
        for k in range(xy.shape[0]):
            x, y = xy[k]
            if not (math.isfinite(x) and math.isfinite(y)) or (age and not visible[k]):
                continue
            x0, x1 = max(int(x - r - 1), 0), min(int(x + r + 2), w)
            y0, y1 = max(int(y - r - 1), 0), min(int(y + r + 2), h)
            if x0 >= x1 or y0 >= y1:
                continue
            yy, xx = np.mgrid[y0:y1, x0:x1]
            dist = np.hypot(xx + 0.5 - x, yy + 0.5 - y)
            mask = dist <= r if (visible[k] or age) else (dist <= r) & (dist >= r - max(r // 3, 1))
            out[y0:y1, x0:x1][mask] = colours[k]
    return out


@dataclass
class OnlineTracks:
    """What :func:`track_video` measured.

    Attributes:
        points: ``[n, 2]`` the query points (video pixels, ``(x, y)``).
        query_frames: ``[n]`` the frame each point was queried at.
        tracks: ``[n, T, 2]`` the tracked positions (video pixels; NaN before the query frame).
        visible: ``[n, T]`` predicted visible (False before the query frame).
        width, height: the video's frame size; ``num_frames`` the frames tracked.
        step_fps: frames per second of the tracker's ``step``; ``wall_fps`` with decoding and drawing.
    """

    points: np.ndarray
    query_frames: np.ndarray
    tracks: np.ndarray
    visible: np.ndarray
    width: int
    height: int
    step_fps: float
    wall_fps: float

    @property
    def num_frames(self) -> int:
        return self.tracks.shape[1]

    def to_dict(self) -> dict:
        tracks = np.where(np.isfinite(self.tracks), np.round(self.tracks, 2), np.nan)
        return {"width": self.width, "height": self.height, "num_frames": self.num_frames,
                "points": self.points.tolist(), "query_frames": self.query_frames.tolist(),
                "tracks": [[[None if math.isnan(v) else float(v) for v in xy] for xy in track]
                           for track in tracks],
                "visible": self.visible.tolist(), "step_fps": self.step_fps, "wall_fps": self.wall_fps}

    def save(self, path: str | Path) -> Path:
        """Write ``.npz`` (arrays) or ``.json`` (lists, ``null`` before a query frame)."""
        path = Path(path)
        if path.suffix == ".npz":
            np.savez(path, points=self.points, query_frames=self.query_frames, tracks=self.tracks,
                     visible=self.visible, size=np.array([self.width, self.height]))
        elif path.suffix == ".json":
            path.write_text(json.dumps(self.to_dict()) + "\n", encoding="utf-8")
        else:
            raise ValueError(f"tracks are saved as .npz or .json, got {path}")
        return path


class _Mp4Writer:
    """Frames ``[H, W, 3]`` uint8 to an H.264 ``.mp4`` (MPEG-4 part 2 if x264 is missing)."""

    def __init__(self, path: Path, width: int, height: int, fps: float):
        import av
        from fractions import Fraction

        self.container = av.open(str(path), mode="w")
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        rate = Fraction(fps).limit_denominator(1000) if fps > 0 else Fraction(25)
        self.stream = self.container.add_stream(codec, rate=rate)
        self.stream.width, self.stream.height = width - width % 2, height - height % 2
        self.stream.pix_fmt = "yuv420p"
        self.count = 0

    def write(self, frame: np.ndarray) -> None:
        import av

        frame = np.ascontiguousarray(frame[:self.stream.height, :self.stream.width])
        video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
        video_frame.pts = self.count
        self.count += 1
        self.container.mux(self.stream.encode(video_frame))

    def close(self) -> None:
        self.container.mux(self.stream.encode(None))
        self.container.close()


def write_video(path: str | Path, frames: np.ndarray, fps: float = 8.0) -> Path:
    """``frames [T, H, W, 3]`` uint8 as an ``.mp4`` (H.264 where available; odd sizes lose their last
    row or column, for yuv420p)."""
    writer = _Mp4Writer(Path(path), frames.shape[2], frames.shape[1], fps)
    try:
        for frame in frames:
            writer.write(frame)
    finally:
        writer.close()
    return Path(path)


def save_strip(frames: list[tuple[int, np.ndarray]], path: str | Path) -> Path:
    """A PNG of drawn frames side by side, each titled with its index."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(frames), figsize=(2.6 * len(frames), 2.8), squeeze=False)
    for ax, (index, image) in zip(axes[0], frames):
        ax.imshow(image)
        ax.set_title(f"frame {index}", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


@torch.inference_mode()
def track_video(model: PointTracker, path: str | Path, points: list[tuple[float, float]], *,
                query_frame: int = 0, max_frames: int | None = None, out_video: str | Path | None = None,
                strip: str | Path | None = None, strip_frames: int = 5, radius: int | None = None
                ) -> OnlineTracks:
    """Track ``points`` (video pixels, queried at ``query_frame``) through ``path`` online.

    Args:
        model: the tracker (in eval mode; any device).
        max_frames: stop after this many frames (default: the whole video).
        out_video: write an ``.mp4`` of the frames with the tracks drawn.
        strip: write a PNG of ``strip_frames`` drawn frames spread over the video.
        radius: of the drawn discs in pixels (default: 1/50 of the frame's longer side, >= 3).

    Raises:
        ValueError: a point outside the frame, a query frame past the end of the video, an
            undecodable video.
    """
    info = video_info(path)
    width, height = info.width, info.height
    check_points(points, width, height)
    if query_frame < 0:
        raise ValueError(f"--query-frame must be >= 0, got {query_frame}")
    if max_frames is not None and query_frame >= max_frames:
        raise ValueError(f"query frame {query_frame} is past the last frame tracked (--max-frames "
                         f"{max_frames})")
    if info.num_frames and query_frame >= info.num_frames and max_frames is None:
        raise ValueError(f"query frame {query_frame} is past the end of the video ({info.num_frames} frames, "
                         f"indices 0..{info.num_frames - 1})")
    model.eval()
    device = model.device
    size = model.config.encoder.image_hw
    xy = np.asarray(points, dtype=np.float32)
    queries = torch.tensor([[[float(query_frame), x / width, y / height] for x, y in points]], device=device)
    state = model.init_state(queries, size)
    colours = track_colours(len(points))
    radius = radius or max(round(max(width, height) / 50), 3)
    expected = max_frames or info.num_frames
    if expected:  # the frames of the strip, spread from the query frame to the end
        last = max(expected - 1, query_frame)
        wanted = set(np.linspace(query_frame, last, strip_frames).round().astype(int).tolist())
    else:
        wanted = set(range(query_frame, query_frame + 8 * strip_frames, 8))
    writer = None
    kept: list[tuple[int, np.ndarray]] = []
    history: list[tuple[np.ndarray, np.ndarray]] = []
    tracks, visible = [], []
    step_seconds = 0.0
    start = time.perf_counter()
    try:
        for t, frame in enumerate(iter_frames(path, None, max_frames=max_frames)):
            small = F.interpolate(frame[None], size=size, mode="bilinear", antialias=True,
                                  align_corners=False)
            tick = time.perf_counter()
            out, state = model.step(small.clamp(0, 1).to(device), state)
            step_seconds += time.perf_counter() - tick
            pos = out.positions[0, :, 0].float().cpu().numpy() * np.array([width, height], dtype=np.float32)
            vis = out.visible[0, :, 0].cpu().numpy()
            if t < query_frame:
                pos, vis = np.full_like(pos, np.nan), np.zeros_like(vis)
            tracks.append(pos)
            visible.append(vis)
            if out_video is None and strip is None:
                continue
            history = (history + [(pos, vis)])[-TRAIL:]
            image = (frame.permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
            drawn = draw_tracks(image, history, colours, radius)
            if out_video is not None:
                if writer is None:
                    writer = _Mp4Writer(Path(out_video), width, height, info.fps)
                writer.write(drawn)
            if strip is not None and t in wanted and len(kept) < strip_frames:
                kept.append((t, drawn))
    finally:
        if writer is not None:
            writer.close()
    wall = time.perf_counter() - start
    if not tracks:
        raise ValueError(f"{path}: no frames could be decoded")
    if query_frame >= len(tracks):
        raise ValueError(f"query frame {query_frame} is past the end of the video ({len(tracks)} frames, "
                         f"indices 0..{len(tracks) - 1})")
    if strip is not None and kept:
        save_strip(kept, strip)
    n = len(tracks)
    return OnlineTracks(xy, np.full(len(points), query_frame), np.stack(tracks, axis=1),
                        np.stack(visible, axis=1), width, height, n / max(step_seconds, 1e-9),
                        n / max(wall, 1e-9))
