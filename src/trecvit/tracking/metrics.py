"""The TAP-Vid point-tracking metrics (Doersch et al., 2022, "TAP-Vid: A Benchmark for Tracking
Any Point in a Video"), in numpy, with the benchmark's own conventions and names.

For every query point a tracker predicts, on every frame, a position and whether the point is
occluded. Per video (summed over all its points and evaluated frames):

* ``occlusion_accuracy``: the fraction of evaluated frames whose predicted occlusion flag equals
  the ground truth's.
* ``pts_within_{δ}``: among evaluated frames where the point is visible in the ground truth, the
  fraction whose predicted position lies within ``δ`` pixels, whatever the predicted flag says.
* ``jaccard_{δ}``: TP / (TP + FP + FN). A true positive is visible in both ground truth and
  prediction and within ``δ``; a false negative is visible in the ground truth but not a true
  positive; a false positive is predicted visible but either occluded in the ground truth or
  farther than ``δ`` (so a visible, far prediction of a visible point is both an FN and an FP).
* ``average_jaccard`` (AJ) and ``average_pts_within_thresh`` (``<δ avg``): the means of the above
  over the thresholds, by default δ = 1, 2, 4, 8, 16.

Conventions (as in the benchmark): ``query_points`` are ``(t, y, x)`` while tracks are
``(x, y)``; coordinates are pixels of a 256 x 256 frame (rescale first: the thresholds are in
those pixels); the query frame is ``t`` rounded to the nearest integer; thresholds are strict (a
point counts as within δ when its distance is < δ, compared as squared distance < δ²). In
``query_mode="first"`` only the frames after the query frame are evaluated (the benchmark assumes
that the point is unseen before its first visible frame); in ``"strided"`` every frame but the
query frame itself.

Undefined values (the NaN rule): a ratio whose denominator is 0 is NaN in the per-video arrays,
as the benchmark's arithmetic gives. A video with no evaluated frame has every metric NaN; one
with no evaluated frame visible in the ground truth has ``pts_within_*`` NaN, and ``jaccard_*``
NaN only if nothing was predicted visible either (with a false positive it is 0/FP = 0); an
average over thresholds is NaN when one of its terms is. :func:`average_metrics` averages each
metric over the videos where it is defined, reports how many videos were left out of some mean
(``num_videos_undefined``), and gives NaN for a metric defined for no video only together with a
``RuntimeWarning`` -- never a silent NaN.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np

DEFAULT_THRESHOLDS: tuple[int, ...] = (1, 2, 4, 8, 16)
QUERY_MODES = ("first", "strided")


def _metric_names(thresholds: Sequence[float]) -> tuple[str, ...]:
    keys = [f"{t:g}" for t in thresholds]
    return ("average_jaccard", "average_pts_within_thresh", "occlusion_accuracy",
            *(f"jaccard_{k}" for k in keys), *(f"pts_within_{k}" for k in keys))


#: The keys :func:`compute_tapvid_metrics` returns with the default thresholds, in a stable order.
METRIC_NAMES: tuple[str, ...] = _metric_names(DEFAULT_THRESHOLDS)


def _as_flags(x: object, name: str, shape: tuple[int, ...]) -> np.ndarray:
    a = np.asarray(x)
    if a.shape != shape:
        raise ValueError(f"{name} must have shape [b, n, T] = {list(shape)} (from gt_occluded), "
                         f"got {list(a.shape)}")
    if a.dtype == np.bool_:
        return a
    if a.dtype.kind not in "iuf" or not np.all((a == 0) | (a == 1)):
        raise ValueError(f"{name} must be boolean (True = occluded), or numbers that are all 0 or 1; "
                         f"got dtype {a.dtype}")
    return a.astype(bool)


def _as_tracks(x: object, name: str, shape: tuple[int, ...]) -> np.ndarray:
    a = np.asarray(x)
    if a.shape != shape:
        raise ValueError(f"{name} must have shape [b, n, T, 2] = {list(shape)} as (x, y), "
                         f"got {list(a.shape)}")
    if a.dtype.kind not in "iuf":
        raise ValueError(f"{name} must hold real numbers (pixels, (x, y)), got dtype {a.dtype}")
    return a


def _check_thresholds(thresholds: Sequence[float]) -> tuple[float, ...]:
    try:
        values = tuple(float(t) for t in thresholds)
    except (TypeError, ValueError) as e:
        raise ValueError(f"thresholds must be a sequence of positive numbers, got {thresholds!r}") from e
    if not values or not all(np.isfinite(t) and t > 0 for t in values):
        raise ValueError(f"thresholds must be a non-empty sequence of positive, finite numbers "
                         f"(pixels), got {thresholds!r}")
    if len({f"{t:g}" for t in values}) != len(values):
        raise ValueError(f"thresholds must be distinct, got {thresholds!r}")
    return values


def compute_tapvid_metrics(query_points: np.ndarray, gt_occluded: np.ndarray, gt_tracks: np.ndarray,
                           pred_occluded: np.ndarray, pred_tracks: np.ndarray, query_mode: str,
                           thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> dict[str, np.ndarray]:
    """The TAP-Vid metrics of a batch of videos, one value per video.

    Args:
        query_points: ``[b, n, 3]`` as ``(t, y, x)``; only ``t`` (rounded) is used.
        gt_occluded: ``[b, n, T]`` bool, True where the point is occluded.
        gt_tracks: ``[b, n, T, 2]`` as ``(x, y)`` in 256 x 256 pixels; must be finite where visible.
        pred_occluded: ``[b, n, T]`` bool, the predicted occlusion flags.
        pred_tracks: ``[b, n, T, 2]`` as ``(x, y)``, finite.
        query_mode: ``"first"`` (evaluate the frames after the query frame) or ``"strided"`` (every
            frame but the query frame).
        thresholds: the pixel thresholds δ (strict: distance < δ).

    Returns:
        A dict of float64 arrays ``[b]``, keys as :data:`METRIC_NAMES` (with ``{δ:g}`` for custom
        thresholds). Undefined ratios (0/0) are NaN; see the module docstring.

    Raises:
        ValueError: on a wrong rank, shape or dtype, a query frame outside ``[0, T)``, non-finite
            predictions, an unknown ``query_mode`` or non-positive thresholds.
    """
    if query_mode not in QUERY_MODES:
        raise ValueError(f"query_mode must be 'first' or 'strided', got {query_mode!r}")
    thr = _check_thresholds(thresholds)
    gt_occ = np.asarray(gt_occluded)
    if gt_occ.ndim != 3:
        raise ValueError(f"gt_occluded must have shape [b, n, T] (rank 3), got {list(gt_occ.shape)}")
    b, n, T = gt_occ.shape
    gt_occ = _as_flags(gt_occ, "gt_occluded", (b, n, T))
    pred_occ = _as_flags(pred_occluded, "pred_occluded", (b, n, T))
    gt = _as_tracks(gt_tracks, "gt_tracks", (b, n, T, 2))
    pred = _as_tracks(pred_tracks, "pred_tracks", (b, n, T, 2))
    queries = np.asarray(query_points)
    if queries.shape != (b, n, 3):
        raise ValueError(f"query_points must have shape [b, n, 3] = {[b, n, 3]} as (t, y, x), "
                         f"got {list(queries.shape)}")
    if queries.dtype.kind not in "iuf":
        raise ValueError(f"query_points must hold real numbers (t, y, x), got dtype {queries.dtype}")
    if not np.all(np.isfinite(pred)):
        raise ValueError(f"pred_tracks must be finite: {int(np.sum(~np.isfinite(pred)))} value(s) "
                         "are NaN or infinite")
    if not np.all(np.isfinite(gt)[~gt_occ]):
        raise ValueError("gt_tracks must be finite wherever gt_occluded is False")
    t = queries[..., 0]
    if not np.all(np.isfinite(t)):
        raise ValueError("query_points[..., 0] (the query frame t) must be finite")
    query_frame = np.round(t).astype(np.int64)
    if np.any((query_frame < 0) | (query_frame >= T)):
        bad = query_frame[(query_frame < 0) | (query_frame >= T)]
        raise ValueError(f"query_points[..., 0] (the query frame t, rounded) must lie in [0, T) = "
                         f"[0, {T}), got {bad.tolist()[:5]}")

    frames = np.arange(T)
    if query_mode == "first":
        evaluated = frames > query_frame[..., None]
    else:
        evaluated = frames != query_frame[..., None]
    visible = ~gt_occ & evaluated
    pred_visible = ~pred_occ & evaluated
    # the benchmark's arithmetic: squared distance against squared threshold, in the inputs' float type
    dtype = np.result_type(gt.dtype, pred.dtype, np.float32)
    sq_dist = np.sum(np.square(pred.astype(dtype) - gt.astype(dtype)), axis=-1)

    def count(mask: np.ndarray) -> np.ndarray:
        return np.sum(mask, axis=(1, 2), dtype=np.int64)

    metrics: dict[str, np.ndarray] = {}
    n_visible = count(visible)
    with np.errstate(invalid="ignore", divide="ignore"):
        metrics["occlusion_accuracy"] = count((pred_occ == gt_occ) & evaluated) / count(evaluated)
        jaccards, withins = [], []
        for delta in thr:
            within = sq_dist < delta * delta
            correct = within & visible
            true_pos = count(correct & pred_visible)
            false_pos = count(pred_visible & (gt_occ | ~within))
            withins.append(count(correct) / n_visible)
            # TP + FN is every visible ground-truth point
            jaccards.append(true_pos / (n_visible + false_pos))
    for delta, jac, frac in zip(thr, jaccards, withins):
        metrics[f"jaccard_{delta:g}"] = jac
        metrics[f"pts_within_{delta:g}"] = frac
    metrics["average_jaccard"] = np.mean(np.stack(jaccards), axis=0)
    metrics["average_pts_within_thresh"] = np.mean(np.stack(withins), axis=0)
    return {k: metrics[k].astype(np.float64) for k in _metric_names(thr)}


def average_metrics(metrics: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Benchmark means of per-video metrics (as from :func:`compute_tapvid_metrics`).

    Each metric is averaged over the videos where it is defined (not NaN). The result also holds
    ``num_videos`` (every video) and ``num_videos_undefined`` (the videos left out of at least one
    mean because a metric was NaN for them). A metric defined for no video has mean NaN, and a
    ``RuntimeWarning`` names it.

    Raises:
        ValueError: when the arrays are not all 1-D of the same length.
    """
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in metrics.items()}
    lengths = {a.shape for a in arrays.values()}
    if len(lengths) > 1 or any(len(s) != 1 for s in lengths):
        raise ValueError("metrics must map names to per-video arrays [b] of one length, got shapes "
                         + ", ".join(f"{k}: {list(a.shape)}" for k, a in arrays.items()))
    b = next(iter(lengths))[0] if lengths else 0
    undefined = np.zeros(b, dtype=bool)
    out: dict[str, float] = {}
    empty = []
    for key, a in arrays.items():
        defined = ~np.isnan(a)
        undefined |= ~defined
        if defined.any():
            out[key] = float(np.mean(a[defined]))
        else:
            out[key] = float("nan")
            empty.append(key)
    if empty:
        warnings.warn(f"no video has a defined value of {', '.join(empty)} (every one is 0/0: no "
                      f"evaluated frame, or none visible in the ground truth, among {b} video(s)); "
                      "their means are NaN", RuntimeWarning, stacklevel=2)
    out["num_videos"] = int(b)
    out["num_videos_undefined"] = int(undefined.sum())
    return out


