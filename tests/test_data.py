"""Tests for trecvit.data (real-video datasets, sampling, transforms, collation)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from trecvit.data import (
    RAND_AUGMENT_OPS,
    EvalTransform,
    TrainTransform,
    VideoClipDataset,
    build_dataset,
    center_crop,
    collate_videos,
    csv_dataset,
    eval_clip_indices,
    horizontal_flip,
    kinetics_dataset,
    mixup_cutmix,
    parse_views,
    rand_augment,
    random_resized_crop,
    resize_short_side,
    spatial_crops,
    ssv2_dataset,
    train_clip_indices,
    video_folder_dataset,
    worker_init_fn,
)
from trecvit.data import datasets as datasets_module
from trecvit.data.transforms import _RAND_AUGMENT_FNS

N_FRAMES, H, W = 20, 48, 64
STEP, BASE = 12, 10  # grey video: frame i has level BASE + STEP * i


# --------------------------------------------------------------------------- #
# helpers and fixtures: tiny real video files
# --------------------------------------------------------------------------- #
def _write_video(path: Path, frames: list[np.ndarray], codec: str = "mpeg4") -> Path:
    """Encode uint8 ``[H, W, 3]`` RGB frames (yuv420p) at 10 fps."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for arr in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")))
        container.mux(stream.encode())
    return path


def _gradient_frames(n: int = N_FRAMES, seed: int = 0) -> list[np.ndarray]:
    """Moving colour gradients (plenty of spatial and temporal variation)."""
    yy, xx = np.mgrid[0:H, 0:W]
    shift = 7 * seed
    return [
        np.stack([(4 * xx + 9 * i + shift) % 256, (5 * yy + 3 * i) % 256, (2 * (xx + yy) + 11 * i) % 256], -1)
        .astype(np.uint8)
        for i in range(n)
    ]


def _grey_frames(n: int = N_FRAMES) -> list[np.ndarray]:
    return [np.full((H, W, 3), BASE + STEP * i, np.uint8) for i in range(n)]


def _frame_ids(video: torch.Tensor) -> list[int]:
    """Source frame index of each frame of a grey clip ``[..., T, 3, H, W]``."""
    levels = video.mean(dim=(-3, -2, -1)).reshape(-1) * 255
    return [round((float(v) - BASE) / STEP) for v in levels]


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    """A small tree of videos: class folders, Kinetics names, SSv2 ids, a corrupt file."""
    root = tmp_path_factory.mktemp("videos")
    out = {
        "grey": _write_video(root / "grey.mp4", _grey_frames()),
        "grey_mkv": _write_video(root / "grey.mkv", _grey_frames()),  # no frame count in the container
        "short": _write_video(root / "short.mp4", _grey_frames(5)),
        # folder layout: root/folder/<class>/...
        "cat1": _write_video(root / "folder/cat/a.mp4", _gradient_frames(seed=1)),
        "cat2": _write_video(root / "folder/cat/sub/b.MKV", _gradient_frames(seed=2)),
        "dog1": _write_video(root / "folder/dog/c.avi", _gradient_frames(seed=3)),
        # Kinetics names, in nested folders
        "k1": _write_video(root / "kinetics/train/abseiling/abc_000010_000020.mp4", _gradient_frames(seed=4)),
        "k2": _write_video(root / "kinetics/train/zumba/def-_g_000003_000013.mkv", _gradient_frames(seed=5)),
        "k3": _write_video(root / "kinetics/val/xyz.mp4", _gradient_frames(seed=6)),
        # SSv2 ids
        "s1": _write_video(root / "ssv2/101.webm", _gradient_frames(16, seed=7), codec="libvpx"),
        "s2": _write_video(root / "ssv2/202.mp4", _gradient_frames(seed=8)),
    }
    corrupt = root / "folder/dog/corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).bytes(3000))
    out["corrupt"] = corrupt
    return out


# --------------------------------------------------------------------------- #
# sampling
# --------------------------------------------------------------------------- #
def test_parse_views():
    assert parse_views("4x3") == (4, 3)
    assert parse_views("1x1") == (1, 1)
    assert parse_views(" 2X3 ") == (2, 3)
    assert parse_views((2, 1)) == (2, 1)
    for bad in ("4", "4x", "0x3", "ax3", "4x3x2", (0, 1), (1,), 3):
        with pytest.raises(ValueError, match="views"):
            parse_views(bad)


