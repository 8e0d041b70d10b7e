"""Video decoding (PyAV) into the tensor layout TRecViT consumes.

Convention
----------
Every function here returns frames **channel-first, RGB, float32 in [0, 1]**:
a clip is ``[T, 3, H, W]`` and a single frame is ``[3, H, W]``.  No mean/std
normalisation is applied; pixel values are simply ``uint8 / 255``, which is
what the official TRecViT model expects as input.

Resizing (``size``)
-------------------
* ``int s``: resize so the *short* side is ``s`` (aspect ratio kept), then
  centre-crop ``s x s``.
* ``(h, w)``: scale by ``max(h / H, w / W)`` so the frame covers ``h x w``,
  then centre-crop ``h x w``.  (``s`` is the same as ``(s, s)``.)
* ``None``: keep the native resolution.

Scaling is done by swscale (``VideoFrame.reformat``) with ``AREA``
interpolation when down-scaling (antialiased) and ``BILINEAR`` when
up-scaling; scaled sizes are rounded but never smaller than the crop.

Frame counts and truncated files
--------------------------------
Frames are decoded sequentially and only the frames that are kept are
converted to tensors, so memory does not grow with the video length.
Uniform sampling needs the number of decodable frames ``n``.  The container's
``stream.frames`` is used to plan the indices when it is positive, and the
video is decoded to the end to confirm the count.  If ``stream.frames`` is 0
(unknown; the first pass then only counts) or differs from the decoded count
(a warning is logged), a second decoding pass samples with the true count.

Truncated or corrupt files raise ``ValueError`` naming the file whenever
FFmpeg reports an error while opening, demuxing or decoding, or the demuxer
flags a packet as corrupt (a packet cut short by truncation).  If frames were
already decoded, the message names the frame (in decode order) that failed;
partial data is never returned.  A file cut exactly at a packet boundary
decodes without any error and is indistinguishable from one whose metadata
over-reports its frame count: it is read as the shorter video (with the
warning above).  Files whose index is at the end (e.g. MP4 without
"faststart") cannot be opened at all once truncated.

Hostile files
-------------
Whatever the bytes of a file, :func:`read_video`, :func:`iter_frames` and
the datasets of :mod:`trecvit.data` either return frames in the layout above
or raise ``ValueError`` naming the file (``FileNotFoundError`` for a missing
path, ``PermissionError`` for an unreadable one).  The datasets turn these
errors into failed samples (``video=None`` plus the message).  This is
fuzz-tested (``tests/robustness/test_video_fuzz.py``: bit flips, overwrites,
deleted/inserted/duplicated chunks, truncation, header mutations and spliced
files, starting from the demo clip and from H.264 MP4, MPEG-4 AVI, VP9 WebM,
MJPEG MKV, MPEG-2 TS and GIF files).

* **Time limit** (``timeout``, default :data:`DEFAULT_TIMEOUT` = 60 s;
  ``None`` disables it): :func:`read_video` and a dataset item
  (``decode_timeout``) get that long in total, over every decoding pass;
  :func:`iter_frames` gets that long for *each* frame it yields (skipped
  frames count towards the next one; the caller's time between frames does
  not), so a stream may run for days.  Past the limit,
  :class:`DecodeTimeoutError` (a ``ValueError``) says how far decoding got.
  The limit is checked before each packet and, through FFmpeg's interrupt
  callback, while opening/probing the file and reading each packet; a
  single packet whose decoding never returned would not be interrupted
  (none was found by fuzzing).  Long videos sampled uniformly are decoded to
  the end: pass a larger ``timeout`` (or ``None``) for hour-long files.
* **Frame size** (``max_pixels``, default :data:`DEFAULT_MAX_PIXELS` =
  8192 * 8192, about 67 megapixels, enough for 8K; ``None`` disables it): a
  stream that declares larger frames is refused when it is opened, every
  decoded frame is checked before conversion, and FFmpeg's own
  ``max_pixels`` decoder option is set (to twice the limit, for its
  alignment padding) so that the decoder refuses to allocate a larger frame
  in the first place.  Each error names the size and the limit.
* **Zero-length file, directory, FIFO/socket/device**: ``ValueError``
  ("empty", "directory", "not a regular file"; opening a FIFO could block
  forever), raised by :func:`iter_frames` when it is called.  The exception:
  :func:`iter_frames` reads a named pipe or device (a live stream, e.g.
  ``ffmpeg ... -f mpegts pipe``); opening it waits for a writer.
* **Not a media file** (text, random bytes) under a video extension:
  ``ValueError`` ("cannot open ... as a media file"), or, if FFmpeg's probe
  takes the bytes for some format, an error about its streams or packets.
* **Audio only** (WAV, MKA, M4A, ...): ``ValueError`` ("has no video stream").
  A stream whose codec FFmpeg does not know: ``ValueError`` ("no decoder").
* **One-frame video**: a normal video of length 1: uniform sampling repeats
  the frame, stride sampling of more than one frame needs ``pad=True``.
* **Still images** (PNG, JPEG, ...): read as a one-frame video (FFmpeg's
  image demuxers).  :data:`trecvit.data.VIDEO_EXTENSIONS` does not list image
  extensions, so folder scans skip images; list them in a CSV to use them.
* **Odd sizes** (e.g. 33x17, 1x1, 2000x16): decoded; ``size`` scales and
  crops as usual (a 1x1 video is up-scaled to a uniform frame).
* **Variable frame rate**: frames are sampled by **index**, never by
  timestamp: uniform sampling spreads the samples evenly over the frames, not
  over time, and ``stride`` counts frames.
* **Resolution changing mid-stream**: with ``size`` every frame is scaled
  and cropped to ``size``; with ``size=None`` every frame is scaled and
  cropped to the size of the video's *first* frame (the datasets scale all
  frames of a clip to the size planned for the first frame they convert),
  so a clip never mixes sizes.
* **Corrupt data**: see "Frame counts and truncated files" above.  A frame
  whose pixel format cannot be converted to RGB raises ``ValueError``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import av
import numpy as np
import torch
from av.video.reformatter import Interpolation

from trecvit.validation import int_at_least as _int_at_least

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_TIMEOUT",
    "DecodeTimeoutError",
    "VideoInfo",
    "iter_frames",
    "read_video",
    "video_info",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
Size = Union[int, Sequence[int], None]

_SAMPLINGS = ("uniform", "stride")

DEFAULT_TIMEOUT: float = 60.0
"""Default decoding time limit in seconds: per :func:`read_video` call, per dataset
item, and per yielded frame of :func:`iter_frames`."""

DEFAULT_MAX_PIXELS: int = 8192 * 8192
"""Default largest frame area (``width * height``) accepted: 67 megapixels (8K fits)."""


class DecodeTimeoutError(ValueError):
    """Decoding a file took longer than its time limit (``timeout``).

    A ``ValueError`` subclass, so code that handles unreadable files handles it too.
    """


class _Deadline:
    """A monotonic deadline ``limit`` seconds from the last :meth:`reset` (``None``: none)."""

    __slots__ = ("limit", "end")

    def __init__(self, limit: float | None) -> None:
        self.limit = limit
        self.end: float | None = None
        self.reset()

    def reset(self) -> None:
        self.end = None if self.limit is None else time.monotonic() + self.limit

    def remaining(self) -> float | None:
        return None if self.end is None else self.end - time.monotonic()

    def expired(self) -> bool:
        return self.end is not None and time.monotonic() > self.end

    def error(self, path: PathLike, progress: str) -> DecodeTimeoutError:
        return DecodeTimeoutError(
            f"decoding {str(path)!r} exceeded the time limit of {self.limit:g} s ({progress}); "
            "pass a larger timeout (None: no limit) if the file is merely long"
        )

    def check(self, path: PathLike, progress: str) -> None:
        if self.expired():
            raise self.error(path, progress)


_NO_DEADLINE = _Deadline(None)


@dataclass(frozen=True)
class VideoInfo:
    """Metadata of the first video stream of a file.

    ``num_frames`` is the container's frame count and may be 0 when unknown;
    ``duration_s`` is ``None`` when the container does not say.
    """

    num_frames: int
    fps: float
    width: int
    height: int
    duration_s: float | None
    codec: str


# --------------------------------------------------------------------------- #
# argument validation
# --------------------------------------------------------------------------- #


def _normalise_size(size: Size) -> tuple[int, int] | None:
    """Return ``(h, w)`` or ``None``; raise ``ValueError`` for bad sizes."""
    if size is None:
        return None
    if isinstance(size, (str, bytes)) or not isinstance(size, Sequence):
        s = _int_at_least(size, "size")
        return s, s
    if len(size) != 2:
        raise ValueError(f"size must be an int, an (h, w) pair or None, got {size!r}")
    return _int_at_least(size[0], "size[0]"), _int_at_least(size[1], "size[1]")


def _normalise_timeout(timeout: object, name: str = "timeout") -> float | None:
    """``None`` or a positive finite number of seconds, as ``float``."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number of seconds or None, got {timeout!r}")
    value = float(timeout)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive, finite number of seconds or None, got {timeout!r}")
    return value


