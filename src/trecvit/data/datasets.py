"""Video classification datasets that decode real video files with PyAV.

:class:`VideoClipDataset` holds ``(path, label)`` items and turns item ``i``
into a clip: decode the needed frames (:mod:`trecvit.io` helpers), then a
:class:`~trecvit.data.transforms.TrainTransform` (training) or multi-view
:class:`~trecvit.data.transforms.EvalTransform` (evaluation).  Constructors for
common layouts build the items: :func:`video_folder_dataset`,
:func:`csv_dataset`, :func:`kinetics_dataset`, :func:`ssv2_dataset`, and
:func:`build_dataset` dispatches on a format name.  Use
:func:`collate_videos` and :func:`worker_init_fn` with the ``DataLoader``.

Robustness: files that do not exist are dropped when the dataset is built
(one warning says how many); a file that exists but cannot be decoded yields a
sample with ``video=None`` and an ``error`` message, which
:func:`collate_videos` drops from the batch and reports under ``failed``.
Decoding one item is bounded in time (``decode_timeout``) and in frame size
(``max_pixels``); see "Hostile files" in :mod:`trecvit.io`.

Reproducibility: every random choice for item ``i`` (temporal offset, crop,
flip, RandAugment) comes from generators seeded by ``(seed, epoch, i)``, so a
sample does not depend on the worker or process that loads it, nor on the
order of loading.  Call :meth:`VideoClipDataset.set_epoch` before each epoch.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import random
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from av.video.reformatter import Interpolation
from torch.utils.data import Dataset, default_collate

from trecvit.data.sampling import _positive_int, eval_clip_indices, parse_views, train_clip_indices
from trecvit.data.transforms import EvalTransform, TrainTransform, _cover_size
from trecvit.validation import size_hw as _hw
from trecvit.io import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_TIMEOUT,
    _Deadline,
    _decode,
    _normalise_max_pixels,
    _normalise_timeout,
    _open_video,
)

__all__ = [
    "DATASET_FORMATS",
    "VIDEO_EXTENSIONS",
    "VideoClipDataset",
    "build_dataset",
    "collate_videos",
    "csv_dataset",
    "kinetics_dataset",
    "ssv2_dataset",
    "video_folder_dataset",
    "worker_init_fn",
]

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS: tuple[str, ...] = (
    ".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ogv", ".gif",
)
"""File extensions (lower case) treated as videos when scanning folders."""

DATASET_FORMATS: tuple[str, ...] = ("folder", "csv", "kinetics", "ssv2")
"""Formats accepted by :func:`build_dataset`."""

_NUM_EXAMPLES = 3  # example paths quoted in warnings
PathArg = str | os.PathLike


class _DecodeFailure(Exception):
    """Internal: decoding a file failed; the message names the file."""


# --------------------------------------------------------------------------- #
# decoding
# --------------------------------------------------------------------------- #
def _count_packets(container: Any, stream: Any, *, deadline: _Deadline | None = None) -> int:
    """Number of non-empty packets of ``stream`` (demuxing only, no decoding).

    Demuxing errors raise ``ValueError``; ``deadline`` is checked before each packet.
    """
    path = container.name
    deadline = deadline or _Deadline(None)
    count = 0
    packets = container.demux(stream)
    while True:
        deadline.check(path, f"counting packets, {count} so far")
        try:
            packet = next(packets)
        except StopIteration:
            return count
        except av.error.FFmpegError as exc:
            if deadline.expired():
                raise deadline.error(path, f"counting packets, {count} so far") from exc
            raise ValueError(f"demuxing {str(path)!r} failed after {count} packets: {exc}") from exc
        if packet.size:
            count += 1


def _frame_to_uint8(frame: Any, size: tuple[int, int]) -> torch.Tensor:
    """One decoded frame as ``[3, h, w]`` uint8 RGB, scaled by swscale to ``size = (h, w)``.

    Area interpolation when shrinking (antialiased), bilinear when enlarging.
    """
    h, w = size
    if (frame.height, frame.width) == (h, w):
        rgb = frame.to_ndarray(format="rgb24")
    else:
        interp = Interpolation.AREA if h * w < frame.height * frame.width else Interpolation.BILINEAR
        rgb = frame.reformat(width=w, height=h, format="rgb24", interpolation=interp).to_ndarray()
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))  # (3, h, w)


def _decode_wanted(
    path: Path,
    container: Any,
    stream: Any,
    wanted: set[int],
    got: dict[int, torch.Tensor],
    size_for: Callable[[int, int], tuple[int, int] | None],
    max_pixels: int | None,
    deadline: _Deadline,
) -> int:
    """Decode up to ``max(wanted)``, storing the wanted frames (``[3, h, w]`` uint8) in ``got``.

    ``(h, w)`` is ``size_for(height, width)`` of the first wanted frame (``None``:
    its native size); later frames of another size are scaled to it.  Returns
    the number of frames decoded (the video's length if it ended first).
    ``max_pixels`` and ``deadline`` as in :func:`trecvit.io._decode`.
    """
    if not wanted:
        return 0
    last_needed = max(wanted)
    target: tuple[int, int] | None = None
    count = 0
    frames = _decode(path, container, stream, max_pixels, deadline)  # positional: tests wrap _decode
    try:
        for index, frame in frames:
            count = index + 1
            if index in wanted:
                if target is None:
                    target = size_for(frame.height, frame.width) or (frame.height, frame.width)
                try:
                    got[index] = _frame_to_uint8(frame, target)  # (3, h, w)
                except (av.error.FFmpegError, ValueError, NotImplementedError, TypeError) as exc:
                    raise ValueError(
                        f"{str(path)!r}: cannot convert frame {index} ({frame.width}x{frame.height} "
                        f"{frame.format.name}) to RGB: {exc}"
                    ) from exc
            if index >= last_needed:
                break
    finally:
        frames.close()
    return count


def _read_frames(
    path: str,
    plan: Callable[[int], list[int]],
    size_for: Callable[[int, int], tuple[int, int] | None],
    threads: int,
    timeout: float | None = DEFAULT_TIMEOUT,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> torch.Tensor:
    """Decode the frames ``plan(n)`` of the video at ``path`` (``n`` = its frame count).

    ``n`` is the container's frame count when it has one; otherwise the video
    packets are counted (demuxing only).  Decoding stops at the last planned
    frame and only planned frames are converted.  If the video turns out to be
    shorter than ``n`` (metadata over-reports, or packets without a frame),
    the plan is redone with the true count and the missing frames are decoded
    in a second pass.  ``plan`` must be deterministic in ``n``.

    Returns ``[len(plan(n)), 3, h, w]`` uint8 RGB with ``(h, w) =
    size_for(height, width)`` of the first converted frame (``None``: native).
    ``timeout`` (seconds, ``None``: none) bounds all the passes together;
    frames over ``max_pixels`` are refused (see :mod:`trecvit.io`).
    """
    got: dict[int, torch.Tensor] = {}
    indices: list[int] = []
    count = 0
    fixed: list[tuple[int, int]] = []

    def size_once(height: int, width: int) -> tuple[int, int]:
        # one output size for every pass, even if the video changes size mid-stream
        if not fixed:
            fixed.append(size_for(height, width) or (height, width))
        return fixed[0]

    deadline = _Deadline(timeout)
    limits = dict(max_pixels=max_pixels, deadline=deadline)
    with _open_video(path, threads, **limits) as (p, container, stream):
        n = max(int(stream.frames or 0), 0)
        if n > 0:
            indices = plan(n)
            count = _decode_wanted(p, container, stream, set(indices), got, size_once, **limits)
        else:
            n = _count_packets(container, stream, deadline=deadline)
            if n == 0:
                raise ValueError(f"{path!r} contains no video packets (zero frames)")
    if not indices:  # the frame count came from counting packets: decode in a fresh container
        with _open_video(path, threads, **limits) as (p, container, stream):
            indices = plan(n)
            count = _decode_wanted(p, container, stream, set(indices), got, size_once, **limits)
    if set(indices) - got.keys():  # the video ended before the last planned frame
        if count == 0:
            raise ValueError(f"{path!r} contains no decodable video frames")
        logger.debug("%s: expected %d frames but decoded %d; re-planning the clip", path, n, count)
        indices = plan(count)
        missing = set(indices) - got.keys()
        if missing:
            with _open_video(path, threads, **limits) as (p, container, stream):
                _decode_wanted(p, container, stream, missing, got, size_once, **limits)
            if set(indices) - got.keys():
                raise ValueError(
                    f"{path!r}: decoded {count} frames in one pass but fewer in the next; "
                    "the file cannot be decoded reliably"
                )
    return torch.stack([got[i] for i in indices])  # (len(indices), 3, h, w)


# --------------------------------------------------------------------------- #
# the dataset
# --------------------------------------------------------------------------- #
class VideoClipDataset(Dataset):
    """Clips of labelled video files, decoded on the fly.

    Args:
        items: ``(path, label)`` pairs; ``label`` is an index into ``classes``.
            Items whose file does not exist are dropped (one warning).
        classes: class names; ``label`` ``k`` means ``classes[k]``.
        num_frames: frames per clip ``T``.
        stride: temporal stride between clip frames (in video frames).
        image_size: output frame size, ``int`` or ``(h, w)``.
        train: training (random offset, :class:`TrainTransform`, output
            ``[T, 3, H, W]``) or evaluation (``views``, output ``[V, T, 3, H, W]``).
        views: evaluation views ``"CxS"`` (see :func:`parse_views`): ``C``
            temporal clips evenly spread over the video times ``S`` spatial
            crops (1 or 3); ``V = C * S``, ordered clip-major (all crops of clip
            0 first).  Ignored when ``train``.
        hflip: random horizontal flips when training.  Turn it off for
            left/right-sensitive datasets (Something-Something v2).
        min_scale: smallest random-crop area fraction when training.
        randaug_ops, randaug_magnitude: RandAugment when training (0 ops: off).
        decode_threads: FFmpeg decoder threads per sample, capped at the number
            of CPU cores (keep it small: each ``DataLoader`` worker decodes on
            its own, so about ``num_workers * decode_threads`` threads run).
        decode_timeout: seconds allowed to decode one item (all its passes
            together; ``None``: no limit); a file that takes longer becomes a
            failed sample (:class:`trecvit.io.DecodeTimeoutError` message).
        max_pixels: largest frame area (``width * height``) decoded; a file
            with larger frames becomes a failed sample (``None``: no limit).
        seed: base seed ``>= 0``; randomness of item ``i`` depends only on
            ``(seed, epoch, i)``.
        source: what the items came from (a CSV path, a folder), used in messages.

    Attributes:
        classes, num_classes, items (the kept ``(path: str, label: int)`` pairs),
        num_missing (items dropped because their file does not exist),
        missing_examples (up to 3 of their paths), epoch, views (``(C, S)``),
        transform.

    Frames are decoded to uint8 and scaled down by FFmpeg (``swscale``, area
    interpolation) before any tensor work; only the (random) crop is converted
    to float.  The decode size is, for training, a short side of
    ``ceil(max(image_size) / sqrt(min_scale))`` (so the smallest random crop is
    still not upsampled), for evaluation straight to the size the
    :class:`EvalTransform` resizes to; never above the native size for
    training.  Frame counts come from the container metadata, or from counting
    packets when it has none (e.g. WebM); videos shorter than the metadata
    claims are re-planned with the true count.  Videos shorter than a clip
    repeat their last frame (see :mod:`trecvit.data.sampling`).

    ``__getitem__(i)`` returns ``{"video", "label", "index"}``; when the file
    cannot be decoded, ``{"video": None, "label", "index", "error"}`` with a
    message naming the file (no exception).

    With ``DataLoader(persistent_workers=True)`` the workers keep their copy of
    the dataset, so :meth:`set_epoch` in the main process does not reach them;
    use non-persistent workers (the default) for per-epoch randomness.
    """

    def __init__(
        self,
        items: Iterable[tuple[PathArg, int]],
        classes: Sequence[str],
        *,
        num_frames: int,
        stride: int = 1,
        image_size: int | tuple[int, int] = 224,
        train: bool = True,
        views: str | tuple[int, int] = "1x1",
        hflip: bool = True,
        min_scale: float = 0.08,
        randaug_ops: int = 0,
        randaug_magnitude: float = 9,
        decode_threads: int = 1,
        decode_timeout: float | None = DEFAULT_TIMEOUT,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        seed: int = 0,
        source: str = "",
    ) -> None:
        if isinstance(classes, str):
            raise ValueError("classes must be a list of class names, not a single string")
        self.classes: list[str] = [str(c) for c in classes]
        self.num_classes = len(self.classes)
        if self.num_classes == 0:
            raise ValueError(f"classes is empty{self._from(source)}")
        if len(set(self.classes)) != self.num_classes:
            dupes = sorted({c for c in self.classes if self.classes.count(c) > 1})
            raise ValueError(f"duplicate class names{self._from(source)}: {dupes[:5]}")
        self.num_frames = _positive_int(num_frames, "num_frames")
        self.stride = _positive_int(stride, "stride")
        self.image_size = _hw(image_size, "image_size")
        self.train = bool(train)
        self.views = parse_views(views)
        self.min_scale = float(min_scale)
        # at most one decoder thread per core: more only adds contention
        self.decode_threads = min(_positive_int(decode_threads, "decode_threads"), os.cpu_count() or 1)
        self.decode_timeout = _normalise_timeout(decode_timeout, "decode_timeout")
        self.max_pixels = _normalise_max_pixels(max_pixels)
        self.seed = _positive_int(seed, "seed", minimum=0)
        self.source = str(source)
        self.epoch = 0
        self.transform: TrainTransform | EvalTransform
        if self.train:
            self.transform = TrainTransform(
                self.image_size, min_scale=min_scale, hflip=hflip, randaug_ops=randaug_ops,
                randaug_magnitude=randaug_magnitude,
            )
        else:
            self.transform = EvalTransform(self.image_size, self.views[1])

        kept: list[tuple[str, int]] = []
        missing: list[tuple[str, int]] = []
        total = 0
        for k, item in enumerate(items):
            total += 1
            try:
                path, label = item
            except (TypeError, ValueError):
                raise ValueError(f"items[{k}] must be a (path, label) pair, got {item!r}") from None
            path = os.fspath(path)
            if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
                raise ValueError(f"items[{k}] ({path!r}): label must be an int, got {label!r}")
            label = int(label)
            if not 0 <= label < self.num_classes:
                raise ValueError(
                    f"items[{k}] ({path!r}): label {label} is out of range for {self.num_classes} classes"
                )
            (kept if os.path.exists(path) else missing).append((path, label))
        self.items: list[tuple[str, int]] = kept
        self.num_missing = len(missing)
        self.missing_examples: list[str] = [p for p, _ in missing[:_NUM_EXAMPLES]]
        if total == 0:
            raise ValueError(f"no videos{self._from(source)}")
        if not self.items:
            raise ValueError(
                f"none of the {total} video files{self._from(source)} exist "
                f"(e.g. {', '.join(map(repr, self.missing_examples))}); check the video root"
            )
        if missing:
            warnings.warn(
                f"{self.num_missing} of {total} video files{self._from(source)} do not exist and were "
                f"skipped (e.g. {', '.join(map(repr, self.missing_examples))})",
                stacklevel=2,
            )

    @staticmethod
    def _from(source: str) -> str:
        return f" listed in {source}" if source else ""

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        mode = "train" if self.train else f"eval views={self.views[0]}x{self.views[1]}"
        return (
            f"VideoClipDataset({len(self)} videos, {self.num_classes} classes, num_frames={self.num_frames}, "
            f"stride={self.stride}, image_size={self.image_size}, {mode}"
            f"{', source=' + repr(self.source) if self.source else ''})"
        )

    @property
    def num_views(self) -> int:
        """Views per evaluation sample, ``C * S`` (1 when training)."""
        return 1 if self.train else self.views[0] * self.views[1]

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws ``__getitem__`` uses (``epoch >= 0``)."""
        self.epoch = _positive_int(epoch, "epoch", minimum=0)

    def item_source(self, index: int) -> str:
        """The video file of item ``index`` (named by :class:`~trecvit.data.VideoLoader` when a
        worker dies while loading it)."""
        return self.items[index][0]

    def generator(self, index: int, stream: int = 0) -> torch.Generator:
        """A ``torch.Generator`` seeded from ``(seed, epoch, index, stream)``.

        Stream 0 draws the temporal offset, stream 1 the spatial/colour
        augmentation (separate, so re-planning a clip leaves them unchanged).
        """
        state = np.random.SeedSequence([self.seed, self.epoch, index, stream]).generate_state(1, np.uint64)
        return torch.Generator().manual_seed(int(state[0]))

    def _train_decode_size(self, height: int, width: int) -> tuple[int, int] | None:
        short = min(height, width)
        want = math.ceil(max(self.image_size) / math.sqrt(self.min_scale))
        if want >= short:
            return None
        scale = want / short
        return max(1, round(height * scale)), max(1, round(width * scale))

    def _eval_decode_size(self, height: int, width: int) -> tuple[int, int] | None:
        size = _cover_size(height, width, self.image_size)
        return None if size == (height, width) else size

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Load item ``index``: ``{"video", "label", "index"}`` (plus ``"error"`` on failure)."""
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"dataset index must be an int, got {type(index).__name__}")
        index = int(index)
        if index < 0:
            index += len(self.items)
        if not 0 <= index < len(self.items):
            raise IndexError(f"index {index} out of range for a dataset of {len(self.items)} videos")
        path, label = self.items[index]
        try:
            if self.train:
                video = self._load_train(path, index)
            else:
                video = self._load_eval(path)
        except _DecodeFailure as exc:
            return {"video": None, "label": label, "index": index, "error": str(exc)}
        return {"video": video, "label": label, "index": index}

    def _read(self, path: str, plan: Callable[[int], list[int]], size_for: Callable) -> torch.Tensor:
        try:
            return _read_frames(
                path, plan, size_for, self.decode_threads, self.decode_timeout, self.max_pixels
            )
        except Exception as exc:  # any decoder failure becomes a failed sample
            message = str(exc) or type(exc).__name__
            if path not in message:
                message = f"cannot decode {path!r}: {message}"
            raise _DecodeFailure(message) from exc

    def _load_train(self, path: str, index: int) -> torch.Tensor:
        def plan(n: int) -> list[int]:
            return train_clip_indices(n, self.num_frames, self.stride, self.generator(index, 0))

        frames = self._read(path, plan, self._train_decode_size)  # (T, 3, h, w)
        return self.transform(frames, self.generator(index, 1))  # (T, 3, H, W)

    def _load_eval(self, path: str) -> torch.Tensor:
        num_clips = self.views[0]

        def plan(n: int) -> list[int]:
            clips = eval_clip_indices(n, self.num_frames, self.stride, num_clips)
            return [i for clip in clips for i in clip]

        frames = self._read(path, plan, self._eval_decode_size)  # (C * T, 3, h, w)
        clips = frames.view(num_clips, self.num_frames, *frames.shape[1:])  # (C, T, 3, h, w)
        return torch.cat([self.transform(clip) for clip in clips])  # (C * S, T, 3, H, W)


# --------------------------------------------------------------------------- #
# DataLoader helpers
# --------------------------------------------------------------------------- #
def collate_videos(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Collate samples of :class:`VideoClipDataset`, dropping failed ones.

    Args:
        batch: samples ``{"video", "label", "index"[, "error"]}``.

    Returns:
        ``{"video": [B, ...] float32, "label": LongTensor[B], "index": LongTensor[B],
        "failed": [(index, error), ...]}`` where ``B`` counts the samples that
        decoded.  When every sample failed, ``video`` is ``None`` and ``label``
        and ``index`` are empty ``LongTensor`` s (``failed`` lists them all).

    Raises:
        ValueError: if the good samples' videos differ in shape.
    """
    good = [s for s in batch if s.get("video") is not None]
    failed = [
        (int(s["index"]), str(s.get("error") or "unknown error")) for s in batch if s.get("video") is None
    ]
    if not good:
        empty = torch.empty(0, dtype=torch.long)
        return {"video": None, "label": empty, "index": empty.clone(), "failed": failed}
    shapes = {tuple(s["video"].shape) for s in good}
    if len(shapes) > 1:
        raise ValueError(
            f"cannot batch videos of different shapes {sorted(shapes)} "
            f"(indices {[int(s['index']) for s in good]})"
        )
    return {
        # default_collate puts the stacked batch in shared memory inside DataLoader workers
        "video": default_collate([s["video"] for s in good]),  # (B, ...)
        "label": torch.tensor([int(s["label"]) for s in good], dtype=torch.long),
        "index": torch.tensor([int(s["index"]) for s in good], dtype=torch.long),
        "failed": failed,
    }


def worker_init_fn(worker_id: int) -> None:
    """``DataLoader`` worker setup: one intra-op thread, seeded ``random``/NumPy.

    Each worker decodes with ``decode_threads`` FFmpeg threads; limiting
    PyTorch to one thread per worker keeps ``num_workers`` workers from
    oversubscribing the CPU cores.  The dataset's own randomness does not
    depend on the worker (see :meth:`VideoClipDataset.generator`); Python's and
    NumPy's global generators are seeded from the worker's torch seed anyway
    for any user code.
    """
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"  # for any subprocess the worker starts
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


# --------------------------------------------------------------------------- #
# constructors
# --------------------------------------------------------------------------- #
def _is_video(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS


def _walk_videos(root: Path) -> list[str]:
    """Video files under ``root`` (recursive, hidden folders skipped), in sorted order."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(os.path.join(dirpath, f) for f in sorted(filenames) if _is_video(f))
    return found


def _index_by_stem(root: Path) -> dict[str, str]:
    """``{file stem: path}`` for the videos under ``root`` (first in sorted walk order wins)."""
    index: dict[str, str] = {}
    duplicates = 0
    for path in _walk_videos(root):
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem in index:
            duplicates += 1
        else:
            index[stem] = path
    if duplicates:
        logger.info(
            "%s: %d videos share a file name with another one; the first found is used", root, duplicates
        )
    return index


def _check_dir(path: PathArg, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{what} not found: {str(p)!r}")
    if not p.is_dir():
        raise ValueError(f"{what} {str(p)!r} is not a directory")
    return p


def _check_file(path: PathArg, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{what} not found: {str(p)!r}")
    if p.is_dir():
        raise ValueError(f"{what} {str(p)!r} is a directory, not a file")
    return p


def video_folder_dataset(
    root: PathArg, *, classes: Sequence[str] | None = None, **clip_options: Any
) -> VideoClipDataset:
    """Dataset of ``root/<class name>/**/<video>`` files.

    Args:
        root: folder with one sub-folder per class (hidden folders ignored);
            videos (:data:`VIDEO_EXTENSIONS`, case-insensitive) are found
            recursively inside each class folder.
        classes: class order; default: the sorted sub-folder names.  Pass the
            training set's ``classes`` to a validation folder so the labels
            agree (a class folder may then be absent; an unknown folder is an
            error).
        **clip_options: keyword options of :class:`VideoClipDataset`.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: no class folders, unknown class folders, or no videos.
    """
    root = _check_dir(root, "video folder")
    folders = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if classes is None:
        if not folders:
            raise ValueError(f"{str(root)!r} has no class sub-folders (expected root/<class>/<video>)")
        classes = folders
    else:
        classes = list(classes)
        unknown = sorted(set(folders) - set(classes))
        if unknown:
            raise ValueError(f"{str(root)!r} has class folders that are not in classes: {unknown[:5]}")
    items: list[tuple[str, int]] = []
    for label, name in enumerate(classes):
        folder = root / name
        videos = _walk_videos(folder) if folder.is_dir() else []
        if not videos:
            logger.warning("%s: no videos for class %r", root, name)
        items.extend((path, label) for path in videos)
    if not items:
        raise ValueError(
            f"no video files ({', '.join(VIDEO_EXTENSIONS)}) found in the class folders of {str(root)!r}"
        )
    clip_options.setdefault("source", str(root))
    return VideoClipDataset(items, classes, **clip_options)


_INT_RE = re.compile(r"^[+-]?\d+$")


def _labels_to_indices(
    raw: list[tuple[int, str]], classes: Sequence[str] | None, where: str
) -> tuple[list[int], list[str]]:
    """Map ``(line, label)`` strings (class names or integer indices) to indices and the class list."""
    if classes is not None:
        classes = [str(c) for c in classes]
        lookup = {name: k for k, name in enumerate(classes)}
        out = []
        for line, label in raw:
            if label in lookup:
                out.append(lookup[label])
            elif _INT_RE.match(label):
                k = int(label)
                if not 0 <= k < len(classes):
                    raise ValueError(f"{where}:{line}: label {k} is out of range for {len(classes)} classes")
                out.append(k)
            else:
                raise ValueError(f"{where}:{line}: unknown class name {label!r} (not in classes)")
        return out, classes
    numeric = [bool(_INT_RE.match(label)) for _, label in raw]
    if all(numeric):
        out = [int(label) for _, label in raw]
        for (line, _), k in zip(raw, out):
            if k < 0:
                raise ValueError(f"{where}:{line}: negative label {k}")
        return out, [str(k) for k in range(max(out) + 1)]
    if any(numeric):
        line, label = raw[numeric.index(True)]
        raise ValueError(
            f"{where}:{line}: integer label {label!r} in a file that also uses class names; "
            "pass classes=[...] to say what the names mean"
        )
    names = sorted({label for _, label in raw})
    lookup = {name: k for k, name in enumerate(names)}
    return [lookup[label] for _, label in raw], names


def csv_dataset(
    csv_path: PathArg,
    video_root: PathArg | None = None,
    classes: Sequence[str] | None = None,
    **clip_options: Any,
) -> VideoClipDataset:
    """Dataset from a list file of ``path,label`` or ``path label`` lines.

    The separator is detected from the first line: a comma means CSV (quoted
    fields allowed, exactly two fields per line); otherwise each line is split
    at its last run of whitespace (paths may contain spaces, labels may not).
    A header ``path,label`` (or ``path label``) is skipped, as are blank lines
    and lines starting with ``#``.

    Args:
        csv_path: the list file.
        video_root: base folder of relative paths (default: the file's folder).
        classes: class names.  Labels may be class names or integer indices;
            names are looked up in ``classes`` (then integers are indices into
            it).  Without ``classes``: all-integer labels give classes
            ``"0" .. str(max)``; all-name labels give the sorted unique names.
            Pass the training set's ``classes`` when building a validation set.
        **clip_options: keyword options of :class:`VideoClipDataset`.

    Raises:
        FileNotFoundError: the list file does not exist.
        ValueError: a malformed line or bad label (the message names the line).
    """
    csv_path = _check_file(csv_path, "CSV file")
    base = Path(video_root).expanduser() if video_root is not None else csv_path.parent
    where = str(csv_path)
    lines = csv_path.read_text(encoding="utf-8-sig").splitlines()
    rows: list[tuple[int, str, str]] = []
    comma: bool | None = None
    for lineno, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if comma is None:
            comma = "," in text
        if comma:
            fields = [f.strip() for f in next(csv.reader([text]))]
        else:
            fields = text.rsplit(None, 1)
        if len(fields) != 2 or not fields[0] or not fields[1]:
            expected = "path,label" if comma else "path label"
            raise ValueError(f"{where}:{lineno}: expected '{expected}', got {line!r}")
        if not rows and [f.lower() for f in fields] == ["path", "label"]:
            continue  # header
        rows.append((lineno, fields[0], fields[1]))
    if not rows:
        raise ValueError(f"{where} lists no videos")
    labels, classes = _labels_to_indices([(lineno, label) for lineno, _, label in rows], classes, where)
    items = []
    for (_, path, _), label in zip(rows, labels):
        p = Path(path).expanduser()
        items.append((str(p if p.is_absolute() else base / p), label))
    clip_options.setdefault("source", where)
    return VideoClipDataset(items, classes, **clip_options)


def kinetics_dataset(
    annotations_csv: PathArg,
    video_root: PathArg,
    split: str | None = None,
    classes: Sequence[str] | None = None,
    **clip_options: Any,
) -> VideoClipDataset:
    """Kinetics-400/600/700 from an official annotation CSV.

    The CSV has a header ``label,youtube_id,time_start,time_end,split`` (an
    extra ``is_cc`` column, or any other, is ignored).  The video of a row is
    the file named ``{youtube_id}_{time_start:06d}_{time_end:06d}.<ext>`` or
    ``{youtube_id}.<ext>`` anywhere under ``video_root`` (one recursive scan
    builds an index by file name stem).  Rows whose video is not found count as
    missing (one warning).

    Args:
        annotations_csv: e.g. ``kinetics400/train.csv``.
        video_root: folder containing the videos (any sub-folder layout).
        split: keep only rows whose ``split`` column equals this (e.g.
            ``"train"``, ``"val"``); ``None`` keeps every row.
        classes: class order.  Default: the sorted unique label names of the
            CSV, which for the official train CSVs is the standard class order
            (e.g. ``trecvit/assets/kinetics400_labels.txt``).  Pass the
            training set's ``classes`` to the validation set so that both use
            the same indices even if a class were absent from one of them.
        **clip_options: keyword options of :class:`VideoClipDataset`.

    Raises:
        FileNotFoundError: the CSV or ``video_root`` does not exist.
        ValueError: missing columns (an unlabelled test CSV has no ``label``
            column), a malformed row or an unknown label (naming the line), or
            no rows for ``split``.  Rows with an empty label are skipped with a
            warning.
    """
    csv_path = _check_file(annotations_csv, "Kinetics annotation CSV")
    root = _check_dir(video_root, "Kinetics video root")
    where = str(csv_path)
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [h.strip().lower() for h in next(reader, [])]
        required = ("youtube_id", "time_start", "time_end")
        absent = [c for c in required if c not in header]
        if absent:
            raise ValueError(
                f"{where}: missing column(s) {absent}; expected a header like "
                f"'label,youtube_id,time_start,time_end,split', got {','.join(header)!r}"
            )
        if "label" not in header:
            raise ValueError(
                f"{where} has no 'label' column (the Kinetics test split is unlabelled); "
                "a labelled CSV is needed for training or evaluation"
            )
        if split is not None and "split" not in header:
            raise ValueError(f"{where} has no 'split' column, cannot select split={split!r}")
        col = {name: k for k, name in enumerate(header)}
        rows: list[tuple[int, str, str, str]] = []  # (line, label, clip file stem, youtube_id)
        splits_seen: set[str] = set()
        unlabelled = 0
        for fields in reader:
            lineno = reader.line_num
            if not fields or all(not x.strip() for x in fields):
                continue
            if len(fields) < len(header):
                raise ValueError(
                    f"{where}:{lineno}: expected {len(header)} fields, got {len(fields)}: {fields}"
                )
            if split is not None:
                row_split = fields[col["split"]].strip()
                splits_seen.add(row_split)
                if row_split != split:
                    continue
            label = fields[col["label"]].strip()
            youtube_id = fields[col["youtube_id"]].strip()
            try:
                start = int(float(fields[col["time_start"]]))
                end = int(float(fields[col["time_end"]]))
            except ValueError:
                raise ValueError(
                    f"{where}:{lineno}: time_start/time_end must be numbers, got "
                    f"{fields[col['time_start']]!r}, {fields[col['time_end']]!r}"
                ) from None
            if not youtube_id:
                raise ValueError(f"{where}:{lineno}: empty youtube_id")
            if not label:
                unlabelled += 1
                continue
            rows.append((lineno, label, f"{youtube_id}_{start:06d}_{end:06d}", youtube_id))
    if unlabelled:
        warnings.warn(f"{where}: skipped {unlabelled} rows without a label", stacklevel=2)
    if not rows:
        if split is not None:
            raise ValueError(
                f"{where} has no labelled rows with split={split!r} (splits: {sorted(splits_seen)})"
            )
        raise ValueError(f"{where} has no labelled rows")
    labels, classes = _labels_to_indices([(lineno, label) for lineno, label, _, _ in rows], classes, where)
    index = _index_by_stem(root)
    items = []
    for (_, _, stem, youtube_id), label in zip(rows, labels):
        path = index.get(stem) or index.get(youtube_id) or str(root / f"{stem}.mp4")
        items.append((path, label))
    clip_options.setdefault("source", where)
    return VideoClipDataset(items, classes, **clip_options)


def _ssv2_classes(labels_path: Path) -> list[str]:
    """Class names in index order from the SSv2 labels JSON (``{name: "index"}`` or a list)."""
    try:
        labels = json.loads(labels_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{str(labels_path)!r} is not valid JSON: {exc}") from exc
    if isinstance(labels, list):
        return [str(name) for name in labels]
    if not isinstance(labels, dict):
        raise ValueError(
            f"{str(labels_path)!r} must map template names to indices, got {type(labels).__name__}"
        )
    by_index: dict[int, str] = {}
    for name, value in labels.items():
        try:
            k = int(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"{str(labels_path)!r}: index of {name!r} must be an integer, got {value!r}"
            ) from None
        if k in by_index:
            raise ValueError(f"{str(labels_path)!r}: index {k} is used by {by_index[k]!r} and {name!r}")
        by_index[k] = str(name)
    if sorted(by_index) != list(range(len(by_index))):
        raise ValueError(f"{str(labels_path)!r}: indices must be 0..{len(by_index) - 1} without gaps")
    return [by_index[k] for k in range(len(by_index))]


def ssv2_dataset(
    annotations_json: PathArg,
    labels_json: PathArg,
    video_root: PathArg,
    *,
    classes: Sequence[str] | None = None,
    **clip_options: Any,
) -> VideoClipDataset:
    """Something-Something v2 from its official JSON files.

    The annotations are a JSON list of objects with ``id``, ``template`` (e.g.
    ``"Putting [something] on [something]"``), ``label`` and ``placeholders``;
    an item's class is its template with the brackets removed, looked up in
    the labels JSON (``{"Putting something on something": "93", ...}``, or a
    list of names in index order).  Videos are ``{video_root}/{id}.webm`` (any
    extension in :data:`VIDEO_EXTENSIONS`, any sub-folder: one recursive scan).

    SSv2 has left/right-sensitive classes ("Pushing something from left to
    right"): build training sets with ``hflip=False``.

    Args:
        annotations_json: e.g. ``something-something-v2-train.json``.
        labels_json: ``something-something-v2-labels.json``.
        video_root: folder with the videos.
        classes: optional; if given it must equal the labels file's order
            (accepted so that callers can pass the training set's classes).
        **clip_options: keyword options of :class:`VideoClipDataset`.

    Raises:
        FileNotFoundError: a file or ``video_root`` does not exist.
        ValueError: malformed JSON, entries without ``template`` (the test set
            is unlabelled) or with a template missing from the labels file.
    """
    ann_path = _check_file(annotations_json, "SSv2 annotation JSON")
    labels_path = _check_file(labels_json, "SSv2 labels JSON")
    root = _check_dir(video_root, "SSv2 video root")
    names = _ssv2_classes(labels_path)
    if classes is not None and [str(c) for c in classes] != names:
        raise ValueError(f"classes does not match the class order of {str(labels_path)!r}")
    lookup = {name: k for k, name in enumerate(names)}
    try:
        entries = json.loads(ann_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{str(ann_path)!r} is not valid JSON: {exc}") from exc
    if not isinstance(entries, list):
        raise ValueError(f"{str(ann_path)!r} must be a JSON list of objects, got {type(entries).__name__}")
    index = _index_by_stem(root)
    items = []
    for k, entry in enumerate(entries):
        if not isinstance(entry, dict) or "id" not in entry:
            raise ValueError(
                f"{str(ann_path)!r}: entry {k} must be an object with an 'id', got {entry!r:.100}"
            )
        video_id = str(entry["id"])
        template = entry.get("template")
        if not isinstance(template, str):
            raise ValueError(
                f"{str(ann_path)!r}: entry {k} (id {video_id}) has no 'template' "
                "(the SSv2 test set is unlabelled)"
            )
        name = template.replace("[", "").replace("]", "")
        if name not in lookup:
            raise ValueError(
                f"{str(ann_path)!r}: entry {k} (id {video_id}): template {name!r} "
                f"is not in {str(labels_path)!r}"
            )
        path = index.get(video_id) or str(root / f"{video_id}.webm")
        items.append((path, lookup[name]))
    clip_options.setdefault("source", str(ann_path))
    return VideoClipDataset(items, names, **clip_options)


def build_dataset(
    format: str,
    path: PathArg,
    *,
    video_root: PathArg | None = None,
    labels: PathArg | None = None,
    split: str | None = None,
    classes: Sequence[str] | None = None,
    **clip_options: Any,
) -> VideoClipDataset:
    """Build a dataset by format name.

    Args:
        format: one of :data:`DATASET_FORMATS`:
            ``"folder"`` (``path`` = root of class folders, :func:`video_folder_dataset`),
            ``"csv"`` (``path`` = list file; optional ``video_root``, :func:`csv_dataset`),
            ``"kinetics"`` (``path`` = annotation CSV; ``video_root`` required,
            optional ``split``, :func:`kinetics_dataset`),
            ``"ssv2"`` (``path`` = annotation JSON; ``labels`` = labels JSON and
            ``video_root`` required, :func:`ssv2_dataset`).
        path, video_root, labels, split, classes: as above; an option the
            format does not use must be ``None``.
        **clip_options: keyword options of :class:`VideoClipDataset`.

    Raises:
        ValueError: unknown format, a required option missing, or an unused one given.
    """
    fmt = str(format).lower()
    given = {"video_root": video_root, "labels": labels, "split": split}
    uses: dict[str, tuple[str, ...]] = {
        "folder": (),
        "csv": ("video_root",),
        "kinetics": ("video_root", "split"),
        "ssv2": ("video_root", "labels"),
    }
    if fmt not in uses:
        raise ValueError(f"unknown dataset format {format!r}; expected one of {', '.join(DATASET_FORMATS)}")
    unused = [name for name, value in given.items() if value is not None and name not in uses[fmt]]
    if unused:
        raise ValueError(f"dataset format {fmt!r} does not use {', '.join(unused)}")
    if fmt == "folder":
        return video_folder_dataset(path, classes=classes, **clip_options)
    if fmt == "csv":
        return csv_dataset(path, video_root, classes, **clip_options)
    if video_root is None:
        raise ValueError(f"dataset format {fmt!r} needs video_root")
    if fmt == "kinetics":
        return kinetics_dataset(path, video_root, split, classes, **clip_options)
    if labels is None:
        raise ValueError("dataset format 'ssv2' needs labels (the something-something-v2-labels.json file)")
    return ssv2_dataset(path, labels, video_root, classes=classes, **clip_options)
