"""The procedural synthetic-motion dataset: determinism, reversal construction, semantics, mp4 export."""

from __future__ import annotations

import csv
import dataclasses
import math

import numpy as np
import pytest
import torch

from trecvit.data.synthetic import (
    MOTION_CLASSES,
    REVERSED_PAIRS,
    SyntheticMotion,
    frame_order,
    render_batch,
    render_clip,
    reversed_partner,
    sample_params,
    write_synthetic_videos,
)
from trecvit.io import read_video


def _params(label: int, seed: int):
    return sample_params(np.random.default_rng([seed, label]), label)


def _flat(params):
    """The same clip without textures (flat background and object), for measuring the object."""
    return dataclasses.replace(params, bg_colour=0 * params.bg_colour, obj_colour=0 * params.obj_colour,
                               obj_gradient_colour=0 * params.obj_gradient_colour)


def _object_stats(params, label: int, num_frames: int = 8, size: int = 32) -> dict[str, np.ndarray]:
    """Per-frame centroid (pixels), area, orientation of the principal axis and contrast of the object."""
    video = render_clip(_flat(params), label, num_frames=num_frames, image_size=size)
    diff = (video - torch.tensor(params.bg_mean, dtype=torch.float32)[None, :, None, None]).abs().sum(1)
    full = float(np.abs(params.obj_mean - params.bg_mean).sum())
    weight = (diff / full).clamp(0, 1) * (diff > 0.25 * full)  # soft object mask, noise suppressed
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    area = weight.sum((1, 2)).clamp_min(1e-6)
    cx, cy = (weight * xs).sum((1, 2)) / area, (weight * ys).sum((1, 2)) / area
    dx, dy = xs - cx[:, None, None], ys - cy[:, None, None]
    sxx, syy, sxy = ((weight * dx * dx).sum((1, 2)), (weight * dy * dy).sum((1, 2)), (weight * dx * dy).sum((1, 2)))
    orientation = 0.5 * torch.atan2(2 * sxy, sxx - syy)  # axis angle, y down: increasing = clockwise
    contrast = (diff * (diff > 0.25 * full)).sum((1, 2))
    return {k: v.numpy().astype(np.float64) for k, v in
            dict(cx=cx, cy=cy, area=weight.sum((1, 2)), orientation=orientation, contrast=contrast).items()}


# --------------------------------------------------------------------------- #
# classes
# --------------------------------------------------------------------------- #
def test_classes_and_pairs():
    assert len(MOTION_CLASSES) == 12
    assert MOTION_CLASSES[0] == "moving left" and MOTION_CLASSES[11] == "moving away"
    assert REVERSED_PAIRS == ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))
    for a, b in REVERSED_PAIRS:
        assert reversed_partner(a) == b and reversed_partner(b) == a
    assert reversed_partner(10) is None and reversed_partner(11) is None
    with pytest.raises(ValueError):
        reversed_partner(12)


# --------------------------------------------------------------------------- #
# dataset
# --------------------------------------------------------------------------- #
def test_items_shape_range_and_determinism():
    ds = SyntheticMotion(30, seed=0)
    assert len(ds) == 30 and ds.num_classes == 12 and ds.classes == MOTION_CLASSES
    item = ds[7]
    assert set(item) == {"video", "label", "index"} and item["index"] == 7
    video = item["video"]
    assert video.shape == (8, 3, 32, 32) and video.dtype == torch.float32
    assert 0.0 <= float(video.min()) and float(video.max()) <= 1.0
    assert torch.equal(video * 255, (video * 255).round())  # uint8 / 255
    # a pure function of (seed, index): other items first, global RNGs reseeded, a new instance
    for i in (29, 3, 0):
        ds[i]
    torch.manual_seed(123)
    np.random.seed(123)
    again = SyntheticMotion(30, seed=0)[7]
    assert torch.equal(again["video"], video) and again["label"] == item["label"]
    assert torch.equal(ds[-23]["video"], video)
    # another seed gives other clips
    other = SyntheticMotion(30, seed=1)
    assert all(not torch.equal(other[i]["video"], ds[i]["video"]) for i in range(12))
    assert (other[7]["video"] - video).abs().mean() > 0.05
    with pytest.raises(IndexError):
        ds[30]