def _normalise_max_pixels(max_pixels: object) -> int | None:
    return None if max_pixels is None else _int_at_least(max_pixels, "max_pixels")


def _check_path(path: PathLike, pipes: bool = False) -> Path:
    """Fail early and clearly on paths that cannot be a video file (``pipes``: accept a named
    pipe or device, for :func:`iter_frames` on a live stream)."""
    p = Path(os.fspath(path))
    if not p.exists():
        raise FileNotFoundError(f"video file not found: {str(p)!r}")
    if p.is_dir():
        raise ValueError(f"{str(p)!r} is a directory, not a video file")
    if not p.is_file():  # opening a FIFO without a writer would block forever, out of reach of any timeout
        if pipes:
            return p
        raise ValueError(f"{str(p)!r} is not a regular file (a FIFO, socket or device), not a video file "
                         "(iter_frames reads live pipes)")
    if p.stat().st_size == 0:
        raise ValueError(f"video file {str(p)!r} is empty (0 bytes)")
    return p


# --------------------------------------------------------------------------- #
# shared private helpers: open + validate, decode, frame -> tensor
# --------------------------------------------------------------------------- #
@contextmanager
def _open_video(
    path: PathLike,
    threads: int = 0,
    *,
    max_pixels: int | None = None,
    deadline: _Deadline = _NO_DEADLINE,
    pipes: bool = False,
) -> Iterator[tuple[Path, av.container.InputContainer, av.video.stream.VideoStream]]:
    """Open ``path`` and yield ``(path, container, first_video_stream)``.

    The container is always closed on exit.  Every failure is turned into an
    exception whose message names the file.  ``threads`` and ``max_pixels``
    must be validated.  ``max_pixels`` refuses a stream that declares larger
    frames and is handed to FFmpeg's decoder (with 2x headroom for its
    alignment padding) so that it refuses to allocate larger frames;
    :func:`_decode` checks every decoded frame exactly.  ``deadline`` bounds
    opening (FFmpeg's interrupt callback: probing and each read).
    """
    p = _check_path(path, pipes)
    remaining = deadline.remaining()
    if remaining is not None and remaining <= 0:
        raise deadline.error(p, "before opening the file")
    try:
        container = av.open(str(p), mode="r", timeout=remaining)
    except av.error.FFmpegError as exc:
        if isinstance(exc, PermissionError):
            raise
        if deadline.expired():
            raise deadline.error(p, "while opening the file") from exc
        raise ValueError(f"cannot open {str(p)!r} as a media file: {exc}") from exc
    with container:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise ValueError(
                f"{str(p)!r} has no video stream (streams: {', '.join(kinds)})"
            )
        stream = container.streams.video[0]
        ctx = stream.codec_context
        if ctx is None:  # PyAV has no decoder for the stream's codec (unknown or corrupt header)
            raise ValueError(
                f"{str(p)!r}: no decoder for its video stream (unknown or unsupported codec; "
                "corrupt file?)"
            )
        if max_pixels is not None:
            if ctx.width * ctx.height > max_pixels:
                raise ValueError(
                    f"{str(p)!r} declares {ctx.width}x{ctx.height} frames "
                    f"({ctx.width * ctx.height} pixels), more than max_pixels={max_pixels}"
                )
            ctx.options = {"max_pixels": str(min(2 * max_pixels, 2**31 - 1))}
        stream.thread_type = "AUTO"
        if threads > 0:
            ctx.thread_count = threads
        logger.debug(
            "opened %s: %dx%d %s, %d frames (metadata)",
            p, ctx.width, ctx.height, ctx.name, stream.frames,
        )
        yield p, container, stream