def test_train_clip_indices():
    g = torch.Generator().manual_seed(0)
    starts = set()
    for _ in range(50):
        idx = train_clip_indices(20, 4, 3, g)
        assert len(idx) == 4 and np.all(np.diff(idx) == 3)
        assert 0 <= idx[0] and idx[-1] <= 19
        starts.add(idx[0])
    assert starts == set(range(20 - 9))  # every offset in [0, n - span] occurs
    a = train_clip_indices(100, 8, 2, torch.Generator().manual_seed(5))
    assert a == train_clip_indices(100, 8, 2, torch.Generator().manual_seed(5))
    # too short: start at 0, clamp to the last frame
    assert train_clip_indices(5, 4, 2, torch.Generator().manual_seed(1)) == [0, 2, 4, 4]
    assert train_clip_indices(1, 3, 1, torch.Generator()) == [0, 0, 0]
    with pytest.raises(ValueError, match="num_video_frames"):
        train_clip_indices(0, 4, 1, torch.Generator())


def test_eval_clip_indices():
    assert eval_clip_indices(20, 4, 2, 1) == [[6, 8, 10, 12]]  # centred: max_start 13 -> 6
    clips = eval_clip_indices(20, 4, 2, 3)
    assert [c[0] for c in clips] == [0, 6, 13] and clips[-1][-1] == 19
    assert eval_clip_indices(3, 4, 1, 2) == [[0, 1, 2, 2], [0, 1, 2, 2]]


# --------------------------------------------------------------------------- #
# transforms
# --------------------------------------------------------------------------- #
def _clip(t: int = 4, h: int = 24, w: int = 40) -> torch.Tensor:
    return torch.rand(t, 3, h, w, generator=torch.Generator().manual_seed(0))


def test_geometric_transforms_shapes():
    video = _clip()
    assert resize_short_side(video, 12).shape == (4, 3, 12, 20)
    assert resize_short_side(video, 24) is video
    assert center_crop(video, 20).shape == (4, 3, 20, 20)
    assert center_crop(video, (10, 30)).shape == (4, 3, 10, 30)
    with pytest.raises(ValueError, match="does not fit"):
        center_crop(video, 30)
    crops = spatial_crops(video, 24, 3)  # landscape: left / centre / right
    assert [c.shape for c in crops] == [(4, 3, 24, 24)] * 3
    torch.testing.assert_close(crops[0], video[..., :24])
    torch.testing.assert_close(crops[1], video[..., 8:32])
    torch.testing.assert_close(crops[2], video[..., 16:])
    portrait = spatial_crops(video.transpose(-1, -2), 24, 3)
    torch.testing.assert_close(portrait[2], video.transpose(-1, -2)[..., 16:, :])
    assert len(spatial_crops(video, 24, 1)) == 1
    with pytest.raises(ValueError, match="num_crops"):
        spatial_crops(video, 24, 2)
    torch.testing.assert_close(horizontal_flip(video)[..., 0], video[..., -1])
    with pytest.raises(ValueError, match=r"\[T, 3, H, W\]"):
        resize_short_side(torch.zeros(3, 8, 8), 4)