def test_labels_balanced_and_class_subset():
    ds = SyntheticMotion(120, seed=4)
    labels = [ds.label(i) for i in range(120)]
    assert labels[:24:5] == [ds[i]["label"] for i in range(0, 24, 5)]
    assert np.bincount(labels, minlength=12).tolist() == [10] * 12
    assert labels[:12] != list(range(12))  # shuffled within each block of 12
    sub = SyntheticMotion(30, seed=0, classes=[10, 11, 0])
    assert sub.num_classes == 3 and sub.classes == ("moving away and back", "moving away", "moving left")
    assert sub.class_ids == (10, 11, 0)
    _, labels = sub.materialize()
    assert labels.bincount().tolist() == [10, 10, 10]
    params, class_id = sub.item_params(5)
    assert class_id == sub.class_ids[int(labels[5])]
    with pytest.raises(ValueError):
        SyntheticMotion(10, classes=[0, 0])
    with pytest.raises(ValueError):
        SyntheticMotion(10, classes=[12])
    with pytest.raises(ValueError):
        SyntheticMotion(10, num_frames=1)


def test_materialize_matches_getitem():
    for kwargs in ({}, {"num_frames": 6, "image_size": 24, "seed": 3}):
        ds = SyntheticMotion(37, **kwargs)
        videos, labels = ds.materialize(batch_size=16)
        t, s = ds.num_frames, ds.image_size
        assert videos.shape == (37, t, 3, s, s) and videos.dtype == torch.uint8 and labels.dtype == torch.long
        for i in range(37):
            item = ds[i]
            assert torch.equal(item["video"], videos[i].float() / 255), i
            assert item["label"] == int(labels[i])
    assert SyntheticMotion(0).materialize()[0].shape == (0, 8, 3, 32, 32)


# --------------------------------------------------------------------------- #
# reversal construction and order-blind statistics
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("pair", REVERSED_PAIRS)
def test_reversed_pairs_are_exact_time_reversals(pair):
    a, b = pair
    for seed in range(3):
        params = _params(a, seed)
        clip_a, clip_b = render_clip(params, a), render_clip(params, b)
        assert torch.equal(clip_b, clip_a.flip(0))
        # order-blind statistics are identical: the mean frame, and the multiset of frames
        assert torch.allclose(clip_a.mean(0), clip_b.mean(0), atol=1e-6)
        assert sorted(f.numpy().tobytes() for f in clip_a) == sorted(f.numpy().tobytes() for f in clip_b)
        # ... but the clip is not static
        assert (clip_a[0] - clip_a[-1]).abs().mean() > 0.01
    # a batch with mixed labels renders the same clips as one at a time
    params = [_params(a, 0), _params(a, 1), _params(b, 2)]
    batch = render_batch(params, [a, b, b])
    assert torch.equal(batch[1].float() / 255, render_clip(params[1], b))
    assert torch.equal(batch[2].float() / 255, render_clip(params[2], b))


def test_params_are_shared_within_pairs():
    # the parameter distribution depends only on the pair: the same generator state gives the same clip
    for a, b in (*REVERSED_PAIRS, (10, 11)):
        pa, pb = _params(a, 7), sample_params(np.random.default_rng([7, a]), b)
        assert all(np.array_equal(getattr(pa, f.name), getattr(pb, f.name))
                   for f in dataclasses.fields(pa))
    with pytest.raises(ValueError, match="kind"):
        render_clip(_params(0, 0), 2)


def test_away_and_back_is_away_reordered():
    assert frame_order(10, 8).tolist() == [0, 2, 4, 6, 7, 5, 3, 1]
    assert frame_order(10, 5).tolist() == [0, 2, 4, 3, 1]
    assert frame_order(11, 8).tolist() == list(range(8)) and frame_order(1, 3).tolist() == [2, 1, 0]
    for seed in range(4):
        params = _params(10, seed)
        back, away = render_clip(params, 10), render_clip(params, 11)
        assert torch.equal(back, away[frame_order(10, 8)])
        assert sorted(f.numpy().tobytes() for f in back) == sorted(f.numpy().tobytes() for f in away)
        # away: a diagonal run of > 8 pixels; away and back: out to the far end and back near the start
        st_back, st_away = _object_stats(params, 10), _object_stats(params, 11)
        pos_back = np.stack([st_back["cx"], st_back["cy"]], 1)
        pos_away = np.stack([st_away["cx"], st_away["cy"]], 1)
        travel = np.linalg.norm(pos_away[-1] - pos_away[0])
        assert travel > 8
        assert _monotone(np.linalg.norm(pos_away - pos_away[0], axis=1), 1, 0.3)
        dx, dy = pos_away[-1] - pos_away[0]
        assert 0.6 < abs(dx) / abs(dy) < 1.7  # diagonal
        out = np.linalg.norm(pos_back - pos_back[0], axis=1)
        assert _monotone(out[:5], 1, 0.3) and _monotone(out[4:], -1, 0.3)
        assert out[4] > 0.9 * travel and out[-1] < travel / 7 + 0.5