def _decode(
    path: Path,
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    max_pixels: int | None = None,
    deadline: _Deadline = _NO_DEADLINE,
) -> Iterator[tuple[int, av.VideoFrame]]:
    """Yield ``(index, frame)`` in presentation order.

    FFmpeg errors while demuxing or decoding, and packets the demuxer flags as
    corrupt (e.g. cut short by truncation; a frame-threaded decoder may
    otherwise drop them silently), raise ``ValueError`` naming the file and
    the frame (packet) that could not be decoded, counted in decode order.
    A frame larger than ``max_pixels`` raises ``ValueError``.  ``deadline`` is
    checked before each packet: :class:`DecodeTimeoutError` once it passed
    (the consumer's time between frames counts unless it resets it).
    """
    packets = container.demux(stream)
    index = 0  # frames output so far (presentation order)
    position = 0  # non-empty packets seen so far, i.e. frames in decode order
    while True:
        deadline.check(path, f"{position} packets decoded, {index} frames output")
        try:
            packet = next(packets)
            if packet.is_corrupt:
                raise ValueError("corrupt or truncated packet")
            frames = packet.decode()
        except StopIteration:
            return
        except (av.error.FFmpegError, ValueError) as exc:
            if deadline.expired():
                raise deadline.error(path, f"{position} packets decoded, {index} frames output") from exc
            hint = ""
            if max_pixels is not None and isinstance(exc, av.error.ArgumentError):
                hint = f" (or a frame larger than max_pixels={max_pixels})"
            raise ValueError(
                f"decoding {str(path)!r} failed at frame {position} (decode order; "
                f"{index} frames output; truncated or corrupt file{hint}?): {exc}"
            ) from exc
        if packet.size:
            position += 1
        for frame in frames:
            if max_pixels is not None and frame.width * frame.height > max_pixels:
                raise ValueError(
                    f"{str(path)!r}: frame {index} is {frame.width}x{frame.height} "
                    f"({frame.width * frame.height} pixels), more than max_pixels={max_pixels}"
                )
            yield index, frame
            index += 1


