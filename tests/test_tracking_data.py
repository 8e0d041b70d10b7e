"""TAP-Vid query sampling, frame resizing and TrackingDataset (trecvit.tracking.data)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from trecvit.tracking.data import (
    TrackingDataset,
    collate_tracks,
    from_model_queries,
    resize_video,
    sample_queries_first,
    sample_queries_strided,
    tapvid_queries,
    to_model_queries,
)


def make_record(seed: int = 0, T: int = 10, H: int = 12, W: int = 16, n: int = 6, p_occ: float = 0.5) -> dict:
    rng = np.random.default_rng(seed)
    return {"video": rng.integers(0, 256, (T, H, W, 3), dtype=np.uint8),
            "points": rng.uniform(0, 1, (n, T, 2)).astype(np.float32),
            "occluded": rng.uniform(size=(n, T)) < p_occ, "name": f"rec{seed}"}


def small_tracks():
    """3 tracks over 5 frames: 0 visible from frame 1, 1 never visible, 2 visible at 0, 2, 4."""
    points = np.zeros((3, 5, 2), np.float32)
    points[..., 0] = np.arange(5) / 10 + np.array([0.1, 0.2, 0.3])[:, None]  # x
    points[..., 1] = np.arange(5) / 20 + np.array([0.5, 0.6, 0.7])[:, None]  # y
    occluded = np.array([[1, 0, 0, 1, 0], [1, 1, 1, 1, 1], [0, 1, 0, 1, 0]], bool)
    return points, occluded


def test_sample_queries_first_hand_computed():
    points, occluded = small_tracks()
    out = sample_queries_first(points, occluded)
    # track 0: first visible at t=1, (x, y) = (0.2, 0.55); track 2 at t=0, (0.3, 0.7); track 1 dropped
    np.testing.assert_allclose(out["query_points"], [[1, 0.55 * 256, 0.2 * 256], [0, 0.7 * 256, 0.3 * 256]],
                               rtol=1e-6)
    np.testing.assert_allclose(out["target_points"], points[[0, 2]] * 256, rtol=1e-6)
    np.testing.assert_array_equal(out["occluded"], occluded[[0, 2]])
    np.testing.assert_array_equal(out["trackgroup"], [0, 2])
    assert out["query_points"].dtype == np.float32 and out["target_points"].dtype == np.float32
    rect = sample_queries_first(points, occluded, size=(100, 200))  # (H, W): x scales by W, y by H
    np.testing.assert_allclose(rect["query_points"][0], [1, 55, 40], rtol=1e-6)
    np.testing.assert_allclose(rect["target_points"][1, 4], [0.7 * 200, 0.9 * 100], rtol=1e-6)


def test_sample_queries_strided_hand_computed():
    points, occluded = small_tracks()
    out = sample_queries_strided(points, occluded, stride=2)
    # query frames 0, 2, 4: t=0 -> track 2; t=2 -> tracks 0, 2; t=4 -> tracks 0, 2
    np.testing.assert_array_equal(out["trackgroup"], [2, 0, 2, 0, 2])
    np.testing.assert_array_equal(out["query_points"][:, 0], [0, 2, 2, 4, 4])
    expected = [[0, 0.7, 0.3], [2, 0.6, 0.3], [2, 0.8, 0.5], [4, 0.7, 0.5], [4, 0.9, 0.7]]
    np.testing.assert_allclose(out["query_points"], np.array(expected) * [1, 256, 256], rtol=1e-6)
    np.testing.assert_allclose(out["target_points"], points[[2, 0, 2, 0, 2]] * 256, rtol=1e-6)
    np.testing.assert_array_equal(out["occluded"], occluded[[2, 0, 2, 0, 2]])
    default = sample_queries_strided(points, occluded)  # stride 5: only frame 0
    np.testing.assert_array_equal(default["trackgroup"], [2])
    none = sample_queries_first(points[[1]], occluded[[1]])
    assert none["query_points"].shape == (0, 3) and none["target_points"].shape == (0, 5, 2)


def test_tapvid_queries_modes():
    rec = make_record()
    first = tapvid_queries(rec, "first")
    np.testing.assert_array_equal(first["query_points"], sample_queries_first(rec["points"], rec["occluded"])
                                  ["query_points"])
    strided = tapvid_queries(rec, "strided", stride=3)
    assert set(strided["query_points"][:, 0].tolist()) <= {0, 3, 6, 9}
    with pytest.raises(ValueError, match="unknown query_mode"):
        tapvid_queries(rec, "middle")


def test_resize_video():
    video = make_record()["video"]
    out = resize_video(video, 8)
    assert out.shape == (10, 3, 8, 8) and out.dtype == torch.float32
    assert 0 <= out.min() and out.max() <= 1
    up = resize_video(video, (20, 30))
    assert up.shape == (10, 3, 20, 30) and 0 <= up.min() and up.max() <= 1
    same = resize_video(video, (12, 16))
    torch.testing.assert_close(same, torch.from_numpy(video).permute(0, 3, 1, 2).float() / 255)
    const = np.full((3, 17, 23, 3), 137, np.uint8)
    for size in (5, (9, 31), (40, 40)):
        out = resize_video(const, size)
        torch.testing.assert_close(out, torch.full_like(out, 137 / 255))
    with pytest.raises(ValueError, match="uint8"):
        resize_video(video.astype(np.float32), 8)


def test_model_queries_round_trip():
    q = np.array([[3, 64.0, 128.0], [0, 255.0, 10.0]], np.float32)  # (t, y, x) in a 256 x 512 frame
    m = to_model_queries(q, (256, 512))
    np.testing.assert_allclose(m, [[3, 0.25, 0.25], [0, 10 / 512, 255 / 256]], rtol=1e-6)
    np.testing.assert_allclose(from_model_queries(m, (256, 512)), q, rtol=1e-6)
    t = torch.from_numpy(q)[None]
    back = from_model_queries(to_model_queries(t, 256), 256)
    assert isinstance(back, torch.Tensor) and back.shape == (1, 2, 3)
    torch.testing.assert_close(back, t)


def check_sample(s: dict, num_points: int, T: int, size=(8, 8)):
    assert s["video"].shape == (T, 3, *size) and s["video"].dtype == torch.float32
    assert s["query_points"].shape == (num_points, 3) and s["query_points"].dtype == torch.float32
    assert s["target_points"].shape == (num_points, T, 2) and s["occluded"].shape == (num_points, T)
    assert s["valid"].shape == (num_points,) and s["valid"].dtype == torch.bool
    assert torch.isfinite(s["query_points"]).all() and torch.isfinite(s["target_points"]).all()
    for q, tgt, occ, ok in zip(s["query_points"], s["target_points"], s["occluded"], s["valid"]):
        t = int(q[0])
        assert q[0] == t and 0 <= t < T
        if ok:  # the query frame is visible and the track passes through the query point
            assert not occ[t]
            torch.testing.assert_close(tgt[t], q[1:])


def test_dataset_train_determinism_and_queries():
    recs = [make_record(i) for i in range(4)]
    kw = dict(num_frames=6, image_size=8, num_points=3, train=True, seed=7)
    a, b = TrackingDataset(recs, **kw), TrackingDataset(recs, **kw)
    for i in reversed(range(4)):  # order of loading does not matter
        sb = b[i]
        for key, value in a[i].items():
            if isinstance(value, torch.Tensor):
                torch.testing.assert_close(value, sb[key])
        check_sample(sb, 3, 6)
        assert sb["valid"].all() and sb["label"] == 0 and sb["index"] == i
    a.set_epoch(1)
    differs = [not torch.equal(a[i]["query_points"], b[i]["query_points"]) for i in range(4)]
    assert any(differs)
    other_seed = TrackingDataset(recs, **dict(kw, seed=8))
    assert any(not torch.equal(other_seed[i]["query_points"], b[i]["query_points"]) for i in range(4))
    # query frames are spread over the visible frames, not always the first one
    frames = {int(q[0]) for e in range(5) for q in (a.set_epoch(e) or a[0])["query_points"]}
    assert len(frames) > 1


def test_dataset_padding_and_collate():
    rec = make_record(1, n=4, p_occ=0.4)
    rec["occluded"][1] = True  # never visible: cannot be sampled
    ds = TrackingDataset({"only": rec}, num_frames=None, image_size=(8, 12), num_points=5, train=True)
    s = ds[0]
    check_sample(s, 5, 10, size=(8, 12))
    assert s["valid"].tolist() == [True, True, True, False, False]
    assert ds.names == ["only"] and ds.num_classes == 1 and ds.classes == ["tracks"]
    empty = dict(rec, occluded=np.ones_like(rec["occluded"]))
    s0 = TrackingDataset([empty], num_frames=4, image_size=8, num_points=2, train=True)[0]
    assert not s0["valid"].any() and torch.isfinite(s0["target_points"]).all()
    three = TrackingDataset([make_record(i) for i in range(3)], num_frames=5, image_size=8, num_points=4,
                            train=True)
    loader = DataLoader(three, batch_size=3, collate_fn=TrackingDataset.collate)
    batch = next(iter(loader))
    assert batch["video"].shape == (3, 5, 3, 8, 8)
    assert batch["label"].dtype == torch.long and batch["label"].tolist() == [0, 0, 0]
    assert batch["index"].tolist() == [0, 1, 2] and batch["failed"] == []
    assert batch["query_points"].shape == (3, 4, 3) and batch["target_points"].shape == (3, 4, 5, 2)
    assert batch["occluded"].shape == (3, 4, 5) and batch["valid"].shape == (3, 4)
    assert collate_tracks is TrackingDataset.collate


def test_dataset_eval_modes():
    points, occluded = small_tracks()
    rec = {"video": np.zeros((5, 4, 4, 3), np.uint8), "points": points, "occluded": occluded}
    first = TrackingDataset([rec], num_frames=None, image_size=4, num_points=3, train=False)[0]
    np.testing.assert_allclose(first["query_points"][:2].numpy(), [[1, 0.2, 0.55], [0, 0.3, 0.7]], rtol=1e-6)
    assert first["valid"].tolist() == [True, True, False]
    np.testing.assert_allclose(first["target_points"][:2].numpy(), points[[0, 2]])
    strided = TrackingDataset([rec], num_frames=None, image_size=4, num_points=4, train=False,
                              query_mode="strided", stride=2)[0]
    np.testing.assert_allclose(strided["query_points"][:, 0].numpy(), [0, 2, 2, 4])
    assert strided["valid"].all()
    cut = TrackingDataset([rec], num_frames=3, image_size=4, num_points=2, train=False)[0]
    assert cut["video"].shape[0] == 3 and cut["target_points"].shape == (2, 3, 2)
    check_sample(cut, 2, 3, size=(4, 4))


def test_dataset_errors():
    rec = make_record(T=4)
    with pytest.raises(ValueError, match="shorter"):
        TrackingDataset([rec], num_frames=6, image_size=8, num_points=2, train=True)
    with pytest.raises(ValueError, match="query_mode"):
        TrackingDataset([rec], num_frames=None, image_size=8, num_points=2, train=False, query_mode="all")
    with pytest.raises(ValueError, match="num_points"):
        TrackingDataset([rec], num_frames=None, image_size=8, num_points=0, train=False)
    with pytest.raises(ValueError, match="'bad'"):
        TrackingDataset({"bad": dict(rec, points=rec["points"][:, :2])}, num_frames=None, image_size=8,
                        num_points=2, train=False)
    with pytest.raises(IndexError):
        TrackingDataset([rec], num_frames=None, image_size=8, num_points=2, train=False)[1]
