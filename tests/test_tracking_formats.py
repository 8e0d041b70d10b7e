"""Readers of TAP-Vid / Perception Test / npz track files (trecvit.tracking.formats), on small files."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from trecvit.tracking.formats import (
    load_davis,
    load_kinetics,
    load_npz_tracks,
    load_perception_test,
    load_rgb_stacking,
    load_tracking_data,
    save_npz_tracks,
    validate_record,
)


def make_record(seed: int = 0, T: int = 5, H: int = 16, W: int = 24, n: int = 3) -> dict:
    """A smooth video (JPEG/H.264 friendly) with random tracks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    frames = [np.stack([30 + 3 * xx + 5 * t, 50 + 4 * yy + 15 * seed, np.full_like(xx, 100 + 10 * t)], -1)
              for t in range(T)]
    video = np.stack(frames).clip(0, 255).astype(np.uint8)
    points = rng.uniform(0, 1, (n, T, 2)).astype(np.float32)
    occluded = rng.uniform(size=(n, T)) < 0.3
    return {"video": video, "points": points, "occluded": occluded}


def assert_same(a: dict, b: dict, video_tol: float = 0.0) -> None:
    assert a["video"].shape == b["video"].shape and a["video"].dtype == np.uint8
    err = np.abs(a["video"].astype(np.float64) - b["video"].astype(np.float64)).mean() / 255
    assert err <= video_tol, err
    np.testing.assert_allclose(a["points"], b["points"], atol=1e-6)
    assert a["points"].dtype == np.float32 and a["occluded"].dtype == np.bool_
    np.testing.assert_array_equal(a["occluded"], b["occluded"])


def dump(obj, path: Path) -> Path:
    path.write_bytes(pickle.dumps(obj))
    return path