# --------------------------------------------------------------------------- #
# the canonical motions do what the names say
# --------------------------------------------------------------------------- #
def _monotone(values: np.ndarray, sign: int, slack: float = 0.0) -> bool:
    return bool(np.all(sign * np.diff(values) >= -slack))


@pytest.mark.parametrize("seed", range(3))
def test_motion_semantics(seed):
    for label in range(12):
        params = _params(label, seed)
        st = _object_stats(params, label)
        cx, cy, area, contrast = st["cx"], st["cy"], st["area"], st["contrast"]
        if label in (0, 1):
            sign = -1 if label == 0 else 1
            assert sign * (cx[-1] - cx[0]) > 8 and _monotone(cx, sign, 0.3) and np.ptp(cy) < 1, (label, cx, cy)
        elif label in (2, 3):
            sign = -1 if label == 2 else 1  # up = decreasing y
            assert sign * (cy[-1] - cy[0]) > 8 and _monotone(cy, sign, 0.3) and np.ptp(cx) < 1, (label, cx, cy)
        elif label in (4, 5):
            ratio = area[-1] / area[0] if label == 4 else area[0] / area[-1]
            assert ratio > 2.5 and _monotone(area, 1 if label == 4 else -1), (label, area)
        elif label in (6, 7):
            # the flat object is made elongated (an ellipse) so that its axis angle is well defined
            elongated = dataclasses.replace(params, ellipse=np.array([1.0, 0.45]), shape="ellipse",
                                            edges=np.tile([[0.0, 0.0, 5.0]], (len(params.edges), 1)))
            st = _object_stats(elongated, label)
            angles = st["orientation"]
            steps = (np.diff(angles) + math.pi / 2) % math.pi - math.pi / 2  # axis angles are mod pi
            sign = 1 if label == 6 else -1  # clockwise on screen = increasing angle with y pointing down
            turned = sign * steps.sum()
            assert np.all(sign * steps > 0) and math.radians(170) < turned < math.radians(280), (label, steps)
            # rotating about its centre (the off-centre orientation spot moves the contrast centroid a little)
            assert np.ptp(st["cx"]) < 2.5 and np.ptp(st["cy"]) < 2.5
        elif label in (8, 9):
            visible = contrast if label == 8 else contrast[::-1]
            assert visible[0] < 0.02 * visible[-1] and _monotone(visible, 1), (label, contrast)
        # 10 and 11: test_away_and_back_is_away_reordered


def test_other_sizes():
    video = SyntheticMotion(2, num_frames=16, image_size=64, seed=2)[1]["video"]
    assert video.shape == (16, 3, 64, 64)
    assert (video[0] - video[-1]).abs().mean() > 0.01


# --------------------------------------------------------------------------- #
# mp4 export
# --------------------------------------------------------------------------- #
def test_write_synthetic_videos(tmp_path):
    out = tmp_path / "synthetic"
    assert write_synthetic_videos(out, 14, seed=2) == out
    ds = SyntheticMotion(14, seed=2)
    with open(out / "labels.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["path", "label"] and len(rows) == 15
    assert (out / "classes.txt").read_text().splitlines() == list(MOTION_CLASSES)
    for i, (path, label) in enumerate(rows[1:]):
        item = ds[i]
        assert int(label) == item["label"]
        assert path == f"videos/{i:06d}_{MOTION_CLASSES[item['label']].replace(' ', '_')}.mp4"
        video = read_video(out / path, 8, size=None)
        assert video.shape == (8, 3, 32, 32)
        assert (video - item["video"]).abs().mean() < 0.05
    assert len(list((out / "videos").iterdir())) == 14

    with pytest.raises(FileExistsError):
        write_synthetic_videos(out, 3)
    write_synthetic_videos(out, 3, seed=5, classes=[4, 5], overwrite=True)
    assert len(list((out / "videos").iterdir())) == 3
    assert (out / "classes.txt").read_text().splitlines() == ["zooming in", "zooming out"]
    with pytest.raises(ValueError, match="even"):
        write_synthetic_videos(tmp_path / "odd", 2, image_size=33)
