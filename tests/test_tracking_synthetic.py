"""The synthetic point-tracking dataset: record contract, determinism, exact tracks and occlusion, motion,
the DAVIS pickle writer and argument checks."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from trecvit.tracking.synthetic import (
    SyntheticTracks,
    apply_affine,
    flat_colour,
    render_layer_ids,
    render_scene,
    write_davis_pickle,
)

# (image_size, num_frames, seed): square and non-square frames, small and default sizes
CONFIGS = [(64, 24, 0), ((40, 56), 12, 7), (32, 16, 3)]


@pytest.fixture(scope="module", params=CONFIGS, ids=["64x64", "40x56", "32x32"])
def videos(request):
    """``(dataset, [(record, scene, layer_ids, pixel_col, pixel_row, inside)])`` for three videos."""
    size, frames, seed = request.param
    ds = SyntheticTracks(3, image_size=size, num_frames=frames, seed=seed, num_points=48)
    h, w = ds.image_size
    out = []
    for i in range(len(ds)):
        record, scene = ds[i], ds.scene(i)
        col = np.floor(record["points"][..., 0] * w).astype(np.int64)  # float32 arithmetic, as users do
        row = np.floor(record["points"][..., 1] * h).astype(np.int64)
        inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
        out.append((record, scene, render_layer_ids(scene), col, row, inside))
    return ds, out


def _shown(array, col, row, inside):
    """``array[t, row, col]`` for every point and frame (clipped where outside the frame)."""
    t = np.arange(array.shape[0])[None]
    return array[t, np.clip(row, 0, array.shape[1] - 1), np.clip(col, 0, array.shape[2] - 1)]


def test_record_contract(videos):
    ds, out = videos
    h, w = ds.image_size
    for i, (record, scene, *_) in enumerate(out):
        assert set(record) == {"video", "points", "occluded", "name"}
        assert record["name"] == f"synthetic_{ds.seed}_{i:05d}"
        assert record["video"].dtype == np.uint8 and record["video"].shape == (ds.num_frames, h, w, 3)
        assert record["points"].dtype == np.float32 and record["points"].shape == (48, ds.num_frames, 2)
        assert record["occluded"].dtype == np.bool_ and record["occluded"].shape == (48, ds.num_frames)
        assert np.isfinite(record["points"]).all()
        assert (scene.point_layer == 0).any() and (scene.point_layer > 0).any()  # background and objects
        assert (scene.point_layer > 0).mean() > 0.5  # most points on objects


def test_pixel_index_is_robust_to_rounding(videos):
    ds, out = videos
    h, w = ds.image_size
    for record, _, _, col, row, _ in out:
        pts = record["points"].astype(np.float64)
        assert np.array_equal(np.floor(pts[..., 0] * w), col) and np.array_equal(np.floor(pts[..., 1] * h), row)


def test_determinism():
    a = SyntheticTracks(3, image_size=32, num_frames=8, seed=5)
    b = SyntheticTracks(3, image_size=32, num_frames=8, seed=5)
    for i in (0, 2):
        ra, rb = a[i], b[i]
        assert ra.keys() == rb.keys()
        for key in ra:
            assert np.array_equal(ra[key], rb[key]), key
    assert np.array_equal(a[-1]["video"], a[2]["video"])
    assert not np.array_equal(a[0]["video"], a[1]["video"])
    other = SyntheticTracks(3, image_size=32, num_frames=8, seed=6)[0]
    assert not np.array_equal(other["video"], a[0]["video"])
    assert not np.array_equal(other["points"], a[0]["points"])
    assert list(a.records()) == [f"synthetic_5_{i:05d}" for i in range(3)]
    with pytest.raises(IndexError):
        a[3]


def test_occlusion_flags_match_layer_ids(videos):
    _, out = videos
    behind = []
    for record, scene, ids, col, row, inside in out:
        occluded, own = record["occluded"], scene.point_layer[:, None]
        shown = _shown(ids, col, row, inside)
        assert occluded[~inside].all()  # outside the frame
        assert (shown[~occluded] == np.broadcast_to(own, shown.shape)[~occluded]).all()  # own layer on top
        assert (shown != own)[occluded & inside].all()  # another layer on top
        behind.append((shown < own)[occluded & inside])
        # visible at its query frame
        assert not occluded[np.arange(len(own)), scene.query_frame].any()
    # the other layer is nearly always in front (one behind only where the point is at its silhouette)
    assert np.concatenate(behind).mean() < 0.1


def test_tracks_land_on_their_layer_in_flat_colour_renders(videos):
    _, out = videos
    for record, scene, _, col, row, inside in out:
        flat, _ = render_scene(scene, flat_colours=True)
        colours = _shown(flat, col, row, inside)  # [n, T, 3]
        expected = np.stack([flat_colour(layer) for layer in scene.point_layer])[:, None]
        same = (colours == expected).all(-1)
        visible = ~record["occluded"]
        assert same[visible].all()
        assert not same[record["occluded"] & inside].any()  # flat colours are unique per layer


def test_tracks_show_their_texture_colour(videos):
    _, out = videos
    for record, scene, _, col, row, _ in out:
        n = len(scene.point_layer)
        visible = ~record["occluded"]
        for k, t in zip(*np.nonzero(visible)):
            layer, (u0, v0) = scene.point_layer[k], scene.point_uv[k]
            texture = scene.textures[layer]
            u, v = apply_affine(scene.inverse[layer, t], col[k, t] + 0.5, row[k, t] + 0.5)
            texel = (int(np.floor(v)) % texture.shape[0], int(np.floor(u)) % texture.shape[1])
            assert np.array_equal(record["video"][t, row[k, t], col[k, t]], texture[texel])
            # the pixel centre is within half a pixel diagonal of the point, in texture units
            stretch = np.sqrt(abs(np.linalg.det(scene.inverse[layer, t, :, :2])))
            assert np.hypot(u - u0, v - v0) <= stretch * (np.sqrt(0.5) + 2e-3) + 1e-9
        # at the query frame the pixel shows exactly the point's texel
        t = scene.query_frame
        pixels = record["video"][t, row[np.arange(n), t], col[np.arange(n), t]]
        for k in range(n):
            texture = scene.textures[scene.point_layer[k]]
            u0, v0 = np.floor(scene.point_uv[k]).astype(np.int64)
            assert np.array_equal(pixels[k], texture[v0 % texture.shape[0], u0 % texture.shape[1]])


def test_there_is_motion_and_occlusion(videos):
    ds, out = videos
    h, w = ds.image_size
    first_last, per_frame, occluded = [], [], []
    for record, *_ in out:
        pts, occ = record["points"] * np.array([w, h]), record["occluded"]
        both = ~occ[:, 0] & ~occ[:, -1]
        first_last.append(np.linalg.norm(pts[both, -1] - pts[both, 0], axis=-1))
        step = np.linalg.norm(np.diff(pts, axis=1), axis=-1)
        per_frame.append(step[~occ[:, 1:] & ~occ[:, :-1]])
        occluded.append(occ.ravel())
    occluded = np.concatenate(occluded)
    # objects move at 0.35-1 x 0.07 x min(H, W) pixels per frame, the background at 0.2-1 x half that
    assert np.concatenate(per_frame).mean() > 0.025 * min(h, w)
    assert np.concatenate(first_last).mean() > 0.15 * min(h, w)
    assert 0.05 < occluded.mean() < 0.6


def test_write_davis_pickle(tmp_path):
    records = SyntheticTracks(2, image_size=24, num_frames=4, num_points=5, seed=1).records()
    path = write_davis_pickle(records, tmp_path / "sub" / "synthetic.pkl")
    assert path == tmp_path / "sub" / "synthetic.pkl"
    with open(path, "rb") as f:
        loaded = pickle.load(f)
    assert list(loaded) == list(records)
    for name, record in loaded.items():
        assert set(record) == {"video", "points", "occluded"}
        for key in record:
            assert record[key].dtype == records[name][key].dtype
            assert np.array_equal(record[key], records[name][key])
    with pytest.raises(FileExistsError):
        write_davis_pickle(records, path)
    one = {name: records[name] for name in list(records)[:1]}
    write_davis_pickle(one, path, overwrite=True)
    with open(path, "rb") as f:
        assert list(pickle.load(f)) == list(one)
    assert sorted(p.name for p in path.parent.iterdir()) == ["synthetic.pkl"]  # no temporary files left
    with pytest.raises(ValueError):
        write_davis_pickle({}, tmp_path / "empty.pkl")
    with pytest.raises(ValueError):
        write_davis_pickle({"x": {"video": next(iter(records.values()))["video"]}}, tmp_path / "bad.pkl")


@pytest.mark.parametrize("kwargs", [
    {"num_videos": 0}, {"num_frames": 1}, {"image_size": 8}, {"image_size": (64, 12)},
    {"image_size": (32, 32, 3)}, {"num_points": 0}, {"num_points": 2.5}, {"num_objects": (4, 2)},
    {"num_objects": (-1, 2)}, {"num_objects": (1, 99)}, {"num_objects": 3}, {"seed": -1},
    {"max_speed": -0.1}, {"max_speed": float("nan")}, {"max_rotation": -1.0}, {"object_size": (0.5, 0.1)},
    {"background_fraction": 1.5}, {"num_points": True},
])
def test_bad_arguments(kwargs):
    args = {"num_videos": 2, **kwargs}
    with pytest.raises(ValueError):
        SyntheticTracks(args.pop("num_videos"), **args)


def test_edge_cases():
    no_objects = SyntheticTracks(1, image_size=16, num_frames=2, num_points=3, num_objects=(0, 0))
    assert (no_objects.scene(0).point_layer == 0).all()
    one = SyntheticTracks(1, image_size=16, num_frames=2, num_points=1, num_objects=(1, 1))[0]
    assert one["points"].shape == (1, 2, 2) and not one["occluded"].all()
