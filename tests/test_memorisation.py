"""The long-video memorisation task (``trecvit memorise``, paper section 5.4, Table 6): the two
reconstruction models, the walking-tour generator, the video sources and a tiny run of the command."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from trecvit.cli import main
from trecvit.memorisation import (FolderWindows, MemoriseConfig, SyntheticTours, TRecViTMemoriser,
                                  ViViTMemoriser, WalkingTour, baseline_psnr, build_config, build_model, evaluate)
from trecvit.memorisation.task import frame_psnr

SIZE, PATCH = 16, 8


def tiny(kind: str, train_frames: int = 4, seed: int = 0, **overrides):
    """A tiny memoriser (width 32, depth 1) with every parameter moved away from its init, so that
    the zero-initialised head and gates all matter."""
    fields = dict(width=32, depth=1, mlp_dim=64, num_heads=2, **overrides)
    config = build_config(kind, "mu", image_size=SIZE, patch_size=PATCH, train_frames=train_frames,
                          overrides=fields)
    torch.manual_seed(seed)
    model = build_model(kind, config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def video(b: int = 2, t: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, t, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- models
@pytest.mark.parametrize("kind", ["trecvit", "vivit"])
def test_reconstruction_is_a_frame(kind):
    model = tiny(kind)
    out = model(video(3, 4))
    assert out.shape == (3, 3, SIZE, SIZE)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_untrained_head_outputs_grey():
    model = build_model("trecvit", build_config("trecvit", "mu", image_size=SIZE, patch_size=PATCH, train_frames=4))
    assert torch.allclose(model(video(1, 4)), torch.full((1, 3, SIZE, SIZE), 0.5))


def test_trecvit_readout_is_causal():
    """The prediction after frame T does not depend on later frames: it equals the model run on the
    first T frames of the longer video, at every T."""
    model = tiny("trecvit")
    clip = video(2, 9)
    with torch.no_grad():
        every = model.readout(clip)  # (b, T, 3, H, W)
        assert every.shape == (2, 9, 3, SIZE, SIZE)
        for t in (1, 4, 9):
            torch.testing.assert_close(model(clip[:, :t]), every[:, t - 1], rtol=1e-5, atol=1e-5)
        changed = clip.clone()
        changed[:, 5:] = torch.rand_like(changed[:, 5:])
        after = model.readout(changed)
    torch.testing.assert_close(after[:, :5], every[:, :5], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(after[:, 5:], every[:, 5:])


def test_trecvit_runs_past_frames_per_clip_as_one_clip():
    model = tiny("trecvit", train_frames=4)  # frames_per_clip = 4: the encoder alone would cut 8 frames in 2
    clip = video(1, 8)
    with torch.no_grad():
        assert not torch.allclose(model(clip), model(clip[:, 4:]))  # the first 4 frames still count


def test_trecvit_class_token_is_dropped():
    model = tiny("trecvit", pool_type="tok")
    assert model.encoder.tokenizer.num_prefix_tokens == 1
    assert model(video(2, 4)).shape == (2, 3, SIZE, SIZE)


def test_vivit_posemb_resampling():
    """Nearest and linear differ on a longer video; at the training length both are the learnt one."""
    model = tiny("vivit", train_frames=4)
    assert model.config.tubelet_frames == 1 and model.posemb_resample == "nearest"
    posemb = model.encoder.posemb
    learnt = posemb.pos_embed.detach().clone()
    for mode in ("nearest", "linear"):
        with model.resampling(mode):
            assert model.posemb_resample == mode and model.config.posemb_resample == mode
            torch.testing.assert_close(posemb.resampled(4), learnt, rtol=0, atol=0)
    assert model.posemb_resample == "nearest"  # restored
    nearest = posemb.resampled(8)
    torch.testing.assert_close(nearest[:, 0::2], learnt, rtol=0, atol=0)  # each entry twice
    torch.testing.assert_close(nearest[:, 1::2], learnt, rtol=0, atol=0)
    with model.resampling("linear"):
        linear = posemb.resampled(8)
    assert not torch.allclose(nearest, linear)
    clip4, clip8 = video(2, 4), video(2, 8)
    with torch.no_grad():
        out4, out8 = model(clip4), model(clip8)
        with model.resampling("linear"):
            torch.testing.assert_close(model(clip4), out4)
            assert not torch.allclose(model(clip8), out8)
    with pytest.raises(ValueError, match="posemb_resample"):
        model.set_posemb_resample("cubic")


def test_build_config_errors():
    with pytest.raises(ValueError, match="unknown trecvit variant 'XL'"):
        build_config("trecvit", "XL", image_size=SIZE, patch_size=PATCH, train_frames=4)
    with pytest.raises(ValueError, match="no_such_field"):
        build_config("vivit", "mem", image_size=SIZE, patch_size=PATCH, train_frames=4,
                     overrides={"no_such_field": 1})
    assert isinstance(build_model("trecvit", build_config("trecvit", "mem", image_size=SIZE, patch_size=PATCH,
                                                          train_frames=4)), TRecViTMemoriser)
    assert isinstance(build_model("vivit", build_config("vivit", "mem", image_size=SIZE, patch_size=PATCH,
                                                        train_frames=4)), ViViTMemoriser)


# ------------------------------------------------------------------------- walking tours
def test_walking_tour_is_deterministic_and_varied():
    tour = WalkingTour(image_size=SIZE, seed=3)
    v = tour.video(5, 64)
    assert v.shape == (64, 3, SIZE, SIZE) and v.dtype == torch.float32
    assert float(v.min()) >= 0.0 and float(v.max()) <= 1.0 and float(v.std()) > 0.1
    torch.testing.assert_close(WalkingTour(image_size=SIZE, seed=3).video(5, 64), v, rtol=0, atol=0)
    assert (WalkingTour(image_size=SIZE, seed=4).video(5, 64) - v).abs().mean() > 0.1  # another seed
    assert (tour.video(6, 64) - v).abs().mean() > 0.1  # another index
    tours = tour.batch(range(4), 64)  # (4, 64, 3, H, W)
    adjacent = (tours[:, 1:] - tours[:, :-1]).pow(2).mean()
    far = (tours[:, 48:] - tours[:, :-48]).pow(2).mean()
    assert far > 3 * adjacent, (far, adjacent)


def test_walking_tour_longer_video_extends_the_shorter():
    tour = WalkingTour(image_size=SIZE, seed=0)
    torch.testing.assert_close(tour.video(2, 100)[:40], tour.video(2, 40), rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="num_frames"):
        tour.video(0, 0)


def test_synthetic_source_held_out_differs_from_training():
    src = SyntheticTours(SIZE, seed=0)
    train = src.train_batch(0, 2, 8)
    held = src.held_out(2, 8)
    assert train.shape == held.shape == (2, 8, 3, SIZE, SIZE)
    assert (train - held).abs().mean() > 0.05
    torch.testing.assert_close(src.held_out(2, 12)[:, :8], held, rtol=0, atol=1e-4)


def _write_video(path: Path, frames: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
        for _ in range(frames):
            arr = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")))
        container.mux(stream.encode())
    return path


def test_folder_windows(tmp_path):
    for i in range(2):
        _write_video(tmp_path / f"v{i}.mp4", 30, i)
    src = FolderWindows(tmp_path, SIZE, seed=0, held_out_frames=20)
    assert len(src.train_videos) == 1 and len(src.held_videos) == 1
    batch = src.train_batch(0, 3, 12)
    assert batch.shape == (3, 12, 3, SIZE, SIZE) and 0 <= float(batch.min()) and float(batch.max()) <= 1
    torch.testing.assert_close(src.train_batch(0, 3, 12), batch)
    held = src.held_out(2, 20)
    torch.testing.assert_close(src.held_out(2, 10), held[:, :10])
    with pytest.raises(ValueError, match="fewer than the 40"):
        src.train_batch(0, 1, 40)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        FolderWindows(tmp_path / "missing", SIZE, held_out_frames=8)


# ---------------------------------------------------------------------- task and metrics
def test_psnr_and_baselines():
    target = torch.full((2, 3, 4, 4), 0.5)
    assert torch.allclose(frame_psnr(target + 0.1, target), torch.full((2,), 20.0), atol=1e-4)
    assert torch.allclose(frame_psnr(target + 2.0, target), frame_psnr(torch.ones_like(target), target))  # clipped
    clips = torch.rand(3, 6, 3, 4, 4)
    base = baseline_psnr(clips, 6, 2)
    torch.testing.assert_close(base["last frame"], frame_psnr(clips[:, 5], clips[:, 1]))
    model = tiny("trecvit")
    ev = evaluate(model, video(3, 10), 8, 3, batch_size=2)
    assert ev.psnr.shape == (3,) and ev.recon.shape == (3, 3, SIZE, SIZE)
    assert ((ev.matched >= 1) & (ev.matched <= 8)).all()


@pytest.mark.parametrize("changes, message", [
    (dict(target_frame=64), "--target-frame 64 must be smaller than --train-frames 64"),
    (dict(test_frames=(64, 8)), "--test-frames 8 is shorter than --target-frame 16"),
    (dict(sweep_lengths=(4,)), "--sweep-lengths 4 is shorter"),
    (dict(models=("trecvit", "lstm")), "--models"),
    (dict(image_size=30), "multiple of --patch-size"),
    (dict(data="folder"), "--data-dir"),
])
def test_config_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        MemoriseConfig(**changes)


# ------------------------------------------------------------------------------ the CLI
TINY = ["--train-frames", "6", "--test-frames", "6,8", "--target-frame", "2", "--image-size", str(SIZE),
        "--patch-size", str(PATCH), "--trecvit-variant", "mu", "--vivit-variant", "mu", "--trecvit-model",
        "mlp_dim=32", "--vivit-model", "mlp_dim=32", "--steps", "3", "--batch-size", "2", "--warmup-steps", "1",
        "--val-videos", "3", "--sweep-lengths", "6,12", "--sweep-distances", "0,4", "--no-progress"]


@pytest.mark.slow
def test_cli_run_resume_and_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["memorise", "--out-dir", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    assert "| Model | Params | Frames train | Frames test |" in printed
    for name in ("results.md", "results.csv", "results.json", "sweep.png", "reconstructions.png", "run.json",
                 "trecvit/model.safetensors", "trecvit/config.json", "vivit/train_log.csv"):
        assert (out / name).is_file(), name
    data = json.loads((out / "results.json").read_text())
    rows = {(r["model"], r["interpolation"], r["frames_test"]) for r in data["rows"]}
    assert {("TRecViT", "none (recurrent)", 8), ("ViViT", "nearest", 8), ("ViViT", "linear", 12),
            ("clip mean", "-", 2), ("last frame", "-", 6)} <= rows
    table = (out / "results.md").read_text()
    assert "learnt (no resampling)" in table and "| ViViT | " in table and "| TRecViT | " in table
    assert (out / "sweep.png").stat().st_size < 300_000

    # an earlier run is never replaced silently
    assert main(["memorise", "--out-dir", str(out), *TINY]) == 2
    assert "--resume" in capsys.readouterr().err
    weights = (out / "vivit" / "model.safetensors").read_bytes()
    assert main(["memorise", "--out-dir", str(out), "--resume", *TINY]) == 0
    assert (out / "vivit" / "model.safetensors").read_bytes() == weights
    assert json.loads((out / "results.json").read_text())["rows"] == data["rows"]  # deterministic
    assert main(["memorise", "--out-dir", str(out), "--resume", *TINY[:-1], "--seed", "1", "--no-progress"]) == 2
    assert "trained with other training (seed)" in capsys.readouterr().err
    (out / "notes.txt").write_text("mine")
    assert main(["memorise", "--out-dir", str(out), "--overwrite", "--models", "trecvit", *TINY]) == 0
    assert not (out / "vivit").exists() and (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("argv, message", [
    (["--target-frame", "6"], "--target-frame 6 must be smaller than --train-frames 6"),
    (["--test-frames", "1"], "--test-frames 1 is shorter than --target-frame 2"),
    (["--data", "folder"], "--data folder needs --data-dir"),
    (["--data", "folder", "--data-dir", "/no/such/folder"], "no such folder"),
    (["--trecvit-model", "widht=8"], "widht"),
    (["--vivit-variant", "huge"], "unknown vivit variant 'huge'"),
])
def test_cli_bad_options(tmp_path, capsys, argv, message):
    assert main(["memorise", "--out-dir", str(tmp_path / "x"), *TINY, *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x" / "trecvit").exists()


def test_cli_bad_option_types(capsys):
    with pytest.raises(SystemExit):
        main(["memorise", "--out-dir", "x", "--models", "trecvit,lstm"])
    assert "expected trecvit, vivit" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["memorise", "--out-dir", "x", "--sweep-distances", "-1"])
    assert "distances must be >= 0" in capsys.readouterr().err