def jpeg(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


# --- DAVIS pickle, RGB-Stacking, npz -----------------------------------------------------------

def test_davis_round_trip_and_names(tmp_path):
    recs = {"bear": make_record(0), "car-shadow": make_record(1, T=4)}
    path = dump(recs, tmp_path / "tapvid_davis.pkl")
    out = load_davis(path, allow_pickle=True)
    assert list(out) == ["bear", "car-shadow"]
    for name in recs:
        assert_same(out[name], recs[name])
        assert out[name]["name"] == name
    auto = load_tracking_data(path, allow_pickle=True)
    assert list(auto) == list(recs)


def test_pickle_needs_allow_pickle(tmp_path):
    path = dump({"a": make_record()}, tmp_path / "d.pkl")
    for call in (lambda: load_davis(path), lambda: load_rgb_stacking(path), lambda: load_kinetics(path),
                 lambda: load_tracking_data(path), lambda: load_tracking_data(path, format="davis")):
        with pytest.raises(ValueError, match="--allow-pickle") as info:
            call()
        assert "execute" in str(info.value) and str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_davis(tmp_path / "nope.pkl", allow_pickle=True)
    with pytest.raises(FileNotFoundError):
        load_tracking_data(tmp_path / "nope.npz")
    with pytest.raises(FileNotFoundError):
        load_kinetics(tmp_path / "nope", allow_pickle=True)


@pytest.mark.parametrize("payload", [b"not a pickle at all", pickle.dumps({"a": 1})[:7], b""])
def test_corrupt_pickle_is_a_value_error(tmp_path, payload):
    path = tmp_path / "broken.pkl"
    path.write_bytes(payload)
    with pytest.raises(ValueError, match="broken.pkl"):
        load_davis(path, allow_pickle=True)
    with pytest.raises(ValueError, match="broken.pkl"):
        load_tracking_data(path, allow_pickle=True)


def test_bad_records_name_file_and_record(tmp_path):
    good = make_record()
    cases = {
        "short_points": dict(good, points=good["points"][:, :3]),
        "flat_video": dict(good, video=good["video"][..., 0]),
        "float_video": dict(good, video=good["video"].astype(np.float32)),
        "occ_shape": dict(good, occluded=good["occluded"][:2]),
        "no_points": {"video": good["video"], "occluded": good["occluded"]},
    }
    for name, rec in cases.items():
        path = dump({name: rec}, tmp_path / f"{name}.pkl")
        with pytest.raises(ValueError) as info:
            load_davis(path, allow_pickle=True)
        assert str(path) in str(info.value) and repr(name) in str(info.value)
    path = dump([good, {"video": 3}], tmp_path / "list.pkl")
    with pytest.raises(ValueError, match="list_0001"):
        load_rgb_stacking(path, allow_pickle=True)
    with pytest.raises(ValueError, match="RGB-Stacking"):
        load_davis(path, allow_pickle=True)


def test_non_finite_points():
    rec = make_record()
    rec["occluded"][:] = False
    rec["occluded"][0, 1] = True
    rec["points"][0, 1] = np.nan
    out = validate_record(rec, name="x")
    assert np.isfinite(out["points"]).all() and (out["points"][0, 1] == 0).all()
    rec["points"][1, 2, 0] = np.inf
    with pytest.raises(ValueError, match="not finite"):
        validate_record(rec, name="x")


def test_rgb_stacking_list(tmp_path):
    recs = [make_record(0), make_record(1)]
    path = dump(recs, tmp_path / "tapvid_rgb_stacking.pkl")
    out = load_rgb_stacking(path, allow_pickle=True)
    assert list(out) == ["tapvid_rgb_stacking_0000", "tapvid_rgb_stacking_0001"]
    for got, want in zip(out.values(), recs):
        assert_same(got, want)
    assert list(load_tracking_data(path, allow_pickle=True)) == list(out)
    with pytest.raises(ValueError, match="DAVIS"):
        load_rgb_stacking(dump({"a": recs[0]}, tmp_path / "d.pkl"), allow_pickle=True)


def test_npz_round_trip_atomic_and_no_overwrite(tmp_path):
    recs = {"a/b": make_record(0), "c": make_record(1, T=3)}
    path = save_npz_tracks(recs, tmp_path / "tracks.npz")
    for loader in (load_npz_tracks, load_davis, load_tracking_data):
        out = loader(path)
        assert list(out) == ["a/b", "c"]
        for name in recs:
            assert_same(out[name], recs[name])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tracks.npz"]  # no temp file left
    with pytest.raises(FileExistsError):
        save_npz_tracks(recs, path)
    save_npz_tracks([dict(make_record(2), name="z")], path, overwrite=True, compress=True)
    assert list(load_npz_tracks(path)) == ["z"]
    with pytest.raises(ValueError, match="name"):
        save_npz_tracks([make_record()], tmp_path / "unnamed.npz")


def test_corrupt_npz(tmp_path):
    path = tmp_path / "bad.npz"
    path.write_bytes(b"PK\x03\x04 garbage that is not a zip")
    with pytest.raises(ValueError, match="bad.npz"):
        load_npz_tracks(path)
    np.savez(tmp_path / "odd.npz", foo=np.zeros(3))
    with pytest.raises(ValueError, match="unexpected key"):
        load_npz_tracks(tmp_path / "odd.npz")


# --- Kinetics shards -----------------------------------------------------------------------------

def kinetics_folder(tmp_path: Path) -> tuple[Path, list[dict]]:
    folder = tmp_path / "tapvid_kinetics"
    folder.mkdir()
    recs = [make_record(i, T=4, H=24, W=32) for i in range(3)]
    shards = [recs[:2], recs[2:]]
    for s, shard in enumerate(shards):  # as generate_tapvid.py writes them: JPEG bytes, float64 points
        data = [{"video": np.array([jpeg(f) for f in r["video"]]), "points": r["points"].astype(np.float64),
                 "occluded": r["occluded"]} for r in shard]
        dump(data, folder / f"{s:04}_of_0002.pkl")
    (folder / "README.md").write_text("not a shard")
    return folder, recs


def test_kinetics_folder(tmp_path):
    folder, recs = kinetics_folder(tmp_path)
    with pytest.raises(ValueError, match="--allow-pickle"):
        load_kinetics(folder)  # refused at call time, not at first next()
    pairs = list(load_kinetics(folder, allow_pickle=True))
    assert [n for n, _ in pairs] == ["0000_of_0002_0000", "0000_of_0002_0001", "0001_of_0002_0000"]
    for (_, got), want in zip(pairs, recs):
        assert_same(got, want, video_tol=8 / 255)
    auto = load_tracking_data(folder, allow_pickle=True)
    assert list(auto) == [n for n, _ in pairs]
    one = load_tracking_data(folder / "0001_of_0002.pkl", allow_pickle=True)  # a single shard
    assert list(one) == ["0001_of_0002_0000"]
    small = dict(load_kinetics(folder, allow_pickle=True, frame_size=(12, 16)))
    assert small["0000_of_0002_0000"]["video"].shape == (4, 12, 16, 3)


def test_kinetics_bad_jpeg(tmp_path):
    rec = make_record(T=2)
    dump([{"video": np.array([b"\xff\xd8garbage", b"\xff\xd8more"]), "points": rec["points"],
           "occluded": rec["occluded"]}], tmp_path / "0000_of_0001.pkl")
    with pytest.raises(ValueError, match="frame 0"):
        list(load_kinetics(tmp_path, allow_pickle=True))


# --- Perception Test -----------------------------------------------------------------------------

def write_mp4(path: Path, video: np.ndarray, fps: int = 30) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = video.shape[2], video.shape[1], "yuv420p"
        stream.options = {"crf": "10"} if stream.codec_context.name == "libx264" else {}
        for frame in video:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def perception_test_files(tmp_path: Path, layout: str = "2K"):
    T, H, W = 8, 32, 48
    video = make_record(3, T=T, H=H, W=W)["video"]
    (tmp_path / "videos").mkdir(exist_ok=True)
    write_mp4(tmp_path / "videos" / "video_1009.mp4", video)
    tracks = [  # frame_ids where annotated (= visible), points as normalised (y, x)
        {"id": 0, "label": "cup", "parent_objects": [2], "frame_ids": [0, 1, 2, 5, 6],
         "yx": [[0.1, 0.2], [0.15, 0.25], [0.2, 0.3], [0.5, 0.6], [0.55, 0.65]]},
        {"id": 1, "label": "hand", "parent_objects": [3], "frame_ids": [3, 4, 7],
         "yx": [[0.9, 0.8], [0.85, 0.75], [0.7, 0.4]]},
    ]
    for t in tracks:
        yx = np.array(t.pop("yx"))
        t["points"] = (yx.T if layout == "2K" else yx).tolist()
    ann = {"video_1009": {"metadata": {"video_id": "video_1009", "num_frames": T, "split": "valid",
                                       "frame_rate": 30, "resolution": [H, W]},
                          "point_tracking": tracks, "object_tracking": []},
           "video_2000": {"metadata": {"video_id": "video_2000", "num_frames": 5, "split": "train"},
                          "point_tracking": []}}
    path = tmp_path / "point_tracking_valid.json"
    path.write_text(json.dumps(ann))
    return path, tmp_path / "videos", video


@pytest.mark.parametrize("layout", ["2K", "K2"])
def test_perception_test(tmp_path, layout):
    ann, videos, video = perception_test_files(tmp_path, layout)
    out = dict(load_perception_test(ann, videos))
    assert list(out) == ["video_1009"]  # the entry without point tracks is skipped
    rec = out["video_1009"]
    assert rec["video"].shape == video.shape
    assert np.abs(rec["video"].astype(float) - video).mean() / 255 < 8 / 255
    expected_occ = np.ones((2, 8), bool)
    expected_occ[0, [0, 1, 2, 5, 6]] = False
    expected_occ[1, [3, 4, 7]] = False
    np.testing.assert_array_equal(rec["occluded"], expected_occ)
    np.testing.assert_allclose(rec["points"][0, 5], [0.6, 0.5], atol=1e-6)  # stored (y, x) -> (x, y)
    np.testing.assert_allclose(rec["points"][1, 7], [0.4, 0.7], atol=1e-6)
    np.testing.assert_allclose(rec["points"][0, 3], [0.3 + (0.6 - 0.3) / 3, 0.2 + 0.1], atol=1e-6)
    assert np.isfinite(rec["points"]).all()
    assert list(load_tracking_data(ann, videos=videos)) == ["video_1009"]
    assert dict(load_perception_test(ann, videos, split="train")) == {}
    short = dict(load_perception_test(ann, videos, max_frames=4, frame_size=(16, 24)))["video_1009"]
    assert short["video"].shape == (4, 16, 24, 3) and short["occluded"].shape == (2, 4)


def test_perception_test_errors(tmp_path):
    ann, videos, _ = perception_test_files(tmp_path)
    (videos / "video_1009.mp4").rename(videos / "moved.mp4")
    with pytest.raises(FileNotFoundError, match="video_1009.mp4"):
        load_perception_test(ann, videos)
    assert list(load_perception_test(ann, videos, skip_missing=True)) == []
    (videos / "moved.mp4").rename(videos / "video_1009.mp4")
    data = json.loads(ann.read_text())
    data["video_1009"]["point_tracking"][1]["frame_ids"] = [3, 4, 9]  # past num_frames = 8
    ann.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"point_tracking\[1\]"):
        list(load_perception_test(ann, videos))
    ann.write_text("{not json")
    with pytest.raises(ValueError, match="JSON"):
        load_perception_test(ann, videos)
    with pytest.raises(ValueError, match="videos="):
        load_tracking_data(ann)
    (videos / "video_1009.mp4").write_bytes(b"\x00" * 100)
    track = {"frame_ids": [0], "points": [[0.5], [0.5]]}
    entry = {"metadata": {"video_id": "video_1009"}, "point_tracking": [track]}
    ann.write_text(json.dumps({"video_1009": entry}))
    with pytest.raises(ValueError, match="video_1009.mp4"):
        list(load_perception_test(ann, videos))


def test_unknown_format(tmp_path):
    path = save_npz_tracks({"a": make_record()}, tmp_path / "t.npz")
    with pytest.raises(ValueError, match="unknown tracking data format"):
        load_tracking_data(path, format="kubric")
