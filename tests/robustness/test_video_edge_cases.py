"""Unusual video inputs, each through ``read_video`` (and ``iter_frames``) and ``VideoClipDataset``.

The expected behaviour of every case is the one documented in the
"Hostile files" section of :mod:`trecvit.io`.
"""

from __future__ import annotations

import os
import threading
import shutil
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from video_files import (
    EXAMPLE,
    check_clip,
    encode,
    encode_audio,
    encode_image,
    frame_ids,
    grey_frames,
    mixed_resolution,
    pattern_frames,
)

from trecvit.data.datasets import VideoClipDataset
from trecvit.data.sampling import eval_clip_indices
from trecvit.io import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_TIMEOUT,
    DecodeTimeoutError,
    iter_frames,
    read_video,
    video_info,
)

T, S = 4, 16


def item(path: Path, num_frames: int = T, **options) -> dict:
    """Item 0 of an evaluation dataset holding only ``path`` (one view: ``[1, T, 3, S, S]``)."""
    dataset = VideoClipDataset([(str(path), 0)], ["a"], num_frames=num_frames, image_size=S, train=False,
                               **options)
    return dataset[0]


def assert_clip(sample: dict, num_frames: int = T) -> torch.Tensor:
    assert sample["video"] is not None, sample.get("error")
    check_clip(sample["video"], (1, num_frames, 3, S, S))
    return sample["video"][0]


def assert_failed(sample: dict, path: Path, match: str) -> None:
    assert sample["video"] is None
    assert str(path) in sample["error"] and match in sample["error"], sample["error"]


def raises(path: Path, match: str | None, **kwargs) -> None:
    with pytest.raises(ValueError, match=match) as info:
        read_video(path, T, S, **kwargs)
    assert str(path) in str(info.value)


def test_defaults_are_documented():
    assert DEFAULT_TIMEOUT == 60.0 and DEFAULT_MAX_PIXELS == 8192 * 8192
    assert issubclass(DecodeTimeoutError, ValueError)


# --------------------------------------------------------------------------- #
# not a video at all
# --------------------------------------------------------------------------- #
def test_zero_length_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.touch()
    raises(path, "empty")
    with pytest.raises(ValueError, match="empty"):
        iter_frames(path)  # checked eagerly
    assert_failed(item(path), path, "empty")


def test_directory(tmp_path):
    path = tmp_path / "clip.mp4"
    path.mkdir()
    raises(path, "directory")
    assert_failed(item(path), path, "directory")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
def test_fifo_is_refused_not_waited_on_except_by_iter_frames(tmp_path):
    path = tmp_path / "pipe.ts"
    os.mkfifo(path)  # opening it for reading would block until a writer appears
    raises(path, "not a regular file")
    assert_failed(item(path), path, "not a regular file")
    # iter_frames reads a live stream from a pipe
    source = encode(tmp_path / "source.ts", grey_frames(6, 16, 16), "mpeg2video")
    # a daemon: should iter_frames fail before opening the pipe, the writer (blocked in open()) must not
    # keep pytest from exiting
    writer = threading.Thread(target=lambda: path.write_bytes(source.read_bytes()), daemon=True)
    writer.start()
    frames = list(iter_frames(path, S, timeout=30))
    writer.join(timeout=60)  # the reader saw end-of-file: the writer has closed the pipe, or is about to
    assert not writer.is_alive()
    assert len(frames) == 6


