"""TAP-Vid evaluation of a point tracker (or of the static-point baseline) on records in memory.

A video is scored as the benchmark does (:mod:`trecvit.tracking.metrics`): its
queries are sampled by the query mode (``first``: each point's first visible
frame; ``strided``: every 5th frame), its frames are resized to the model's
size (normalised tracks do not change under a resize of the whole frame), the
tracker runs causally over the whole video, and its tracks, scaled to a
256 x 256 frame, are compared with the truth. The **static** baseline predicts
every point visible, where it was queried, in every frame.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from trecvit.tracking.data import resize_video, tapvid_queries
from trecvit.tracking.loss import FRAME_PIXELS
from trecvit.tracking.metrics import (METRIC_NAMES, average_metrics, compute_tapvid_metrics,
                                      format_metrics_table)
from trecvit.tracking.model import PointTracker

BASELINES = ("static",)


@dataclass
class TrackingResult:
    """Per-video TAP-Vid metrics and their means.

    Attributes:
        names: the videos, in order.
        per_video: ``{metric: float64 [num_videos]}`` (NaN where a metric is undefined for a video).
        mean: :func:`~trecvit.tracking.metrics.average_metrics` of ``per_video`` (with
            ``num_videos`` and ``num_videos_undefined``).
        query_mode: ``"first"`` or ``"strided"``.
        num_queries: query points scored, over all videos.
        frames_per_second: frames tracked per second of model time (0 for a baseline).
    """

    names: list[str]
    per_video: dict[str, np.ndarray]
    mean: dict[str, float]
    query_mode: str
    num_queries: int = 0
    frames_per_second: float = 0.0
    skipped: list[str] = field(default_factory=list)  # videos without a single query point

    @property
    def average_jaccard(self) -> float:
        return self.mean.get("average_jaccard", math.nan)

    def table(self) -> str:
        """The per-video table with the mean row (percentages)."""
        return format_metrics_table(self.per_video, self.names, self.mean)

    def to_dict(self) -> dict:
        return {"query_mode": self.query_mode, "num_queries": self.num_queries,
                "frames_per_second": self.frames_per_second, "skipped": self.skipped,
                "mean": {k: (None if isinstance(v, float) and math.isnan(v) else v)
                         for k, v in self.mean.items()},
                "videos": {name: {k: (None if math.isnan(float(v[i])) else float(v[i]))
                                  for k, v in self.per_video.items()} for i, name in enumerate(self.names)}}


def result_from_rows(rows: list[tuple[str, dict[str, float]]], query_mode: str, num_queries: int = 0,
                     frames_per_second: float = 0.0, skipped: list[str] | None = None) -> TrackingResult:
    """A :class:`TrackingResult` from ``(name, {metric: value})`` rows, one per video."""
    names = [name for name, _ in rows]
    per_video = {k: np.array([row[k] for _, row in rows], dtype=np.float64) for k in METRIC_NAMES}
    mean = average_metrics(per_video) if rows else {k: math.nan for k in METRIC_NAMES}
    if not rows:
        mean.update(num_videos=0, num_videos_undefined=0)
    return TrackingResult(names, per_video, mean, query_mode, num_queries, frames_per_second,
                          list(skipped or []))


@torch.no_grad()
def predict_tracks(model: PointTracker | None, video: torch.Tensor, query_points: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Tracks of ``query_points [n, 3]`` (TAP-Vid's ``(t, y, x)`` in a 256 x 256 frame) through
    ``video [T, 3, H, W]`` (the model's size): ``(pred_tracks [n, T, 2] (x, y) in 256 pixels,
    pred_occluded [n, T])``. ``model`` ``None``: the static baseline."""
    num_frames = video.shape[0]
    n = query_points.shape[0]
    if model is None:
        xy = query_points[:, None, [2, 1]].repeat(num_frames, axis=1)
        return xy.astype(np.float32), np.zeros((n, num_frames), dtype=bool)
    queries = torch.from_numpy(np.stack([query_points[:, 0], query_points[:, 2] / FRAME_PIXELS,
                                         query_points[:, 1] / FRAME_PIXELS], axis=-1)).float()
    queries[..., 1:] = queries[..., 1:].clamp(0.0, 1.0)
    device = model.device
    out = model(video[None].to(device), queries[None].to(device))
    tracks = (out.positions[0].float() * FRAME_PIXELS).cpu().numpy()
    return tracks, ~out.visible[0].cpu().numpy()


def evaluate_tracker(model: PointTracker | None,
                     records: Iterable[tuple[str, Mapping]] | Mapping[str, Mapping],
                     *, query_mode: str = "first", image_size: int | tuple[int, int] | None = None,
                     num_frames: int | None = None, device: torch.device | str | None = None,
                     progress: bool = False, rank: int = 0, world_size: int = 1) -> TrackingResult:
    """TAP-Vid metrics of ``model`` (``None``: the static baseline) on ``records`` (``{name:
    record}`` or ``(name, record)`` pairs in the TAP-Vid record format).

    Args:
        query_mode: ``"first"`` or ``"strided"`` (:func:`~trecvit.tracking.data.tapvid_queries`).
        image_size: frames are resized to this (default: the model's ``image_size``; 256 for
            the baseline, whose result does not depend on it).
        num_frames: score the first ``num_frames`` frames of each video only (default: all).
        rank, world_size: score every ``world_size``-th video from ``rank`` (a process's share).
    """
    import time

    if model is not None:
        was_training = model.training
        model.eval()
        image_size = image_size or model.config.encoder.image_hw
        if device is not None and torch.device(device) != model.device:
            raise ValueError(f"the model is on {model.device}, not {device}")
    image_size = image_size or 256
    items = records.items() if isinstance(records, Mapping) else records
    rows: list[tuple[str, dict[str, float]]] = []
    skipped: list[str] = []
    num_queries, frames, seconds = 0, 0, 0.0
    for i, (name, record) in enumerate(tqdm(items, desc="tracking", leave=False, disable=not progress)):
        if i % world_size != rank:
            continue
        if num_frames is not None:
            record = {k: (v[:num_frames] if k == "video" else v[:, :num_frames] if k in ("points", "occluded")
                          else v) for k, v in record.items()}
        queries = tapvid_queries(record, query_mode)
        if queries["query_points"].shape[0] == 0:
            skipped.append(str(name))
            continue
        video = resize_video(record["video"], image_size)
        start = time.perf_counter()
        tracks, occluded = predict_tracks(model, video, queries["query_points"])
        seconds += time.perf_counter() - start
        frames += video.shape[0]
        metrics = compute_tapvid_metrics(queries["query_points"][None], queries["occluded"][None],
                                         queries["target_points"][None], occluded[None], tracks[None],
                                         query_mode)
        rows.append((str(name), {k: float(v[0]) for k, v in metrics.items()}))
        num_queries += queries["query_points"].shape[0]
    if model is not None:
        model.train(was_training)
    fps = frames / seconds if model is not None and seconds > 0 else 0.0
    return result_from_rows(rows, query_mode, num_queries, fps, skipped)