def _frame_to_tensor(frame: av.VideoFrame, size: tuple[int, int] | None) -> torch.Tensor:
    """Convert one decoded frame to ``[3, H, W]`` float32 in [0, 1]."""
    if size is None:
        rgb = frame.to_ndarray(format="rgb24")
    else:
        h, w = size
        src_h, src_w = frame.height, frame.width
        scale = max(h / src_h, w / src_w)
        new_h = max(h, round(src_h * scale))
        new_w = max(w, round(src_w * scale))
        if (new_h, new_w) == (src_h, src_w):
            rgb = frame.to_ndarray(format="rgb24")
        else:
            interp = Interpolation.AREA if scale < 1 else Interpolation.BILINEAR
            rgb = frame.reformat(
                width=new_w, height=new_h, format="rgb24", interpolation=interp
            ).to_ndarray()
        top, left = (new_h - h) // 2, (new_w - w) // 2
        rgb = rgb[top : top + h, left : left + w]
    tensor = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
    return tensor.to(torch.float32).div_(255.0)


def _convert(path: Path, index: int, frame: av.VideoFrame, size: tuple[int, int] | None) -> torch.Tensor:
    """:func:`_frame_to_tensor`, with a failed pixel-format conversion as ``ValueError``."""
    try:
        return _frame_to_tensor(frame, size)
    except (av.error.FFmpegError, ValueError, NotImplementedError, TypeError) as exc:
        raise ValueError(
            f"{str(path)!r}: cannot convert frame {index} ({frame.width}x{frame.height} "
            f"{frame.format.name}) to RGB: {exc}"
        ) from exc


def _uniform_indices(n: int, num_frames: int) -> list[int]:
    """Segment centres: ``floor((i + 0.5) * n / num_frames)``."""
    return [math.floor((i + 0.5) * n / num_frames) for i in range(num_frames)]