def _pct(x: float) -> str:
    return "-" if np.isnan(x) else f"{100.0 * x:.1f}"


def format_metrics_table(per_video: Mapping[str, np.ndarray], names: list[str] | None = None,
                         mean: Mapping[str, float] | None = None) -> str:
    """A plain-text table of per-video metrics: one row per video and a ``mean`` row.

    Columns: ``AJ`` (average_jaccard), ``<δ avg`` (average_pts_within_thresh), ``OA`` (occlusion
    accuracy) and ``J@δ`` for each ``jaccard_δ``, as percentages with one decimal; NaN is ``-``.
    Rows are named by ``names`` (default ``video 0``, ``video 1``, ...). ``mean`` defaults to
    :func:`average_metrics` of ``per_video`` (means over the defined videos).
    """
    columns = [("AJ", "average_jaccard"), ("<δ avg", "average_pts_within_thresh"),
               ("OA", "occlusion_accuracy")]
    columns += [(f"J@{k[len('jaccard_'):]}", k) for k in per_video if k.startswith("jaccard_")]
    missing = [k for _, k in columns if k not in per_video]
    if missing:
        raise ValueError(f"per_video lacks the metric(s) {missing}")
    b = len(np.asarray(per_video["average_jaccard"]))
    if names is None:
        names = [f"video {i}" for i in range(b)]
    if len(names) != b:
        raise ValueError(f"names must name each of the {b} videos, got {len(names)} name(s)")
    if mean is None:
        mean = average_metrics(per_video)
    rows = [[str(name)] + [_pct(float(np.asarray(per_video[k])[i])) for _, k in columns]
            for i, name in enumerate(names)]
    rows.append(["mean"] + [_pct(float(mean.get(k, float("nan")))) for _, k in columns])
    header = ["video"] + [h for h, _ in columns]
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join([cells[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:])])

    rule = "-" * len(line(header))
    return "\n".join([line(header), rule, *(line(r) for r in rows[:-1]), rule, line(rows[-1])])