@pytest.mark.parametrize("name,content", [
    ("notes.mp4", b"this is not a video\n" * 50),
    ("noise.webm", np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()),
    ("zeros.avi", bytes(4096)),
])
def test_non_media_file_with_video_extension(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    raises(path, None)
    sample = item(path)
    assert sample["video"] is None and str(path) in sample["error"]


@pytest.mark.parametrize("name,codec", [("tone.wav", "pcm_s16le"), ("tone.mka", "mp2"), ("tone.m4a", "aac")])
def test_audio_only(tmp_path, name, codec):
    path = encode_audio(tmp_path / name, codec)
    raises(path, "no video stream")
    with pytest.raises(ValueError, match="no video stream"):
        next(iter_frames(path))
    assert_failed(item(path), path, "no video stream")


# --------------------------------------------------------------------------- #
# tiny and odd videos
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("name,codec", [("one.mp4", "libx264"), ("one.avi", "mpeg4"), ("one.webm", "libvpx-vp9")])
def test_one_frame_video(tmp_path, name, codec):
    path = encode(tmp_path / name, grey_frames(1, 24, 32), codec)
    assert frame_ids(read_video(path, T, S)) == [0] * T  # uniform sampling repeats the frame
    with pytest.raises(ValueError, match="has 1 frames"):
        read_video(path, 2, S, sampling="stride")
    assert frame_ids(read_video(path, 2, S, sampling="stride", pad=True)) == [0, 0]
    assert len(list(iter_frames(path, S))) == 1
    clip = assert_clip(item(path))
    assert frame_ids(clip) == [0] * T


@pytest.mark.parametrize("name", ["image.png", "image.jpg"])
def test_image_file_is_a_one_frame_video(tmp_path, name):
    arr = np.zeros((20, 30, 3), np.uint8)
    arr[..., 0] = 200  # red
    path = encode_image(tmp_path / name, arr)
    video = read_video(path, T, S)
    check_clip(video, (T, 3, S, S))
    assert torch.equal(video[0], video[-1])
    red, green, blue = video.mean(dim=(0, 2, 3)).tolist()
    assert abs(red - 200 / 255) < 0.03 and green < 0.03 and blue < 0.03
    assert read_video(path, 1, None).shape == (1, 3, 20, 30)
    assert len(list(iter_frames(path, S))) == 1
    clip = assert_clip(item(path))
    assert torch.allclose(clip[0], clip[-1])


@pytest.mark.parametrize("h,w", [(17, 33), (1, 1), (16, 2000), (2000, 16), (3, 5)])
def test_odd_sizes(tmp_path, h, w):
    colour = np.array([200, 60, 120], np.uint8)
    frames = [np.broadcast_to(colour, (h, w, 3)).copy() for _ in range(3)]
    path = encode(tmp_path / f"odd_{h}x{w}.mkv", frames, "ffv1", pix_fmt="yuv444p")
    info = video_info(path)
    assert (info.height, info.width) == (h, w)
    native = read_video(path, 3, None)
    check_clip(native, (3, 3, h, w))
    for size, shape in [(S, (S, S)), ((8, 12), (8, 12))]:
        video = read_video(path, 3, size)
        check_clip(video, (3, 3, *shape))
        np.testing.assert_allclose(video.mean(dim=(0, 2, 3)).numpy(), colour / 255, atol=0.03)
    frames_out = list(iter_frames(path, S))
    assert len(frames_out) == 3 and frames_out[0].shape == (3, S, S)
    clip = assert_clip(item(path, num_frames=3), num_frames=3)
    np.testing.assert_allclose(clip.mean(dim=(0, 2, 3)).numpy(), colour / 255, atol=0.03)
    sample = VideoClipDataset([(str(path), 0)], ["a"], num_frames=3, image_size=S, train=True)[0]
    check_clip(sample["video"], (3, 3, S, S))


@pytest.mark.parametrize("name", ["vfr.mkv", "vfr.mp4"])
def test_variable_frame_rate_samples_by_frame_index(tmp_path, name):
    # 8 frames at irregular times (pts in 1/30 s): gaps of 1 to 29 frame periods.
    pts = [0, 1, 2, 10, 11, 40, 41, 70]
    path = encode(tmp_path / name, grey_frames(8, 24, 32), "libx264", pts=pts, time_base=Fraction(1, 30),
                  codec_options={"bf": "0"})
    assert frame_ids(read_video(path, 8, S)) == list(range(8))
    # Uniform sampling spreads over frame indices, not over time: time would pick 0, 2, 40/41, 70.
    assert frame_ids(read_video(path, 4, S)) == [1, 3, 5, 7]
    assert frame_ids(torch.stack(list(iter_frames(path, S, stride=3)))) == [0, 3, 6]
    clip = assert_clip(item(path))
    (expected,) = eval_clip_indices(8, T, 1, 1)
    assert frame_ids(clip) == list(expected)


def test_mixed_resolutions(tmp_path):
    path = mixed_resolution(tmp_path / "mixed.m2v")  # 32x24 frames, then 320x240 frames
    with av.open(str(path)) as container:  # what FFmpeg decodes (the decoder drops one frame at the switch)
        decoded = [(f.height, f.width, float(f.to_ndarray(format="rgb24").mean())) for f in container.decode()]
    assert {(h, w) for h, w, _ in decoded} == {(24, 32), (240, 320)}
    n = len(decoded)
    levels = torch.tensor([level for _, _, level in decoded]) / 255
    native = read_video(path, n, None)  # every frame at the first frame's size
    check_clip(native, (n, 3, 24, 32))
    torch.testing.assert_close(native.mean(dim=(1, 2, 3)), levels, atol=2 / 255, rtol=0)
    torch.testing.assert_close(read_video(path, n, S).mean(dim=(1, 2, 3)), levels, atol=2 / 255, rtol=0)
    assert {tuple(f.shape) for f in iter_frames(path, None)} == {(3, 24, 32)}
    clip = assert_clip(item(path, num_frames=n), num_frames=n)
    torch.testing.assert_close(clip.mean(dim=(1, 2, 3)), levels, atol=2 / 255, rtol=0)
    # A frame larger than the stream declared is checked too ...
    with pytest.raises(ValueError, match=r"frame \d is 320x240 \(76800 pixels\), more than max_pixels=76799"):
        read_video(path, 5, S, max_pixels=320 * 240 - 1)
    # ... and far larger ones are refused by FFmpeg's decoder before it allocates them.
    with pytest.raises(ValueError, match=r"failed at frame \d .*max_pixels=1000"):
        read_video(path, 5, S, max_pixels=1000)
    assert_failed(item(path, num_frames=n, max_pixels=1000), path, "max_pixels=1000")


# --------------------------------------------------------------------------- #
# huge resolution
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def large_video(tmp_path_factory) -> Path:
    """Two 4096x2160 (DCI 4K) MJPEG frames."""
    path = tmp_path_factory.mktemp("large") / "4k.avi"
    return encode(path, pattern_frames(2, 2160, 4096), "mjpeg", pix_fmt="yuvj420p")


def test_large_real_video_decodes(large_video):
    info = video_info(large_video)
    assert (info.width, info.height) == (4096, 2160)
    video = read_video(large_video, 2, 64)
    check_clip(video, (2, 3, 64, 64))
    check_clip(read_video(large_video, 1, (90, 160), max_pixels=4096 * 2160), (1, 3, 90, 160))
    assert len(list(iter_frames(large_video, 32))) == 2
    assert_clip(item(large_video, num_frames=2), num_frames=2)
    sample = VideoClipDataset([(str(large_video), 0)], ["a"], num_frames=2, image_size=S)[0]
    check_clip(sample["video"], (2, 3, S, S))


def test_resolution_over_max_pixels(large_video):
    match = r"declares 4096x2160 frames \(8847360 pixels\), more than max_pixels=8847359"
    raises(large_video, match, max_pixels=4096 * 2160 - 1)
    with pytest.raises(ValueError, match=match):
        next(iter_frames(large_video, S, max_pixels=4096 * 2160 - 1))
    assert_failed(item(large_video, max_pixels=1_000_000), large_video, "max_pixels=1000000")
    # None disables the guard
    check_clip(read_video(large_video, 1, S, max_pixels=None), (1, 3, S, S))


# --------------------------------------------------------------------------- #
# time limits
# --------------------------------------------------------------------------- #
def test_timeout_read_video_and_dataset(tmp_path):
    with pytest.raises(DecodeTimeoutError, match=r"exceeded the time limit of 1e-06 s") as info:
        read_video(EXAMPLE, T, S, timeout=1e-6)
    assert str(EXAMPLE) in str(info.value)
    with pytest.raises(DecodeTimeoutError):
        next(iter_frames(EXAMPLE, S, timeout=1e-6))
    assert_failed(item(EXAMPLE, decode_timeout=1e-6), EXAMPLE, "time limit")
    check_clip(read_video(EXAMPLE, T, S, timeout=None), (T, 3, S, S))
    assert_clip(item(EXAMPLE, decode_timeout=None))


def test_timeout_reports_progress(monkeypatch):
    """A limit hit mid-file says how far decoding got (packets / frames)."""
    import trecvit.io as io_module

    convert = io_module._frame_to_tensor

    def slow_convert(frame, size):
        time.sleep(0.6)
        return convert(frame, size)

    monkeypatch.setattr(io_module, "_frame_to_tensor", slow_convert)
    with pytest.raises(DecodeTimeoutError, match=r"of 1 s \(\d+ packets decoded, \d+ frames output\)"):
        read_video(EXAMPLE, 32, S, timeout=1.0)


def test_iter_frames_limit_is_per_frame(tmp_path):
    """The caller's time between frames does not count: a stream may run for longer than the limit."""
    start = time.monotonic()
    count = 0
    for _ in iter_frames(EXAMPLE, S, max_frames=4, timeout=0.5):
        time.sleep(0.3)
        count += 1
    assert count == 4 and time.monotonic() - start > 1.0


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "5", True])
def test_bad_timeout(bad):
    with pytest.raises(ValueError, match="timeout"):
        read_video(EXAMPLE, T, S, timeout=bad)
    with pytest.raises(ValueError, match="timeout"):
        iter_frames(EXAMPLE, S, timeout=bad)
    with pytest.raises(ValueError, match="decode_timeout"):
        VideoClipDataset([(str(EXAMPLE), 0)], ["a"], num_frames=T, decode_timeout=bad)


