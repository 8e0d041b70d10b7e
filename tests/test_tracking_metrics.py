"""The TAP-Vid metrics: the benchmark's own check vector, a slow loop-by-loop reference on random
cases, the NaN rule of the averages, input errors and the text table."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from trecvit.tracking.metrics import (
    METRIC_NAMES,
    average_metrics,
    compute_tapvid_metrics,
    format_metrics_table,
)


def _check_case(query_frame: float):
    """One video, one track, 4 frames: gt at (10, 10), occluded at frame 2; all predicted visible."""
    query = np.array([[[query_frame, 10.0, 10.0]]])
    gt_occ = np.array([[[False, False, True, False]]])
    gt = np.full((1, 1, 4, 2), 10.0)
    pred_occ = np.zeros((1, 1, 4), dtype=bool)
    pred = np.array([[[[10.0, 10.0], [10.5, 10.0], [50.0, 50.0], [13.0, 10.0]]]])
    return query, gt_occ, gt, pred_occ, pred


def test_check_vector_query_at_frame_0():
    for mode in ("first", "strided"):  # frame 0 is the first: both modes evaluate frames 1, 2, 3
        m = compute_tapvid_metrics(*_check_case(0), query_mode=mode)
        assert tuple(m) == METRIC_NAMES
        assert all(v.shape == (1,) and v.dtype == np.float64 for v in m.values())
        assert m["occlusion_accuracy"][0] == pytest.approx(2 / 3)
        assert [m[f"pts_within_{d}"][0] for d in (1, 2, 4, 8, 16)] == pytest.approx([0.5, 0.5, 1, 1, 1])
        assert m["average_pts_within_thresh"][0] == pytest.approx(0.8)
        assert [m[f"jaccard_{d}"][0] for d in (1, 2, 4, 8, 16)] == pytest.approx([0.25, 0.25, 2 / 3, 2 / 3, 2 / 3])
        assert m["average_jaccard"][0] == pytest.approx(0.5)


def test_check_vector_query_at_frame_1():
    first = compute_tapvid_metrics(*_check_case(1), query_mode="first")  # frames 2, 3
    assert first["occlusion_accuracy"][0] == pytest.approx(0.5)
    assert first["average_jaccard"][0] == pytest.approx(0.3)
    assert first["average_pts_within_thresh"][0] == pytest.approx(0.6)
    strided = compute_tapvid_metrics(*_check_case(1), query_mode="strided")  # frames 0, 2, 3
    assert strided["occlusion_accuracy"][0] == pytest.approx(2 / 3)
    assert strided["average_jaccard"][0] == pytest.approx(0.5)
    assert strided["average_pts_within_thresh"][0] == pytest.approx(0.8)
    # the query frame is t rounded: 0.6 is frame 1
    rounded = compute_tapvid_metrics(*_check_case(0.6), query_mode="first")
    assert rounded["average_jaccard"][0] == pytest.approx(0.3)


def _slow_metrics(query, gt_occ, gt, pred_occ, pred, mode, thresholds):
    """The definitions, one video, point and frame at a time."""
    b, n, T = gt_occ.shape
    out = {k: [] for k in ["occlusion_accuracy", "average_jaccard", "average_pts_within_thresh"]}

    def ratio(num, den):
        return num / den if den else math.nan

    for v in range(b):
        evaluated = agree = visible = 0
        tp = dict.fromkeys(thresholds, 0)
        fp = dict.fromkeys(thresholds, 0)
        fn = dict.fromkeys(thresholds, 0)
        near = dict.fromkeys(thresholds, 0)
        for p in range(n):
            q = int(round(float(query[v, p, 0])))
            for t in range(T):
                if t == q or (mode == "first" and t < q):
                    continue
                evaluated += 1
                g_vis, p_vis = not gt_occ[v, p, t], not pred_occ[v, p, t]
                agree += g_vis == p_vis
                visible += g_vis
                dx = float(pred[v, p, t, 0]) - float(gt[v, p, t, 0])
                dy = float(pred[v, p, t, 1]) - float(gt[v, p, t, 1])
                for d in thresholds:
                    close = dx * dx + dy * dy < d * d
                    if g_vis and close:
                        near[d] += 1
                    if g_vis and p_vis and close:
                        tp[d] += 1
                    else:
                        fn[d] += g_vis
                        fp[d] += p_vis
        out["occlusion_accuracy"].append(ratio(agree, evaluated))
        jac = [ratio(tp[d], tp[d] + fp[d] + fn[d]) for d in thresholds]
        within = [ratio(near[d], visible) for d in thresholds]
        for d, j, w in zip(thresholds, jac, within):
            out.setdefault(f"jaccard_{d:g}", []).append(j)
            out.setdefault(f"pts_within_{d:g}", []).append(w)
        out["average_jaccard"].append(sum(jac) / len(jac))
        out["average_pts_within_thresh"].append(sum(within) / len(within))
    return {k: np.array(v) for k, v in out.items()}


def _random_case(rng: np.random.Generator):
    b, n, T = rng.integers(1, 4), rng.integers(1, 6), rng.integers(1, 9)
    query = np.stack([rng.integers(0, T, (b, n)) + rng.uniform(-0.4, 0.4, (b, n)),
                      rng.uniform(0, 256, (b, n)), rng.uniform(0, 256, (b, n))], axis=-1)
    query[..., 0] = np.clip(query[..., 0], 0, T - 1)
    gt_occ = rng.random((b, n, T)) < rng.uniform(0, 0.7)
    pred_occ = rng.random((b, n, T)) < rng.uniform(0, 0.7)
    # some points occluded on every frame after their query frame
    gone = rng.random((b, n)) < 0.3
    after = np.arange(T) > np.round(query[..., 0])[..., None]
    gt_occ |= gone[..., None] & after
    gt = rng.uniform(0, 256, (b, n, T, 2))
    scale = rng.choice([0.3, 1.0, 3.0, 6.0, 12.0, 40.0], size=(b, n, T, 1))
    pred = gt + scale * rng.normal(size=(b, n, T, 2))
    # exact boundary distances: integer gt, offsets of exactly 1, 2, 4, 8, 16 (not within: strict)
    edge = rng.random((b, n, T)) < 0.3
    gt[edge] = np.round(gt[edge])
    offset = rng.choice([1.0, 2.0, 4.0, 8.0, 16.0], size=(b, n, T))
    axis = rng.integers(0, 2, (b, n, T))
    exact = gt.copy()
    exact[..., 0] += np.where(axis == 0, offset, 0.0)
    exact[..., 1] -= np.where(axis == 1, offset, 0.0)
    pred = np.where(edge[..., None], exact, pred)
    return query, gt_occ, gt, pred_occ, pred


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("mode", ["first", "strided"])
def test_matches_slow_reference(seed, mode):
    rng = np.random.default_rng(seed)
    for _ in range(4):
        case = _random_case(rng)
        thresholds = (1, 2, 4, 8, 16) if seed % 2 == 0 else (3, 0.5, 10)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # 0/0 is NaN without numpy's warnings
            fast = compute_tapvid_metrics(*case, query_mode=mode, thresholds=thresholds)
        slow = _slow_metrics(*case, mode, thresholds)
        assert sorted(fast) == sorted(slow)
        for k in slow:
            np.testing.assert_allclose(fast[k], slow[k], rtol=1e-12, atol=0, err_msg=k)


def test_strict_thresholds_at_the_boundary():
    query, gt_occ, gt, pred_occ, pred = _check_case(0)
    pred = gt.copy()
    pred[0, 0, :, 0] += [0.0, 4.0, 0.0, 2.0]  # exactly 4 and 2 pixels away
    gt_occ[:] = False
    m = compute_tapvid_metrics(query, gt_occ, gt, pred_occ, pred, "first")
    assert [m[f"pts_within_{d}"][0] for d in (1, 2, 4, 8, 16)] == pytest.approx([1 / 3, 1 / 3, 2 / 3, 1, 1])


def test_undefined_videos():
    query, gt_occ, gt, pred_occ, pred = (np.concatenate([a, a]) for a in _check_case(0))
    gt_occ[1, :, 1:] = True  # video 1: nothing visible after the query
    pred_occ[1] = True  # ... and nothing predicted visible, so Jaccard is 0/0 too
    m = compute_tapvid_metrics(query, gt_occ, gt, pred_occ, pred, "first")
    assert np.isnan(m["pts_within_1"][1]) and np.isnan(m["jaccard_1"][1])
    assert m["occlusion_accuracy"][1] == pytest.approx(1.0)
    mean = average_metrics(m)
    assert mean["num_videos"] == 2 and mean["num_videos_undefined"] == 1
    assert mean["average_jaccard"] == pytest.approx(0.5)  # video 0 only
    assert mean["occlusion_accuracy"] == pytest.approx((2 / 3 + 1) / 2)  # defined for both
    # a false positive makes the Jaccard defined (0), as in the benchmark, but not pts_within
    pred_occ[1] = False
    m = compute_tapvid_metrics(query, gt_occ, gt, pred_occ, pred, "first")
    assert m["jaccard_1"][1] == 0.0 and np.isnan(m["pts_within_1"][1])


def test_all_videos_undefined_warns():
    query, gt_occ, gt, pred_occ, pred = _check_case(3)  # the last frame: nothing after it
    m = compute_tapvid_metrics(query, gt_occ, gt, pred_occ, pred, "first")
    assert all(np.isnan(v[0]) for v in m.values())
    with pytest.warns(RuntimeWarning, match="no video has a defined value of .*average_jaccard"):
        mean = average_metrics(m)
    assert np.isnan(mean["average_jaccard"]) and mean["num_videos_undefined"] == 1
    with pytest.raises(ValueError, match="one length"):
        average_metrics({"a": np.zeros(2), "b": np.zeros(3)})


def test_bad_inputs():
    def call(**changes):
        args = dict(zip(["query_points", "gt_occluded", "gt_tracks", "pred_occluded", "pred_tracks"],
                        _check_case(0)), query_mode="first")
        args.update(changes)
        return compute_tapvid_metrics(**args)

    query, gt_occ, gt, pred_occ, pred = _check_case(0)
    with pytest.raises(ValueError, match=r"gt_occluded must have shape \[b, n, T\] \(rank 3\)"):
        call(gt_occluded=gt_occ[0])
    with pytest.raises(ValueError, match=r"pred_occluded must have shape \[b, n, T\]"):
        call(pred_occluded=pred_occ[..., :3])
    with pytest.raises(ValueError, match="pred_occluded must be boolean"):
        call(pred_occluded=pred_occ + 0.5)
    with pytest.raises(ValueError, match=r"gt_tracks must have shape \[b, n, T, 2\]"):
        call(gt_tracks=gt[..., :1])
    with pytest.raises(ValueError, match=r"pred_tracks must have shape \[b, n, T, 2\]"):
        call(pred_tracks=pred[0])
    with pytest.raises(ValueError, match=r"query_points must have shape \[b, n, 3\]"):
        call(query_points=query[..., :2])
    with pytest.raises(ValueError, match=r"query frame t, rounded\) must lie in \[0, T\)"):
        call(query_points=query + [4, 0, 0])
    with pytest.raises(ValueError, match="query frame t, rounded"):
        call(query_points=query - [1, 0, 0])
    with pytest.raises(ValueError, match="pred_tracks must be finite"):
        call(pred_tracks=np.where(pred == 50.0, np.nan, pred))
    with pytest.raises(ValueError, match="gt_tracks must be finite wherever gt_occluded is False"):
        call(gt_tracks=np.full_like(gt, np.inf))
    with pytest.raises(ValueError, match="query_mode must be 'first' or 'strided'"):
        call(query_mode="all")
    with pytest.raises(ValueError, match="thresholds must be a non-empty sequence of positive"):
        call(thresholds=(1, 0))
    with pytest.raises(ValueError, match="thresholds must be a non-empty"):
        call(thresholds=())
    # NaN positions where the ground truth is occluded are fine (never compared)
    gt_nan = gt.copy()
    gt_nan[0, 0, 2] = np.nan
    assert call(gt_tracks=gt_nan)["average_jaccard"][0] == pytest.approx(0.5)


def test_format_metrics_table():
    query, gt_occ, gt, pred_occ, pred = (np.concatenate([a, a]) for a in _check_case(0))
    gt_occ[1, :, 1:] = True
    pred_occ[1] = True
    m = compute_tapvid_metrics(query, gt_occ, gt, pred_occ, pred, "first")
    table = format_metrics_table(m, names=["bear", "cows"])
    lines = table.splitlines()
    assert lines[0].split() == ["video", "AJ", "<δ", "avg", "OA", "J@1", "J@2", "J@4", "J@8", "J@16"]
    bear = next(ln for ln in lines if ln.startswith("bear"))
    assert bear.split() == ["bear", "50.0", "80.0", "66.7", "25.0", "25.0", "66.7", "66.7", "66.7"]
    cows = next(ln for ln in lines if ln.startswith("cows"))
    assert cows.split() == ["cows", "-", "-", "100.0", "-", "-", "-", "-", "-"]
    assert lines[-1].split()[:4] == ["mean", "50.0", "80.0", "83.3"]
    assert "video 0" in format_metrics_table(m)
    custom = format_metrics_table(m, mean={"average_jaccard": 0.123})
    assert custom.splitlines()[-1].split()[:3] == ["mean", "12.3", "-"]
    with pytest.raises(ValueError, match="names must name each of the 2 videos"):
        format_metrics_table(m, names=["one"])