def test_random_resized_crop():
    video = _clip()
    out = random_resized_crop(video, 16, generator=torch.Generator().manual_seed(3))
    assert out.shape == (4, 3, 16, 16) and out.min() >= 0 and out.max() <= 1
    again = random_resized_crop(video, 16, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(out, again)
    assert random_resized_crop(video, (8, 12), scale=(1.0, 1.0), ratio=(1.0, 1.0)).shape == (4, 3, 8, 12)
    # a constant-in-time clip stays constant in time: one crop for all frames
    static = video[:1].expand(4, -1, -1, -1)
    out = random_resized_crop(static, 16, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(out[0], out[3])
    with pytest.raises(ValueError, match="scale"):
        random_resized_crop(video, 16, scale=(0.5, 0.1))


@pytest.mark.parametrize("op", RAND_AUGMENT_OPS)
def test_rand_augment_ops_keep_range(op):
    video = _clip()
    for sign in (1, -1):
        out = _RAND_AUGMENT_FNS[op](video, 1.0, sign)
        assert out.shape == video.shape and out.dtype == video.dtype
        assert out.min() >= 0 and out.max() <= 1, op
        if op not in ("autocontrast", "equalize"):  # the others are the identity at magnitude 0
            torch.testing.assert_close(_RAND_AUGMENT_FNS[op](video, 0.0, sign), video, atol=2 / 255, rtol=0)
    low_contrast = 0.25 + 0.5 * video
    stretched = _RAND_AUGMENT_FNS[op](low_contrast, 1.0, 1)
    if op in ("autocontrast", "equalize"):
        assert stretched.min() < 0.02 and stretched.max() > 0.98


def test_rand_augment():
    video = _clip()
    out = rand_augment(video, 3, 9, torch.Generator().manual_seed(0))
    assert out.shape == video.shape and out.min() >= 0 and out.max() <= 1
    torch.testing.assert_close(out, rand_augment(video, 3, 9, torch.Generator().manual_seed(0)))
    assert rand_augment(video, 0, 9) is video
    with pytest.raises(ValueError, match="magnitude"):
        rand_augment(video, 2, 11)


def test_mixup_cutmix():
    b, k = 6, 5
    videos = torch.rand(b, 4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([0, 1, 2, 3, 4, 0])
    same, y = mixup_cutmix(videos, targets, k)
    assert same is videos
    torch.testing.assert_close(y, torch.nn.functional.one_hot(targets, k).float())
    _, y = mixup_cutmix(videos, targets, k, label_smoothing=0.1)
    assert torch.allclose(y.max(1).values, torch.tensor(0.92)) and torch.allclose(y.sum(1), torch.ones(b))
    for kwargs in ({"mixup_alpha": 0.8}, {"cutmix_alpha": 1.0}, {"mixup_alpha": 0.8, "cutmix_alpha": 1.0}):
        for seed in range(4):
            mixed, y = mixup_cutmix(videos, targets, k, label_smoothing=0.1, generator=torch.Generator().manual_seed(seed), **kwargs)
            assert mixed.shape == videos.shape and y.shape == (b, k)
            torch.testing.assert_close(y.sum(1), torch.ones(b))
            assert mixed.min() >= 0 and mixed.max() <= 1
    # CutMix: the same box in every frame; the pasted area matches the target weight
    mixed, y = mixup_cutmix(videos, targets, k, cutmix_alpha=1.0, generator=torch.Generator().manual_seed(1))
    pasted = (mixed != videos).any(dim=2)  # (B, T, H, W)
    assert torch.equal(pasted[:, 0:1].expand_as(pasted), pasted)
    lam = 1 - pasted[0, 0].float().mean()
    torch.testing.assert_close(y[1], torch.tensor([0, lam, 0, 0, 1 - lam]))  # class 1 mixed with class 4
    with pytest.raises(ValueError, match="targets"):
        mixup_cutmix(videos, targets + 1, k)


def test_train_and_eval_transforms():
    uint8 = (torch.rand(4, 3, 30, 40) * 255).to(torch.uint8)
    t = TrainTransform(16, min_scale=0.3, randaug_ops=2, randaug_magnitude=5)
    out = t(uint8, torch.Generator().manual_seed(0))
    assert out.shape == (4, 3, 16, 16) and out.dtype == torch.float32 and out.min() >= 0 and out.max() <= 1
    torch.testing.assert_close(out, t(uint8, torch.Generator().manual_seed(0)))
    assert TrainTransform((12, 20))(uint8.float() / 255, torch.Generator()).shape == (4, 3, 12, 20)
    e = EvalTransform(16, 3)(uint8)
    assert e.shape == (3, 4, 3, 16, 16) and e.min() >= 0 and e.max() <= 1
    assert EvalTransform(16)(uint8).shape == (1, 4, 3, 16, 16)


# --------------------------------------------------------------------------- #
# dataset constructors
# --------------------------------------------------------------------------- #
def test_video_folder_dataset(videos):
    root = videos["cat1"].parents[1]
    ds = video_folder_dataset(root, num_frames=4)
    assert ds.classes == ["cat", "dog"] and ds.num_classes == 2 and ds.num_missing == 0
    assert sorted((Path(p).name, label) for p, label in ds.items) == [
        ("a.mp4", 0), ("b.MKV", 0), ("c.avi", 1), ("corrupt.mp4", 1)
    ]
    ds = video_folder_dataset(root, classes=["dog", "cat", "bird"], num_frames=4)
    assert {Path(p).name: label for p, label in ds.items}["a.mp4"] == 1
    with pytest.raises(ValueError, match="not in classes"):
        video_folder_dataset(root, classes=["cat"], num_frames=4)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        video_folder_dataset(root / "nowhere", num_frames=4)


def test_csv_dataset(videos, tmp_path):
    folder = videos["cat1"].parents[1]
    lines = ["path,label", f"{videos['cat1']},cat", "cat/sub/b.MKV,cat", '"dog/c.avi",dog', ""]
    (tmp_path / "names.csv").write_text("\n".join(lines))
    ds = csv_dataset(tmp_path / "names.csv", video_root=folder, num_frames=4)
    assert ds.classes == ["cat", "dog"] and [label for _, label in ds.items] == [0, 0, 1]
    assert ds.items[1][0] == str(folder / "cat/sub/b.MKV")

    # space separated, integer labels, paths relative to the list file's folder
    (folder / "list.txt").write_text("# comment\ncat/a.mp4 2\ndog/c.avi 0\n")
    ds = csv_dataset(folder / "list.txt", num_frames=4)
    assert ds.classes == ["0", "1", "2"] and ds.items == [(str(folder / "cat/a.mp4"), 2), (str(folder / "dog/c.avi"), 0)]
    ds = csv_dataset(folder / "list.txt", classes=["x", "y", "z"], num_frames=4)
    assert ds.classes == ["x", "y", "z"]

    # names with a given class list; unknown names and bad lines name the line
    (tmp_path / "val.csv").write_text(f"{videos['dog1']},dog\n{videos['cat1']},1\n")
    ds = csv_dataset(tmp_path / "val.csv", classes=["dog", "cat"], num_frames=4)
    assert [label for _, label in ds.items] == [0, 1]
    (tmp_path / "bad.csv").write_text(f"{videos['dog1']},dog\n{videos['cat1']}\n")
    with pytest.raises(ValueError, match=r"bad\.csv:2: expected 'path,label'"):
        csv_dataset(tmp_path / "bad.csv", num_frames=4)
    (tmp_path / "unknown.csv").write_text(f"{videos['dog1']},dog\n{videos['cat1']},lion\n")
    with pytest.raises(ValueError, match=r"unknown\.csv:2: unknown class name 'lion'"):
        csv_dataset(tmp_path / "unknown.csv", classes=["dog", "cat"], num_frames=4)
    (tmp_path / "mixed.csv").write_text(f"{videos['dog1']},dog\n{videos['cat1']},1\n")
    with pytest.raises(ValueError, match=r"mixed\.csv:2"):
        csv_dataset(tmp_path / "mixed.csv", num_frames=4)
    with pytest.raises(FileNotFoundError, match="absent.csv"):
        csv_dataset(tmp_path / "absent.csv", num_frames=4)


def test_missing_files_one_warning(videos, tmp_path):
    lines = [f"{videos['cat1']} 0", "gone/one.mp4 0", "gone/two.mp4 1", f"{videos['dog1']} 1"]
    (tmp_path / "list.txt").write_text("\n".join(lines))
    with pytest.warns(UserWarning, match=r"2 of 4 video files listed in .*list\.txt do not exist") as record:
        ds = csv_dataset(tmp_path / "list.txt", num_frames=4)
    assert len(record) == 1
    assert len(ds) == 2 and ds.num_missing == 2
    assert ds.missing_examples == [str(tmp_path / "gone/one.mp4"), str(tmp_path / "gone/two.mp4")]
    with pytest.raises(ValueError, match="none of the 1 video files"):
        VideoClipDataset([("gone.mp4", 0)], ["a"], num_frames=4)


def test_kinetics_dataset(videos, tmp_path):
    root = videos["k1"].parents[2]
    csv_text = (
        "label,youtube_id,time_start,time_end,split,is_cc\n"
        "abseiling,abc,10,20,train,0\n"
        "zumba,def-_g,3,13,train,0\n"
        '"air drumming",xyz,0,10,val,0\n'
        "zumba,missing1,0,10,train,0\n"
    )
    (tmp_path / "k.csv").write_text(csv_text)
    with pytest.warns(UserWarning, match="1 of 3"):
        train = kinetics_dataset(tmp_path / "k.csv", root, split="train", num_frames=4)
    assert train.classes == ["abseiling", "zumba"] and train.num_missing == 1
    assert train.items == [(str(videos["k1"]), 0), (str(videos["k2"]), 1)]
    assert train.missing_examples == [str(root / "missing1_000000_000010.mp4")]
    val = kinetics_dataset(tmp_path / "k.csv", root, split="val", classes=["abseiling", "air drumming", "zumba"], num_frames=4)
    assert val.items == [(str(videos["k3"]), 1)]  # found by youtube_id alone
    everything = _quiet(kinetics_dataset, tmp_path / "k.csv", root, num_frames=4)
    assert everything.classes == ["abseiling", "air drumming", "zumba"] and len(everything) == 3
    with pytest.raises(ValueError, match="split='test'"):
        kinetics_dataset(tmp_path / "k.csv", root, split="test", num_frames=4)
    with pytest.raises(ValueError, match=r"k\.csv:3: unknown class name 'zumba'"):
        kinetics_dataset(tmp_path / "k.csv", root, classes=["abseiling"], num_frames=4)
    (tmp_path / "test.csv").write_text("youtube_id,time_start,time_end,split\nabc,10,20,test\n")
    with pytest.raises(ValueError, match="no 'label' column"):
        kinetics_dataset(tmp_path / "test.csv", root, num_frames=4)


def test_ssv2_dataset(videos, tmp_path):
    root = videos["s1"].parent
    labels = {"Putting something on something": "1", "Pushing something from left to right": "0"}
    annotations = [
        {"id": "101", "template": "Putting [something] on [something]", "label": "putting a cup on a table",
         "placeholders": ["a cup", "a table"]},
        {"id": "202", "template": "Pushing [something] from left to right", "label": "pushing a pen from left to right",
         "placeholders": ["a pen"]},
    ]
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    (tmp_path / "train.json").write_text(json.dumps(annotations))
    ds = ssv2_dataset(tmp_path / "train.json", tmp_path / "labels.json", root, num_frames=4, hflip=False)
    assert ds.classes == ["Pushing something from left to right", "Putting something on something"]
    assert ds.items == [(str(videos["s1"]), 1), (str(videos["s2"]), 0)]
    assert ds[0]["video"].shape == (4, 3, 224, 224)  # WebM: the frame count comes from counting packets
    (tmp_path / "test.json").write_text(json.dumps([{"id": "101"}]))
    with pytest.raises(ValueError, match="no 'template'"):
        ssv2_dataset(tmp_path / "test.json", tmp_path / "labels.json", root, num_frames=4)
    with pytest.raises(ValueError, match="class order"):
        ssv2_dataset(tmp_path / "train.json", tmp_path / "labels.json", root, classes=["a", "b"], num_frames=4)


def test_build_dataset(videos, tmp_path):
    folder = videos["cat1"].parents[1]
    assert build_dataset("folder", folder, num_frames=4).classes == ["cat", "dog"]
    (tmp_path / "l.txt").write_text("cat/a.mp4 0\n")
    assert len(build_dataset("CSV", tmp_path / "l.txt", video_root=folder, num_frames=4)) == 1
    with pytest.raises(ValueError, match="unknown dataset format 'hdf5'"):
        build_dataset("hdf5", folder, num_frames=4)
    with pytest.raises(ValueError, match="does not use split"):
        build_dataset("folder", folder, split="train", num_frames=4)
    with pytest.raises(ValueError, match="needs video_root"):
        build_dataset("kinetics", tmp_path / "l.txt", num_frames=4)
    with pytest.raises(ValueError, match="needs labels"):
        build_dataset("ssv2", tmp_path / "l.txt", video_root=folder, num_frames=4)


# --------------------------------------------------------------------------- #
# samples
# --------------------------------------------------------------------------- #
def test_corrupt_file_is_a_failed_sample(videos):
    ds = VideoClipDataset([(videos["cat1"], 0), (videos["corrupt"], 1)], ["cat", "dog"], num_frames=4, image_size=32)
    bad = ds[1]
    assert bad["video"] is None and bad["label"] == 1 and bad["index"] == 1
    assert str(videos["corrupt"]) in bad["error"]
    batch = collate_videos([ds[0], bad])
    assert batch["video"].shape == (1, 4, 3, 32, 32)
    assert batch["label"].tolist() == [0] and batch["index"].tolist() == [0]
    assert batch["failed"] == [(1, bad["error"])]
    empty = collate_videos([bad])
    assert empty["video"] is None and empty["label"].shape == (0,) and empty["failed"] == [(1, bad["error"])]


def test_train_samples_deterministic(videos):
    items = [(videos["cat1"], 0), (videos["dog1"], 1), (videos["short"], 0)]
    ds = VideoClipDataset(items, ["cat", "dog"], num_frames=8, stride=2, image_size=32, randaug_ops=2, seed=3)
    sample = ds[0]
    video = sample["video"]
    assert sample["label"] == 0 and sample["index"] == 0
    assert video.shape == (8, 3, 32, 32) and video.dtype == torch.float32
    assert video.min() >= 0 and video.max() <= 1 and video.std() > 0.05
    assert ds[2]["video"].shape == (8, 3, 32, 32)  # 5-frame video: the last frame repeats
    other = VideoClipDataset(items, ["cat", "dog"], num_frames=8, stride=2, image_size=32, randaug_ops=2, seed=3)
    torch.testing.assert_close(other[0]["video"], video, rtol=0, atol=0)
    torch.testing.assert_close(ds[0]["video"], video, rtol=0, atol=0)
    ds.set_epoch(1)
    assert not torch.equal(ds[0]["video"], video)
    ds.set_epoch(0)
    torch.testing.assert_close(ds[0]["video"], video, rtol=0, atol=0)


def test_train_offsets_cover_the_video(videos):
    ds = VideoClipDataset([(videos["grey"], 0)], ["a"], num_frames=4, stride=3, image_size=16, hflip=False, min_scale=1.0)
    seen = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        ids = _frame_ids(ds[0]["video"])
        assert np.all(np.diff(ids) == 3), ids
        seen.add(ids[0])
    assert len(seen) > 3 and max(seen) <= N_FRAMES - 10


@pytest.mark.parametrize("name", ["grey", "grey_mkv"])
def test_eval_views(videos, name):
    ds = VideoClipDataset([(videos[name], 0)], ["a"], num_frames=4, stride=2, image_size=24, train=False, views="2x3")
    video = ds[0]["video"]
    assert video.shape == (6, 4, 3, 24, 24) and ds.num_views == 6
    expected = eval_clip_indices(N_FRAMES, 4, 2, 2)
    assert _frame_ids(video) == [i for clip in expected for _ in range(3) for i in clip]
    gradient = VideoClipDataset([(videos["cat1"], 0)], ["a"], num_frames=4, image_size=24, train=False, views="1x3")
    crops = gradient[0]["video"]
    assert crops.shape == (3, 4, 3, 24, 24) and not torch.equal(crops[0], crops[2])


def test_frame_count_overestimate_is_replanned(videos, monkeypatch):
    """A container whose packet count over-reports the frames still gives the true-count clip."""
    ds = VideoClipDataset([(videos["grey_mkv"], 0)], ["a"], num_frames=4, stride=2, image_size=16, train=False, views="3x1")
    expected = ds[0]["video"]
    count = datasets_module._count_packets
    monkeypatch.setattr(datasets_module, "_count_packets", lambda c, s, **kw: count(c, s, **kw) + 9)
    torch.testing.assert_close(ds[0]["video"], expected, rtol=0, atol=0)
    assert _frame_ids(expected) == [i for clip in eval_clip_indices(N_FRAMES, 4, 2, 3) for i in clip]


def test_dataloader_workers_match(videos):
    items = [(videos[k], 0) for k in ("cat1", "corrupt", "dog1", "k1", "k2", "short")]
    ds = VideoClipDataset(items, ["a"], num_frames=4, stride=2, image_size=16, randaug_ops=1, seed=7)
    ds.set_epoch(2)

    def batches(num_workers: int) -> list[dict]:
        loader = DataLoader(ds, batch_size=3, num_workers=num_workers, collate_fn=collate_videos,
                            worker_init_fn=worker_init_fn if num_workers else None)
        return list(loader)

    serial, parallel = batches(0), batches(2)
    assert len(serial) == len(parallel) == 2
    for a, b in zip(serial, parallel):
        torch.testing.assert_close(a["video"], b["video"], rtol=0, atol=0)
        assert torch.equal(a["index"], b["index"]) and a["failed"] == b["failed"]
    assert serial[0]["video"].shape == (2, 4, 3, 16, 16)
    assert [i for i, _ in serial[0]["failed"]] == [1]


def test_decodes_only_up_to_the_last_needed_frame(videos, monkeypatch):
    converted, decoded = [], []
    to_uint8, decode = datasets_module._frame_to_uint8, datasets_module._decode

    def spy_convert(frame, size):
        converted.append(size)
        return to_uint8(frame, size)

    def spy_decode(*args):
        for index, frame in decode(*args):
            decoded.append(index)
            yield index, frame

    monkeypatch.setattr(datasets_module, "_frame_to_uint8", spy_convert)
    monkeypatch.setattr(datasets_module, "_decode", spy_decode)
    ds = VideoClipDataset([(videos["grey"], 0)], ["a"], num_frames=4, stride=2, image_size=16, hflip=False,
                          min_scale=1.0, seed=1)
    ids = _frame_ids(ds[0]["video"])
    assert len(converted) == 4 and decoded == list(range(ids[-1] + 1))
    assert converted[0] == (16, 21)  # scaled while decoding: short side ceil(16 / sqrt(1.0)) = 16
