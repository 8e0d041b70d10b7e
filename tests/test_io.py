"""Tests for trecvit.io (PyAV video decoding)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from trecvit.io import VideoInfo, iter_frames, read_video, video_info

EXAMPLE = Path(__file__).parents[1] / "src/trecvit/assets/example.mp4"

N_FRAMES, W, H = 20, 64, 48
STEP, BASE = 12, 10  # frame i has grey level BASE + STEP * i


def _write_video(path: Path, frames: list[np.ndarray], *, faststart: bool = False) -> Path:
    """Encode uint8 ``[H, W, 3]`` RGB frames with the mpeg4 encoder (yuv420p)."""
    options = {"movflags": "faststart"} if faststart else {}
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for arr in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")))
        container.mux(stream.encode())
    return path


def _grey_frames(n: int = N_FRAMES) -> list[np.ndarray]:
    return [np.full((H, W, 3), BASE + STEP * i, np.uint8) for i in range(n)]


def _frame_ids(video: torch.Tensor) -> list[int]:
    """Recover the source frame index of each decoded grey frame."""
    levels = video.mean(dim=(-3, -2, -1)) * 255
    return [round((float(v) - BASE) / STEP) for v in levels]


@pytest.fixture(scope="module")
def grey_video(tmp_path_factory) -> Path:
    return _write_video(tmp_path_factory.mktemp("v") / "grey.mp4", _grey_frames())


@pytest.fixture(scope="module")
def striped_video(tmp_path_factory) -> Path:
    """64x48 frames: columns < 8 red, >= 56 blue, the centre green."""
    arr = np.zeros((H, W, 3), np.uint8)
    arr[:, :8, 0] = 255
    arr[:, 8:56, 1] = 255
    arr[:, 56:, 2] = 255
    return _write_video(tmp_path_factory.mktemp("v") / "striped.mp4", [arr] * 4)


# --------------------------------------------------------------------------- #
# the real example clip
# --------------------------------------------------------------------------- #
def test_example_clip_decodes():
    video = read_video(EXAMPLE, 32, 224)
    assert video.shape == (32, 3, 224, 224)
    assert video.dtype == torch.float32
    assert video.min() >= 0 and video.max() <= 1
    assert video.std() > 0.01
    # Uniform sampling with n == num_frames is every frame in order.
    torch.testing.assert_close(video, read_video(EXAMPLE, 32, 224, sampling="stride"))


def test_iter_frames_matches_read_video():
    frames = list(iter_frames(EXAMPLE, 112, stride=3, offset=1))
    assert len(frames) == 11 and frames[0].shape == (3, 112, 112)
    expected = read_video(EXAMPLE, 11, 112, sampling="stride", stride=3, offset=1)
    torch.testing.assert_close(torch.stack(frames), expected)
    limited = list(iter_frames(EXAMPLE, 112, stride=3, offset=1, max_frames=4))
    torch.testing.assert_close(torch.stack(limited), expected[:4])


def test_video_info_example():
    info = video_info(EXAMPLE)
    assert isinstance(info, VideoInfo)
    assert (info.num_frames, info.width, info.height) == (32, 224, 224)
    assert info.codec == "h264" and info.fps > 0 and info.duration_s > 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.num_frames = 1  # type: ignore[misc]


# --------------------------------------------------------------------------- #
# sampling
# --------------------------------------------------------------------------- #
def test_native_size_and_all_frames(grey_video):
    video = read_video(grey_video, N_FRAMES, None)
    assert video.shape == (N_FRAMES, 3, H, W)
    assert _frame_ids(video) == list(range(N_FRAMES))


@pytest.mark.parametrize("num_frames", [1, 4, 7, 20, 30])
def test_uniform_sampling_indices(grey_video, num_frames):
    expected = [int((i + 0.5) * N_FRAMES / num_frames) for i in range(num_frames)]
    assert _frame_ids(read_video(grey_video, num_frames, 16)) == expected


def test_stride_and_offset(grey_video):
    video = read_video(grey_video, 5, 16, sampling="stride", stride=3, offset=2)
    assert _frame_ids(video) == [2, 5, 8, 11, 14]
    assert _frame_ids(torch.stack(list(iter_frames(grey_video, 16, stride=3, offset=2)))) == [
        2, 5, 8, 11, 14, 17,
    ]


def test_too_short_raises_or_pads(grey_video):
    with pytest.raises(ValueError, match=r"has 20 frames but .* needs 24") as exc:
        read_video(grey_video, 8, 16, sampling="stride", stride=3, offset=2)
    assert str(grey_video) in str(exc.value)
    video = read_video(grey_video, 8, 16, sampling="stride", stride=3, offset=2, pad=True)
    assert _frame_ids(video) == [2, 5, 8, 11, 14, 17, 19, 19]
    # Offset past the end: every position is the last frame.
    video = read_video(grey_video, 2, 16, sampling="stride", offset=50, pad=True)
    assert _frame_ids(video) == [19, 19]


# --------------------------------------------------------------------------- #
# resize + centre crop
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("size", [48, 24, 96])
def test_square_crop_takes_the_centre(striped_video, size):
    video = read_video(striped_video, 2, size)
    assert video.shape == (2, 3, size, size)
    red, green, blue = video.mean(dim=(0, 2, 3)).tolist()
    assert green > 0.8 and red < 0.1 and blue < 0.1


@pytest.mark.parametrize("hw", [(32, 16), (40, 64), (60, 100)])
def test_pair_size_covers_then_crops(striped_video, hw):
    video = read_video(striped_video, 1, hw)
    assert video.shape == (1, 3, *hw)
    assert float(video[0, 1].mean()) > 0.5  # centre (green) dominates


def test_pair_size_full_frame_keeps_edges(striped_video):
    video = read_video(striped_video, 1, (24, 32))  # exact half size, no crop
    red, _, blue = video[0].mean(dim=(1, 2)).tolist()
    assert red > 0.05 and blue > 0.05


# --------------------------------------------------------------------------- #
# errors
# --------------------------------------------------------------------------- #
def _raises(exc_type, path, fn=read_video, *args, match=None):
    with pytest.raises(exc_type, match=match) as info:
        result = fn(path, *args)
        if fn is iter_frames:
            next(result)
    assert str(path) in str(info.value)
    return info


@pytest.mark.parametrize(
    "fn,args", [(read_video, (4,)), (iter_frames, ()), (video_info, ())]
)
def test_missing_empty_text_directory(tmp_path, fn, args):
    _raises(FileNotFoundError, tmp_path / "missing.mp4", fn, *args, match="not found")
    empty = tmp_path / "empty.mp4"
    empty.touch()
    _raises(ValueError, empty, fn, *args, match="empty")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    _raises(ValueError, text, fn, *args, match="cannot open")
    _raises(ValueError, tmp_path, fn, *args, match="directory")


def test_iter_frames_checks_path_eagerly(tmp_path):
    with pytest.raises(FileNotFoundError):
        iter_frames(tmp_path / "missing.mp4")


@pytest.mark.parametrize("nbytes", [2048, int(EXAMPLE.stat().st_size * 0.3)])
def test_truncated_example(tmp_path, nbytes):
    # example.mp4 keeps its index (moov) at the end: any truncation fails to open.
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(EXAMPLE.read_bytes()[:nbytes])
    _raises(ValueError, cut, read_video, 8, match="cannot open")
    _raises(ValueError, cut, iter_frames, match="cannot open")


@pytest.fixture(scope="module")
def faststart_video(tmp_path_factory) -> tuple[Path, list[tuple[int, int]]]:
    path = _write_video(tmp_path_factory.mktemp("v") / "fs.mp4", _grey_frames(), faststart=True)
    with av.open(str(path)) as c:
        packets = [(p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size]
    assert len(packets) == N_FRAMES
    return path, packets


def test_truncated_mid_packet_raises(tmp_path, faststart_video):
    src, packets = faststart_video
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(src.read_bytes()[: packets[5][0] + 1])
    _raises(ValueError, cut, read_video, 4, match="failed at frame 5")
    with pytest.raises(ValueError, match="failed at frame 5"):
        list(iter_frames(cut, 16))


def test_truncated_at_packet_boundary_is_a_shorter_video(tmp_path, faststart_video, caplog):
    # Indistinguishable from over-reported metadata: decoded as 10 frames.
    src, packets = faststart_video
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(src.read_bytes()[: packets[10][0]])
    assert video_info(cut).num_frames == N_FRAMES  # metadata still says 20
    with caplog.at_level(logging.WARNING, logger="trecvit.io"):
        video = read_video(cut, 10, 16)
    assert _frame_ids(video) == list(range(10))
    assert "metadata reports 20 frames but 10 were decoded" in caplog.text
    assert _frame_ids(read_video(cut, 5, 16)) == [1, 3, 5, 7, 9]
    with pytest.raises(ValueError, match="has 10 frames"):
        read_video(cut, 11, 16, sampling="stride")


@pytest.mark.parametrize("name,codec", [("tone.wav", "pcm_s16le"), ("tone.mka", "mp2")])
def test_audio_only(tmp_path, name, codec):
    path = tmp_path / name
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=44100)
        stream.layout = "mono"
        samples = (np.sin(np.arange(44100 // 4) / 10) * 1e4).astype(np.int16)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = 44100
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    for fn, args in [(read_video, (4,)), (iter_frames, ()), (video_info, ())]:
        _raises(ValueError, path, fn, *args, match="no video stream")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(num_frames=0), "num_frames"),
        (dict(num_frames=2.5), "num_frames"),
        (dict(stride=0, sampling="stride"), "stride"),
        (dict(offset=-1, sampling="stride"), "offset"),
        (dict(sampling="random"), "sampling"),
        (dict(size=0), "size"),
        (dict(size=(224, -1)), "size"),
        (dict(size=(1, 2, 3)), "size"),
        (dict(threads=-1), "threads"),
    ],
)
def test_bad_arguments(kwargs, match):
    kwargs = {"num_frames": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        read_video(EXAMPLE, **kwargs)


@pytest.mark.parametrize(
    "kwargs", [dict(stride=0), dict(offset=-2), dict(max_frames=0), dict(size=-5)]
)
def test_iter_frames_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        iter_frames(EXAMPLE, **kwargs)


def test_threads_option():
    torch.testing.assert_close(read_video(EXAMPLE, 4, 64, threads=2), read_video(EXAMPLE, 4, 64))


def test_unknown_frame_count_falls_back_to_counting(tmp_path, caplog):
    # Matroska does not store a frame count: stream.frames == 0.
    path = _write_video(tmp_path / "grey.mkv", _grey_frames(10))
    assert video_info(path).num_frames == 0
    with caplog.at_level(logging.DEBUG, logger="trecvit.io"):
        video = read_video(path, 4, 16)
    assert _frame_ids(video) == [1, 3, 6, 8]
    assert "frame count unknown, counted 10 frames" in caplog.text
    assert len(list(iter_frames(path, 16))) == 10