def _collect(
    path: PathLike,
    threads: int,
    size: tuple[int, int] | None,
    wanted_for: Callable[[int], Collection[int]],
    stop_early: bool,
    max_pixels: int | None,
    deadline: _Deadline,
) -> tuple[dict[int, torch.Tensor], int, int, torch.Tensor | None]:
    """Decode one pass, converting only the wanted frames.

    ``wanted_for(meta)`` receives the container's frame count (0 if unknown)
    and returns the indices to keep.  Returns ``(tensors_by_index, meta,
    frames_decoded, last_frame)``.  With ``stop_early`` decoding stops as soon
    as every wanted frame is converted, so ``frames_decoded`` is then only a
    lower bound.  ``last_frame`` is the video's last frame as a tensor when
    the whole video was decoded and some wanted frame was missing (else
    ``None``); it is converted only in that case.  ``size=None`` means the
    size of the video's first frame (later frames of another size are scaled
    and cropped to it).
    """
    out: dict[int, torch.Tensor] = {}
    last: av.VideoFrame | None = None
    count = 0
    with _open_video(path, threads, max_pixels=max_pixels, deadline=deadline) as (p, container, stream):
        meta = max(int(stream.frames or 0), 0)
        wanted = set(wanted_for(meta))
        for index, frame in _decode(p, container, stream, max_pixels=max_pixels, deadline=deadline):
            count = index + 1
            last = frame
            if size is None:  # the first frame fixes the output size
                size = (frame.height, frame.width)
            if index in wanted:
                out[index] = _convert(p, index, frame, size)
                if stop_early and len(out) == len(wanted):
                    return out, meta, count, None
    last_tensor = None
    if last is not None and len(out) < len(wanted):
        last_tensor = _convert(p, count - 1, last, size)
    return out, meta, count, last_tensor


