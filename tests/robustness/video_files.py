"""Small video/audio/image files for the robustness tests, encoded with PyAV.

Frame ``i`` of :func:`grey_frames` has the uniform grey level ``BASE + STEP * i``
so decoded frames can be identified (:func:`frame_ids`).  Pattern frames
(:func:`pattern_frames`) have texture and motion, so that the encoders use
their real tools (motion vectors, B-frames, DCT coefficients) and the fuzzer
has something to break.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

import trecvit

EXAMPLE = Path(trecvit.__file__).parent / "assets" / "example.mp4"
"""The official demo clip (224x224, 32 frames, H.264 in MP4 without faststart)."""

STEP, BASE = 12, 10


def grey_frames(n: int, h: int, w: int) -> list[np.ndarray]:
    return [np.full((h, w, 3), BASE + STEP * i, np.uint8) for i in range(n)]


def frame_ids(video: torch.Tensor) -> list[int]:
    """Source index of each grey frame of a ``[T, 3, H, W]`` clip in [0, 1]."""
    levels = video.mean(dim=(-3, -2, -1)) * 255
    return [round((float(v) - BASE) / STEP) for v in levels]


def pattern_frames(n: int, h: int, w: int, seed: int = 0) -> list[np.ndarray]:
    """Moving coloured gradients plus a little noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for i in range(n):
        r = (xx * 255 // max(w - 1, 1) + 9 * i) % 256
        g = (yy * 255 // max(h - 1, 1) + 5 * i) % 256
        b = ((xx + yy + 3 * i) * 8) % 256
        arr = np.stack([r, g, b], -1).astype(np.int16) + rng.integers(-8, 9, (h, w, 3))
        out.append(np.clip(arr, 0, 255).astype(np.uint8))
    return out


def encode(
    path: Path,
    frames: list[np.ndarray],
    codec: str = "mpeg4",
    *,
    pix_fmt: str = "yuv420p",
    rate: int = 10,
    fmt: str | None = None,
    container_options: dict[str, str] | None = None,
    codec_options: dict[str, str] | None = None,
    pts: list[int] | None = None,
    time_base: Fraction | None = None,
) -> Path:
    """Encode uint8 ``[H, W, 3]`` RGB frames; ``pts`` (in ``time_base``) gives a variable frame rate."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w", format=fmt, options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=rate, options=codec_options or {})
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        if time_base is not None:
            stream.time_base = time_base
            stream.codec_context.time_base = time_base
        for i, arr in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
            if pts is not None:
                frame.pts = pts[i]
                frame.time_base = time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def encode_audio(path: Path, codec: str, rate: int = 22050, seconds: float = 0.25) -> Path:
    """A mono sine tone; ``codec``: ``pcm_s16le`` (.wav), ``mp2`` (.mka), ``aac`` (.m4a)..."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = "mono"
        fmt = stream.codec_context.format.name  # e.g. s16, fltp
        n = int(rate * seconds)
        tone = np.sin(np.arange(n) / 10)
        chunk = stream.codec_context.frame_size or 1024
        for start in range(0, n, chunk):
            part = tone[start : start + chunk]
            if fmt.startswith("s16"):
                data = (part * 1e4).astype(np.int16)[None]
            else:
                data = part.astype(np.float32)[None]
            frame = av.AudioFrame.from_ndarray(data, format=fmt, layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def encode_image(path: Path, arr: np.ndarray) -> Path:
    """A single PNG (``.png``) or JPEG (``.jpg``) image."""
    codec, pix_fmt = ("png", "rgb24") if path.suffix == ".png" else ("mjpeg", "yuvj444p")
    return encode(path, [arr], codec, pix_fmt=pix_fmt, fmt="image2", container_options={"update": "1"})


def seed_videos(folder: Path, h: int = 24, w: int = 32, n: int = 8) -> dict[str, Path]:
    """Small files in the common containers/codecs, the seeds of the fuzzer."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = pattern_frames(n, h, w)
    x264 = {"preset": "veryfast", "bf": "2", "g": "4"}
    files = {
        "h264.mp4": dict(codec="libx264", codec_options=x264),
        "h264_faststart.mp4": dict(
            codec="libx264", codec_options=x264, container_options={"movflags": "faststart"}
        ),
        "mpeg4.avi": dict(codec="mpeg4"),
        "vp9.webm": dict(codec="libvpx-vp9", codec_options={"deadline": "realtime", "cpu-used": "8"}),
        "mjpeg.mkv": dict(codec="mjpeg", pix_fmt="yuvj420p"),
        "mpeg2.ts": dict(codec="mpeg2video", fmt="mpegts"),
        "anim.gif": dict(codec="gif", pix_fmt="rgb8"),
    }
    return {name: encode(folder / name, frames, **kw) for name, kw in files.items()}


def mixed_resolution(path: Path) -> Path:
    """An MPEG-2 elementary stream whose first 2 frames are 32x24 and the next 3 are 320x240."""
    small = encode(path.with_suffix(".a.m2v"), grey_frames(2, 24, 32), "mpeg2video", fmt="mpeg2video")
    big = encode(path.with_suffix(".b.m2v"), grey_frames(3, 240, 320), "mpeg2video", fmt="mpeg2video")
    path.write_bytes(small.read_bytes() + big.read_bytes())
    small.unlink()
    big.unlink()
    return path


def check_clip(video: torch.Tensor, shape: tuple[int, ...], atol: float = 0.0) -> None:
    """A decoded clip: the right shape, float32, finite, in [0, 1] (give or take ``atol``)."""
    assert isinstance(video, torch.Tensor)
    assert tuple(video.shape) == shape, (tuple(video.shape), shape)
    assert video.dtype == torch.float32
    assert bool(torch.isfinite(video).all())
    low, high = float(video.min()), float(video.max())
    assert low >= -atol and high <= 1.0 + atol, (low, high)
