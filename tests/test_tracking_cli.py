"""End to end through the command line: synthetic-tracks, train-tracker (on a TRecViT folder, as an
MAE-pretrained encoder is), eval-tracker (and the static baseline), track; and their bad input."""

from __future__ import annotations

import json
import pickle

import av
import numpy as np
import pytest

from trecvit import TRecViT, TRecViTConfig
from trecvit.cli import main
from trecvit.tracking import PointTracker
from trecvit.tracking.synthetic import SyntheticTracks

pytestmark = pytest.mark.slow


def write_mp4(path, frames: np.ndarray, fps: int = 8) -> None:
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        for t, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
            frame.pts = t
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny tracker trained for a few steps on a saved TRecViT encoder, and a held-out file."""
    root = tmp_path_factory.mktemp("tracking")
    encoder = TRecViTConfig(width=32, depth=1, num_heads=2, mlp_dim=64, image_size=32, patch_size=8,
                            num_classes=2, rep_size=0, frames_per_clip=6)
    TRecViT(encoder).save_pretrained(root / "encoder")
    rc = main(["train-tracker", "--encoder", str(root / "encoder"), "--image-size", "32", "--num-frames", "6",
               "--synthetic-train-size", "8", "--synthetic-val-size", "2", "--batch-size", "4",
               "--max-steps", "3", "--warmup-steps", "1", "--readout-width", "32", "--readout-heads", "2",
               "--num-points", "8", "--out-dir", str(root / "run"), "--no-progress", "--no-tensorboard"])
    assert rc == 0
    rc = main(["synthetic-tracks", str(root / "held.pkl"), "--num-videos", "2", "--frames", "6",
               "--image-size", "32", "--points", "8", "--mp4", str(root / "mp4")])
    assert rc == 0
    return root


def test_train_tracker_writes_a_tracker_and_the_metrics(run):
    model_dir = run / "run" / "model"
    tracker = PointTracker.from_pretrained(model_dir)
    assert tracker.encoder_frozen is False  # a loaded model is trainable; the run kept it frozen:
    saved = TRecViT.from_pretrained(run / "encoder")
    for key, value in saved.encoder.state_dict().items():
        assert np.array_equal(value.numpy(), tracker.encoder.state_dict()[key].numpy()), key
    metrics = json.loads((run / "run" / "tapvid.json").read_text())
    assert set(metrics["videos"]) and 0 <= metrics["mean"]["average_jaccard"] <= 1
    assert (run / "run" / "curves.png").is_file()
    assert sorted(p.name for p in (run / "mp4").iterdir()) == ["synthetic_1000_00000.mp4",
                                                                "synthetic_1000_00001.mp4"]


def test_eval_tracker_needs_allow_pickle_then_prints_the_table(run, capsys):
    model_dir = str(run / "run" / "model")
    assert main(["eval-tracker", "--checkpoint", model_dir, "--data", str(run / "held.pkl")]) == 2
    assert "--allow-pickle" in capsys.readouterr().err
    assert main(["eval-tracker", "--checkpoint", model_dir, "--data", str(run / "held.pkl"),
                 "--allow-pickle"]) == 0
    out = capsys.readouterr().out
    assert "synthetic_1000_00000" in out and "mean" in out and "AJ" in out
    assert main(["eval-tracker", "--baseline", "static", "--data", str(run / "held.pkl"), "--allow-pickle",
                 "--query-mode", "strided", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "static-point baseline" and result["query_mode"] == "strided"
    assert len(result["videos"]) == 2


def test_the_static_baseline_scores_perfectly_on_still_points(tmp_path, capsys):
    video = np.zeros((5, 32, 32, 3), dtype=np.uint8)
    points = np.tile(np.array([[0.25, 0.5], [0.7, 0.1]], dtype=np.float32)[:, None], (1, 5, 1))
    records = {"still": {"video": video, "points": points, "occluded": np.zeros((2, 5), dtype=bool)}}
    (tmp_path / "still.pkl").write_bytes(pickle.dumps(records))
    assert main(["eval-tracker", "--baseline", "static", "--data", str(tmp_path / "still.pkl"),
                 "--allow-pickle", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mean"]["average_jaccard"] == pytest.approx(1.0)


def test_track_writes_the_video_the_strip_and_the_tracks(run, tmp_path, capsys):
    frames = SyntheticTracks(1, num_frames=7, image_size=48, seed=5)[0]["video"]
    write_mp4(tmp_path / "clip.mp4", frames)
    model_dir = str(run / "run" / "model")
    rc = main(["track", str(tmp_path / "clip.mp4"), "--checkpoint", model_dir, "--points", "5,5;40.5,20",
               "--query-frame", "1", "--out", str(tmp_path / "t.mp4"), "--strip", str(tmp_path / "s.png"),
               "--tracks", str(tmp_path / "t.npz")])
    assert rc == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "frames/s" in out and "point 1" in out
    saved = np.load(tmp_path / "t.npz")
    assert saved["tracks"].shape == (2, 7, 2) and np.isnan(saved["tracks"][:, 0]).all()
    assert np.isfinite(saved["tracks"][:, 1:]).all()
    np.testing.assert_allclose(saved["tracks"][:, 1], [[5, 5], [40.5, 20]], atol=1e-3)
    with av.open(str(tmp_path / "t.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 7
    assert (tmp_path / "s.png").stat().st_size > 0
    rc = main(["track", str(tmp_path / "clip.mp4"), "--checkpoint", model_dir, "--grid", "3", "--json"])
    assert rc == 0
    assert len(json.loads(capsys.readouterr().out)["tracks"]) == 9


@pytest.mark.parametrize("extra, match", [
    (["--points", "50,5"], "outside the 48x48 video frame"),
    (["--points", "5,5", "--query-frame", "30"], "past the end"),
    (["--points", "5;5"], "x,y"),
    ([], "--points"),
    (["--points", "5,5", "--tracks", "x.csv"], ".npz or .json"),
])
def test_track_bad_input(run, tmp_path, capsys, extra, match):
    frames = SyntheticTracks(1, num_frames=4, image_size=48, seed=5)[0]["video"]
    write_mp4(tmp_path / "clip.mp4", frames)
    rc = main(["track", str(tmp_path / "clip.mp4"), "--checkpoint", str(run / "run" / "model"), *extra])
    assert rc == 2
    assert match in capsys.readouterr().err


def test_train_tracker_bad_input(tmp_path, capsys):
    assert main(["train-tracker", "--out-dir", str(tmp_path / "r")]) == 2
    assert "--encoder" in capsys.readouterr().err
    assert main(["train-tracker", "--encoder", str(tmp_path / "missing"), "--out-dir", str(tmp_path / "r")]) == 2
    assert not (tmp_path / "r").exists()


def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path):
    import shutil

    import torch

    common = ["--encoder", "random", "--variant", "mu", "--model", "patch_size=8", "--image-size", "32",
              "--num-frames", "5", "--synthetic-train-size", "8", "--synthetic-val-size", "0",
              "--batch-size", "4", "--max-steps", "4", "--save-every", "2", "--warmup-steps", "1",
              "--readout-width", "32", "--readout-heads", "2", "--num-points", "6", "--no-progress",
              "--no-tensorboard"]
    assert main(["train-tracker", *common, "--out-dir", str(tmp_path / "a")]) == 0
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    (tmp_path / "b" / "checkpoints" / "step_00000004.pt").unlink()  # as if killed after step 2
    shutil.rmtree(tmp_path / "b" / "model")
    assert main(["train-tracker", "--resume", "--out-dir", str(tmp_path / "b")]) == 0
    a = PointTracker.from_pretrained(tmp_path / "a" / "model").state_dict()
    b = PointTracker.from_pretrained(tmp_path / "b" / "model").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_ddp_two_cpu_processes_equal_one_process(tmp_path):
    import os
    import subprocess
    import sys

    import torch

    common = ["train-tracker", "--encoder", "random", "--variant", "mu", "--model", "patch_size=8",
              "--image-size", "32", "--num-frames", "5", "--synthetic-train-size", "8",
              "--synthetic-val-size", "2", "--batch-size", "4", "--max-steps", "3", "--warmup-steps", "1",
              "--readout-width", "32", "--readout-heads", "2", "--num-points", "6", "--no-progress",
              "--no-tensorboard"]
    assert main([*common, "--out-dir", str(tmp_path / "single")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
                           "--nproc-per-node", "2", "-m", "trecvit.cli", *common,
                           "--out-dir", str(tmp_path / "ddp")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = PointTracker.from_pretrained(tmp_path / "single" / "model").state_dict()
    b = PointTracker.from_pretrained(tmp_path / "ddp" / "model").state_dict()
    diffs = torch.cat([(b[k].float() - a[k].float()).abs().flatten() for k in a])
    # float noise of the all-reduce, which AdamW's first steps amplify on gradients near zero
    assert diffs.max() < 1e-3 and diffs.mean() < 1e-6, (diffs.max(), diffs.mean())
    one = json.loads((tmp_path / "single" / "tapvid.json").read_text())
    two = json.loads((tmp_path / "ddp" / "tapvid.json").read_text())
    assert one["videos"].keys() == two["videos"].keys()  # every held-out video scored once
    assert two["mean"]["average_jaccard"] == pytest.approx(one["mean"]["average_jaccard"], abs=1e-4)