# --------------------------------------------------------------------------- #
# public API
# --------------------------------------------------------------------------- #
def read_video(
    path: PathLike,
    num_frames: int,
    size: int | tuple[int, int] | None = 224,
    *,
    sampling: str = "uniform",
    stride: int = 1,
    offset: int = 0,
    pad: bool = False,
    threads: int = 0,
    timeout: float | None = DEFAULT_TIMEOUT,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> torch.Tensor:
    """Decode ``num_frames`` frames of ``path`` into ``[T, 3, H, W]`` float32 in [0, 1].

    ``sampling="uniform"`` picks ``floor((i + 0.5) * n / num_frames)`` for
    ``i < num_frames`` over the ``n`` decodable frames (every frame in order
    when ``n == num_frames``; frames repeat when ``n < num_frames``).
    ``sampling="stride"`` picks ``offset + i * stride``; if the video is too
    short this raises ``ValueError``, unless ``pad=True``, in which case the
    last frame of the video fills the missing positions.  ``stride``/``offset``
    are ignored by uniform sampling.  See the module docstring for ``size``,
    the frame-count fallback and truncated files.  ``threads`` is the decoder
    thread count (0 = FFmpeg's default).  ``timeout`` limits the whole call
    (opening and every decoding pass) to that many seconds (``None``: no
    limit); ``max_pixels`` is the largest frame area accepted (``None``: no
    limit).  See the module docstring ("Hostile files").

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` (naming
    the file) for directories, empty/corrupt/truncated files, files without a
    video stream or decodable frames, frames larger than ``max_pixels``, and
    invalid arguments; :class:`DecodeTimeoutError` (a ``ValueError``) when the
    time limit is exceeded.
    """
    num_frames = _int_at_least(num_frames, "num_frames")
    stride = _int_at_least(stride, "stride")
    offset = _int_at_least(offset, "offset", minimum=0)
    threads = _int_at_least(threads, "threads", minimum=0)
    hw = _normalise_size(size)
    if sampling not in _SAMPLINGS:
        raise ValueError(f"sampling must be one of {_SAMPLINGS}, got {sampling!r}")
    deadline = _Deadline(_normalise_timeout(timeout))
    max_pixels = _normalise_max_pixels(max_pixels)
    limits = dict(max_pixels=max_pixels, deadline=deadline)

    if sampling == "stride":
        plan = [offset + i * stride for i in range(num_frames)]
        got, _, count, last = _collect(
            path, threads, hw, lambda _: plan, stop_early=True, **limits
        )
        missing = [i for i in plan if i not in got]
        if missing:
            if count == 0:
                raise ValueError(f"{str(path)!r} contains no decodable video frames")
            if not pad:
                raise ValueError(
                    f"{str(path)!r} has {count} frames but stride sampling needs "
                    f"{plan[-1] + 1} (num_frames={num_frames}, stride={stride}, "
                    f"offset={offset}); pass pad=True to repeat the last frame"
                )
            logger.debug(
                "%s: %d frames, padding %d of %d sampled frames with the last frame",
                path, count, len(missing), num_frames,
            )
            assert last is not None
            for i in missing:
                got[i] = last
        return torch.stack([got[i] for i in plan])

    # Uniform sampling.  Pass 1 plans with the metadata count (converting
    # nothing when it is unknown) and decodes to the end to learn the true
    # count ``n``; if that differs, pass 2 re-plans with ``n``.
    def plan_for(n: int) -> list[int]:
        return _uniform_indices(n, num_frames) if n > 0 else []

    got, meta, count, _ = _collect(path, threads, hw, plan_for, stop_early=False, **limits)
    if count == 0:
        raise ValueError(f"{str(path)!r} contains no decodable video frames")
    if count != meta:
        if meta > 0:
            logger.warning(
                "%s: metadata reports %d frames but %d were decoded; "
                "decoding again with the true count",
                path, meta, count,
            )
        else:
            logger.debug("%s: frame count unknown, counted %d frames", path, count)
        got, _, recount, _ = _collect(
            path, threads, hw, lambda _: plan_for(count), stop_early=True, **limits
        )
        if len(got) < len(set(plan_for(count))):
            raise ValueError(
                f"{str(path)!r}: decoded {count} frames in the first pass but only "
                f"{recount} in the second; the file cannot be decoded reliably"
            )
    return torch.stack([got[i] for i in plan_for(count)])


def iter_frames(
    path: PathLike,
    size: int | tuple[int, int] | None = 224,
    *,
    stride: int = 1,
    offset: int = 0,
    max_frames: int | None = None,
    threads: int = 0,
    timeout: float | None = DEFAULT_TIMEOUT,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> Iterator[torch.Tensor]:
    """Lazily yield frames ``offset, offset + stride, ...`` as ``[3, H, W]`` float32.

    Decoding happens while iterating (suitable for streaming inference on
    long videos), stopping after ``max_frames`` frames if given.  Arguments
    and the path (missing file, directory, empty file) are checked when this
    is called; errors found while opening or decoding are raised during
    iteration, with the same types and messages as :func:`read_video`.  A
    video with no decodable frames raises ``ValueError``; an ``offset`` past
    the end simply yields nothing.  ``timeout`` limits the wait for each
    yielded frame (the first one includes opening the file; skipped frames
    count towards the next yielded one; the caller's time between frames does
    not), so a stream may run for days; ``None``: no limit.  ``max_pixels`` as
    in :func:`read_video`.
    """
    stride = _int_at_least(stride, "stride")
    offset = _int_at_least(offset, "offset", minimum=0)
    threads = _int_at_least(threads, "threads", minimum=0)
    if max_frames is not None:
        max_frames = _int_at_least(max_frames, "max_frames")
    hw = _normalise_size(size)
    limit = _normalise_timeout(timeout)
    max_pixels = _normalise_max_pixels(max_pixels)
    _check_path(path, pipes=True)
    return _iter_frames(path, hw, stride, offset, max_frames, threads, limit, max_pixels)


def _iter_frames(
    path: PathLike,
    size: tuple[int, int] | None,
    stride: int,
    offset: int,
    max_frames: int | None,
    threads: int,
    limit: float | None,
    max_pixels: int | None,
) -> Iterator[torch.Tensor]:
    emitted = 0
    decoded = 0
    deadline = _Deadline(limit)  # per yielded frame
    limits = dict(max_pixels=max_pixels, deadline=deadline)
    with _open_video(path, threads, pipes=True, **limits) as (p, container, stream):
        for index, frame in _decode(p, container, stream, **limits):
            decoded = index + 1
            if size is None:  # the first frame fixes the output size
                size = (frame.height, frame.width)
            if index < offset or (index - offset) % stride:
                continue
            tensor = _convert(p, index, frame, size)
            yield tensor
            deadline.reset()
            emitted += 1
            if max_frames is not None and emitted >= max_frames:
                return
    if decoded == 0:
        raise ValueError(f"{str(path)!r} contains no decodable video frames")


def video_info(path: PathLike) -> VideoInfo:
    """Return :class:`VideoInfo` for the first video stream of ``path`` (no decoding).

    Opening is bounded by :data:`DEFAULT_TIMEOUT`; no ``max_pixels`` check (the
    declared size is reported).
    """
    with _open_video(path, deadline=_Deadline(DEFAULT_TIMEOUT)) as (_, container, stream):
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if stream.duration is not None and stream.time_base is not None:
            duration: float | None = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        else:
            duration = None
        ctx = stream.codec_context
        return VideoInfo(
            num_frames=max(int(stream.frames or 0), 0),
            fps=float(rate) if rate else 0.0,
            width=int(ctx.width),
            height=int(ctx.height),
            duration_s=duration,
            codec=str(ctx.name),
        )