@pytest.mark.parametrize("bad", [0, -5, 2.5, "big"])
def test_bad_max_pixels(bad):
    with pytest.raises(ValueError, match="max_pixels"):
        read_video(EXAMPLE, T, S, max_pixels=bad)
    with pytest.raises(ValueError, match="max_pixels"):
        VideoClipDataset([(str(EXAMPLE), 0)], ["a"], num_frames=T, max_pixels=bad)


def test_train_config_decode_timeout_reaches_the_dataset(tmp_path):
    from trecvit.training.config import TrainConfig
    from trecvit.training.data import build_datasets

    (tmp_path / "a").mkdir()
    shutil.copy(EXAMPLE, tmp_path / "a" / "x.mp4")
    for value in (7.5, None):
        cfg = TrainConfig(data="folder", train_data=str(tmp_path), decode_timeout=value)
        train, _, _ = build_datasets(cfg, log=False)
        assert train.decode_timeout == value
    with pytest.raises(ValueError, match="decode_timeout"):
        TrainConfig(decode_timeout=0)


def test_open_is_bounded_by_ffmpegs_interrupt_callback(monkeypatch):
    """``av.open`` gets the remaining time; FFmpeg's "exit requested" after the deadline is a timeout."""
    seen = {}

    def slow_open(path, mode="r", timeout=None, **kwargs):
        seen["timeout"] = timeout
        time.sleep(0.3)
        raise av.error.ExitError(0, "Immediate exit requested")

    monkeypatch.setattr(av, "open", slow_open)
    with pytest.raises(DecodeTimeoutError, match=r"time limit of 0.2 s \(while opening the file\)"):
        read_video(EXAMPLE, T, S, timeout=0.2)
    assert 0 < seen["timeout"] <= 0.2
    with pytest.raises(ValueError, match="cannot open") as info:
        read_video(EXAMPLE, T, S, timeout=30)  # same error before the deadline: not a timeout
    assert not isinstance(info.value, DecodeTimeoutError)
