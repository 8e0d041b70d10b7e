"""TAP-Vid query sampling, frame resizing and a torch ``Dataset`` for point tracking.

Records
-------
The canonical in-memory record (what every reader of :mod:`trecvit.tracking.formats` returns, and
what the synthetic generator produces) is::

    {"video": np.uint8 [T, H, W, 3], "points": np.float32 [n, T, 2], "occluded": np.bool_ [n, T]}

plus optionally ``"name"``.  ``points`` are normalised ``(x, y)`` in ``[0, 1]``: ``x = pixel_x / W``,
``y = pixel_y / H`` (raster coordinates: the top-left corner of the frame is ``(0, 0)``, the
bottom-right corner ``(1, 1)``).  The file formats (TAP-Vid DAVIS / RGB-Stacking / Kinetics pickles,
Perception Test JSON + mp4, and a pickle-free ``.npz``) are described in
:mod:`trecvit.tracking.formats`, whose readers are re-exported here.  TAP-Vid ships pickles, and
unpickling can execute arbitrary code, so those readers refuse unless ``allow_pickle=True`` (CLI
``--allow-pickle``): pass it only for files you trust, or convert once to ``.npz``.

Coordinate conventions
----------------------
* **Benchmark (tapnet) convention**, used by :func:`sample_queries_first`,
  :func:`sample_queries_strided` and :func:`tapvid_queries`: ``query_points`` are ``(t, y, x)`` in
  *pixels* of the evaluation frame (256x256 for TAP-Vid), ``target_points`` are ``(x, y)`` in the
  same pixels.  Pixels are normalised coordinates times the size (``pixel_x = x * W``).
* **Model convention**, used by :class:`TrackingDataset`: ``query_points`` are ``(t, x, y)`` with
  ``x, y`` *normalised* and ``t`` the frame index within the clip (a float); ``target_points`` are
  normalised ``(x, y)``.  :func:`to_model_queries` and :func:`from_model_queries` convert.

Resizing the whole frame (:func:`resize_video`, no crop, aspect ratio not kept, as tapnet does) does
not change normalised coordinates, so tracks at any resolution are normalised tracks times the size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, default_collate

from trecvit.data.datasets import collate_videos
from trecvit.tracking.formats import (
    TRACKING_FORMATS,
    load_davis,
    load_kinetics,
    load_npz_tracks,
    load_perception_test,
    load_rgb_stacking,
    load_tracking_data,
    save_npz_tracks,
    validate_record,
)
from trecvit.validation import int_at_least, size_hw

__all__ = [
    "QUERY_MODES",
    "TRACKING_FORMATS",
    "TrackingDataset",
    "collate_tracks",
    "from_model_queries",
    "load_davis",
    "load_kinetics",
    "load_npz_tracks",
    "load_perception_test",
    "load_rgb_stacking",
    "load_tracking_data",
    "resize_video",
    "sample_queries_first",
    "sample_queries_strided",
    "save_npz_tracks",
    "tapvid_queries",
    "to_model_queries",
    "validate_record",
]

QUERY_MODES: tuple[str, ...] = ("first", "strided")
"""TAP-Vid query modes: each track queried once at its first visible frame, or every ``stride``."""
TRACK_KEYS: tuple[str, ...] = ("query_points", "target_points", "occluded", "valid")


def _tracks(points: np.ndarray, occluded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    points = np.asarray(points, dtype=np.float32)
    occluded = np.asarray(occluded, dtype=np.bool_)
    if points.ndim != 3 or points.shape[2] != 2 or occluded.shape != points.shape[:2]:
        raise ValueError(f"expected points [n, T, 2] and occluded [n, T], got {points.shape} and "
                         f"{occluded.shape}")
    return points, occluded


def _pack(queries: list[np.ndarray], tracks: np.ndarray, occluded: np.ndarray, group: np.ndarray):
    T = occluded.shape[1]
    q = np.concatenate(queries).astype(np.float32) if queries else np.zeros((0, 3), np.float32)
    return {"query_points": q.reshape(-1, 3), "target_points": tracks.reshape(-1, T, 2),
            "occluded": occluded.reshape(-1, T), "trackgroup": group.astype(np.int64)}


def sample_queries_first(
    points: np.ndarray, occluded: np.ndarray, size: int | tuple[int, int] = (256, 256),
) -> dict[str, np.ndarray]:
    """One query per track, at its first visible frame (TAP-Vid "query first").

    Args:
        points: normalised ``(x, y)`` ``[n, T, 2]``; occluded: ``bool [n, T]``.
        size: ``(H, W)`` of the frame the pixel coordinates refer to (an int: square).

    Returns:
        ``{"query_points": float32 [n', 3] (t, y, x) pixels, "target_points": float32 [n', T, 2]
        (x, y) pixels, "occluded": bool [n', T], "trackgroup": int64 [n']}`` (index of the source
        track); tracks never visible are dropped (``n' <= n``), the others keep their order.
    """
    points, occluded = _tracks(points, occluded)
    h, w = size_hw(size, "size")
    pixels = points * np.array([w, h], np.float32)
    keep = np.flatnonzero((~occluded).any(axis=1))
    first = np.argmax(~occluded[keep], axis=1)
    xy = pixels[keep, first]
    queries = [np.stack([first.astype(np.float32), xy[:, 1], xy[:, 0]], axis=-1)]
    return _pack(queries, pixels[keep], occluded[keep], keep)


def sample_queries_strided(
    points: np.ndarray, occluded: np.ndarray, size: int | tuple[int, int] = (256, 256), stride: int = 5,
) -> dict[str, np.ndarray]:
    """Queries at frames ``0, stride, 2*stride, ...`` for every track visible there (TAP-Vid "strided").

    Queries are grouped by query frame, then by track index, exactly as tapnet orders them; a track
    yields one query (and one copy of its target track) per query frame where it is visible.  Same
    arguments and outputs as :func:`sample_queries_first`.
    """
    points, occluded = _tracks(points, occluded)
    h, w = size_hw(size, "size")
    stride = int_at_least(stride, "stride")
    pixels = points * np.array([w, h], np.float32)
    queries, groups = [], []
    for t in range(0, occluded.shape[1], stride):
        idx = np.flatnonzero(~occluded[:, t])
        queries.append(np.stack([np.full(idx.size, t, np.float32), pixels[idx, t, 1], pixels[idx, t, 0]], -1))
        groups.append(idx)
    group = np.concatenate(groups) if groups else np.zeros(0, np.int64)
    return _pack(queries, pixels[group], occluded[group], group)


def tapvid_queries(
    record: Mapping[str, Any], query_mode: str, size: int | tuple[int, int] = (256, 256), stride: int = 5,
) -> dict[str, np.ndarray]:
    """Benchmark queries and targets for one record (``query_mode`` ``"first"`` or ``"strided"``)."""
    if query_mode not in QUERY_MODES:
        raise ValueError(f"unknown query_mode {query_mode!r}; expected one of {QUERY_MODES}")
    if query_mode == "first":
        return sample_queries_first(record["points"], record["occluded"], size)
    return sample_queries_strided(record["points"], record["occluded"], size, stride)


def resize_video(video: np.ndarray, size: int | tuple[int, int], chunk: int = 32) -> torch.Tensor:
    """``uint8 [T, H, W, 3]`` -> ``float32 [T, 3, h, w]`` in ``[0, 1]``, the whole frame resized.

    Bilinear ``F.interpolate`` (``antialias=True`` when either side shrinks), ``chunk`` frames at a
    time to bound memory.  Normalised track coordinates are unchanged by this resize.
    """
    if isinstance(video, torch.Tensor):
        video = video.numpy()
    ok = isinstance(video, np.ndarray) and video.dtype == np.uint8 and video.ndim == 4
    if not ok or video.shape[-1] != 3:
        raise ValueError(f"video must be a uint8 array [T, H, W, 3], got "
                         f"{getattr(video, 'dtype', type(video).__name__)} {getattr(video, 'shape', '')}")
    h, w = size_hw(size, "size")
    T, H, W, _ = video.shape
    frames = torch.from_numpy(np.ascontiguousarray(video)).permute(0, 3, 1, 2)
    if (h, w) == (H, W):
        return frames.float().div_(255.0)
    out = torch.empty((T, 3, h, w), dtype=torch.float32)
    for s in range(0, T, chunk):
        x = frames[s:s + chunk].float().div_(255.0)
        y = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=(h < H or w < W))
        out[s:s + chunk] = y.clamp_(0.0, 1.0)
    return out


def _swap(q: Any, first: Any, second: Any) -> Any:
    cols = [q[..., 0], first, second]
    return torch.stack(cols, -1) if isinstance(q, torch.Tensor) else np.stack(cols, -1)


def to_model_queries(query_points_tyx: Any, size: int | tuple[int, int] = (256, 256)) -> Any:
    """tapnet ``(t, y, x)`` pixels of a ``size`` = ``(H, W)`` frame -> model ``(t, x, y)`` normalised.

    Works on numpy arrays and torch tensors of shape ``[..., 3]``; ``t`` is passed through.
    """
    h, w = size_hw(size, "size")
    q = query_points_tyx
    return _swap(q, q[..., 2] / w, q[..., 1] / h)


def from_model_queries(query_points_txy: Any, size: int | tuple[int, int] = (256, 256)) -> Any:
    """Inverse of :func:`to_model_queries`: model ``(t, x, y)`` normalised -> ``(t, y, x)`` pixels."""
    h, w = size_hw(size, "size")
    q = query_points_txy
    return _swap(q, q[..., 2] * h, q[..., 1] * w)


def collate_tracks(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch :class:`TrackingDataset` samples: the keys of
    :func:`~trecvit.data.datasets.collate_videos` (``video``, ``label``, ``index``, ``failed``) plus
    the track keys stacked (``None`` when every sample failed)."""
    out = collate_videos(batch)
    good = [s for s in batch if s.get("video") is not None]
    for key in TRACK_KEYS:
        if not good:
            out[key] = None
            continue
        shapes = {tuple(s[key].shape) for s in good}
        if len(shapes) > 1:
            raise ValueError(f"cannot batch {key} of different shapes {sorted(shapes)}")
        out[key] = default_collate([s[key] for s in good])
    return out


def _pad_rows(arrays: list[np.ndarray], k: int, num_points: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Pad ``k`` rows to ``num_points`` with copies of real rows (zeros if none); a ``valid`` mask."""
    valid = np.zeros(num_points, np.bool_)
    valid[:k] = True
    if k == num_points:
        return arrays, valid
    out = []
    for a in arrays:
        pad = a[np.arange(num_points - k) % k] if k else np.zeros((num_points,) + a.shape[1:], a.dtype)
        if a.dtype == np.bool_ and not k:
            pad[:] = True  # no real row to copy: padded tracks are "occluded" everywhere
        out.append(np.concatenate([a[:k], pad]))
    return out, valid


class TrackingDataset(Dataset):
    """Point-tracking clips from canonical records, for training and evaluation.

    Item ``i`` is ``{"video": float32 [T, 3, h, w] in [0, 1], "label": 0, "index": i,
    "query_points": float32 [num_points, 3] (t, x, y) normalised, "target_points": float32
    [num_points, T, 2] normalised (x, y), "occluded": bool [num_points, T], "valid": bool
    [num_points]}`` (torch tensors).  Rows with ``valid=False`` pad the sample to ``num_points``;
    they copy a real row (so values are finite) and must be masked out of losses and metrics.

    * ``train=True``: ``num_frames`` consecutive frames at a random offset (``None``: the whole
      video), then up to ``num_points`` distinct tracks visible in at least one frame of the clip,
      each queried at a frame drawn uniformly among those where it is visible (as TAPIR trains on
      Kubric).
    * ``train=False``: the first ``num_frames`` frames (``None`` or a shorter video: all of them),
      queries by ``query_mode`` (see :func:`tapvid_queries`), the first ``num_points`` kept.  For the
      full benchmark (every query) use :func:`tapvid_queries` directly.

    Randomness: item ``i`` draws from ``np.random.default_rng([seed, epoch, i])``, so a sample is a
    pure function of ``(seed, epoch, i)`` whichever worker loads it; call :meth:`set_epoch`.
    """

    num_classes = 1
    classes = ["tracks"]
    collate = staticmethod(collate_tracks)

    def __init__(
        self, records: Mapping[str, Mapping[str, Any]] | Sequence[Mapping[str, Any]], *,
        num_frames: int | None, image_size: int | tuple[int, int], num_points: int, train: bool,
        seed: int = 0, query_mode: str = "first", stride: int = 5,
    ) -> None:
        if query_mode not in QUERY_MODES:
            raise ValueError(f"unknown query_mode {query_mode!r}; expected one of {QUERY_MODES}")
        items = records.items() if isinstance(records, Mapping) else (
            (r.get("name", f"record_{i}") if isinstance(r, Mapping) else i, r) for i, r in enumerate(records))
        self.records = [validate_record(r, name=str(n)) for n, r in items]
        if not self.records:
            raise ValueError("TrackingDataset needs at least one record")
        self.names = [r["name"] for r in self.records]
        self.num_frames = None if num_frames is None else int_at_least(num_frames, "num_frames")
        self.image_size = size_hw(image_size, "image_size")
        self.num_points = int_at_least(num_points, "num_points")
        self.seed = int_at_least(seed, "seed", 0)
        self.stride = int_at_least(stride, "stride")
        self.train, self.query_mode, self.epoch = bool(train), query_mode, 0
        if self.train and self.num_frames is not None:
            lengths = [(r["name"], r["video"].shape[0]) for r in self.records]
            short = [(n, t) for n, t in lengths if t < self.num_frames]
            if short:
                raise ValueError(f"num_frames={self.num_frames} but {len(short)} record(s) are shorter, "
                                 f"e.g. {short[:3]} (name, frames)")

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch that, with ``seed`` and the index, seeds each item's randomness."""
        self.epoch = int_at_least(epoch, "epoch", 0)

    def _train_tracks(self, rng: np.random.Generator, pts: np.ndarray, occ: np.ndarray):
        candidates = np.flatnonzero((~occ).any(axis=1))
        k = min(self.num_points, candidates.size)
        chosen = rng.choice(candidates, size=k, replace=False) if k else candidates[:0]
        t = np.array([rng.choice(np.flatnonzero(~occ[p])) for p in chosen], dtype=np.int64)
        xy = pts[chosen, t] if k else np.zeros((0, 2), np.float32)
        queries = np.concatenate([t[:, None].astype(np.float32), xy], axis=1)
        return queries, pts[chosen], occ[chosen], k

    def _eval_tracks(self, pts: np.ndarray, occ: np.ndarray):
        s = tapvid_queries({"points": pts, "occluded": occ}, self.query_mode, size=(1, 1), stride=self.stride)
        n = self.num_points
        queries = to_model_queries(s["query_points"][:n], (1, 1)).astype(np.float32)
        return queries, s["target_points"][:n], s["occluded"][:n], min(n, len(queries))

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not 0 <= i < len(self.records):
            raise IndexError(f"index {i} out of range for {len(self.records)} records")
        rec = self.records[i]
        T = rec["video"].shape[0]
        length = T if self.num_frames is None else min(self.num_frames, T)
        rng = np.random.default_rng([self.seed, self.epoch, int(i)])
        start = int(rng.integers(0, T - length + 1)) if self.train else 0
        clip = slice(start, start + length)
        pts, occ = rec["points"][:, clip], rec["occluded"][:, clip]
        sampled = self._train_tracks(rng, pts, occ) if self.train else self._eval_tracks(pts, occ)
        queries, targets, occluded, k = sampled
        (queries, targets, occluded), valid = _pad_rows([queries, targets, occluded], k, self.num_points)
        return {
            "video": resize_video(rec["video"][clip], self.image_size),
            "label": 0,
            "index": int(i),
            "query_points": torch.from_numpy(np.ascontiguousarray(queries, np.float32)),
            "target_points": torch.from_numpy(np.ascontiguousarray(targets, np.float32)),
            "occluded": torch.from_numpy(np.ascontiguousarray(occluded, np.bool_)),
            "valid": torch.from_numpy(valid),
        }
