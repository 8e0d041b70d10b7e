"""Masked-autoencoder pre-training: tube masks, token dropping, the decoder, losses, resume after SIGKILL,
the command line (pretrain, reconstruct, probe) and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from trecvit import TRecViT, TRecViTConfig
from trecvit.checkpoints.auto import MAE_ARCH
from trecvit.cli import main
from trecvit.layers.rglru import RGLRU
from trecvit.mae import MAEConfig, MaskedAutoencoder, PretrainConfig, Pretrainer, TubeMasking
from trecvit.mae.loss import mean_colour_baseline, patchify, psnr, reconstruction_loss, targets, unpatchify
from trecvit.mae.masking import num_kept
from trecvit.training.metrics import MetricsLog

ENC = TRecViTConfig(width=32, depth=2, num_heads=2, mlp_dim=64, patch_size=4, image_size=16, num_classes=3,
                    rep_size=0, frames_per_clip=4)
N = 16  # patches per 16x16 frame


def _model(**changes) -> MaskedAutoencoder:
    torch.manual_seed(0)
    return MaskedAutoencoder(MAEConfig(encoder=ENC, decoder_depth=1, **changes)).eval()


def _video(b=2, t=4, seed=0) -> torch.Tensor:
    return torch.rand(b, t, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ masks
def test_masks_keep_the_same_count_per_video_and_are_seeded_per_step_and_video():
    masking = TubeMasking(196, 0.9, seed=3)
    assert masking.num_keep == 20 == num_kept(196, 0.9)  # VideoMAE: 176 of 196 hidden
    keep = masking.batch(5, [0, 1, 2, 7])
    assert keep.shape == (4, 20) and keep.dtype == torch.int64
    assert all(len(set(row.tolist())) == 20 for row in keep)  # no repeats
    assert bool((keep.diff(dim=1) > 0).all())  # ascending
    assert torch.equal(keep, TubeMasking(196, 0.9, seed=3).batch(5, [0, 1, 2, 7]))  # deterministic
    assert not torch.equal(keep[0], masking.keep(6, 0))  # another step, another mask
    assert not torch.equal(keep[0], keep[1])  # another video, another mask
    assert not torch.equal(keep, TubeMasking(196, 0.9, seed=4).batch(5, [0, 1, 2, 7]))
    assert torch.equal(TubeMasking(16, 0.0).keep(0, 0), torch.arange(16))
    assert TubeMasking(16, 0.99).num_keep == 1
    dense = masking.dense(keep)
    assert dense.shape == (4, 196) and int((~dense).sum()) == 4 * 20


@pytest.mark.parametrize("ratio", [1.0, -0.1, 1.5, "0.5", True])
def test_a_mask_ratio_outside_0_1_is_refused(ratio):
    with pytest.raises(ValueError, match=r"mask_ratio must be a fraction in \[0, 1\)"):
        TubeMasking(16, ratio)
    with pytest.raises(ValueError, match=r"mask_ratio must be a fraction in \[0, 1\)"):
        MAEConfig(encoder=ENC, mask_ratio=ratio)


def test_the_mask_is_the_same_in_every_frame():
    model = _model()
    video = _video()
    keep = TubeMasking(N, 0.75).batch(0, [0, 1])
    from trecvit.mae.reconstruct import masked_input

    hidden = masked_input(video, keep, 4) != video  # (b, t, 3, H, W)
    assert torch.equal(hidden[:, :1].expand_as(hidden), hidden)
    assert model(video, keep).pred.shape == (2, 4, N, 48)


# ---------------------------------------------------------- token dropping
def test_ratio_0_is_exactly_the_unmasked_encoder():
    model = _model()
    video = _video()
    with torch.no_grad():
        assert torch.equal(model.encode_visible(video, TubeMasking(N, 0.0).batch(0, [0, 1])), model.encoder(video))


def test_dropped_patches_change_no_encoder_output_and_no_gradient():
    model = _model().train()
    video = _video()
    keep = TubeMasking(N, 0.75, seed=1).batch(0, [0, 1])
    changed = video.clone()
    hidden = TubeMasking(N, 0.75).dense(keep)  # (b, N) True where masked
    patches = patchify(changed, 4)
    patches[hidden[:, None].expand(-1, 4, -1)] = torch.rand(int(hidden.sum()) * 4, 48)
    changed = unpatchify(patches, 4, (4, 4))
    assert not torch.equal(changed, video)

    def grads(v):
        model.zero_grad()
        out = model.encode_visible(v, keep)
        out.square().sum().backward()
        return out.detach(), {n: p.grad.clone() for n, p in model.encoder.named_parameters() if p.grad is not None}

    out_a, grads_a = grads(video)
    out_b, grads_b = grads(changed)
    assert torch.equal(out_a, out_b)
    assert grads_a.keys() == grads_b.keys() and all(torch.equal(grads_a[k], grads_b[k]) for k in grads_a)


def test_the_recurrence_runs_over_the_kept_tubes_only():
    model = _model()
    widths = []
    hooks = [m.register_forward_hook(lambda mod, args, out: widths.append(args[0].shape[-2]))
             for m in model.encoder.modules() if isinstance(m, RGLRU)]
    keep = TubeMasking(N, 0.75).batch(0, [0, 1])  # 4 of 16 patches
    with torch.no_grad():
        model.encode_visible(_video(), keep)
    for h in hooks:
        h.remove()
    assert widths == [4 + 1] * ENC.depth  # the kept patches and the class token, in every layer


# ----------------------------------------------------------------- decoder
def test_the_autoencoder_is_causal_and_runs_frame_by_frame():
    model = _model()
    video = _video(t=4)
    keep = TubeMasking(N, 0.75, seed=2).batch(0, [0, 1])
    with torch.no_grad():
        pred = model(video, keep).pred
        later = video.clone()
        later[:, 2:] = torch.rand_like(later[:, 2:])
        pred_later = model(later, keep).pred
    assert torch.equal(pred[:, :2], pred_later[:, :2])  # frames 0-1 do not see frames 2-3
    assert not torch.allclose(pred[:, 2:], pred_later[:, 2:])
    state = model.init_state(2, keep.shape[1])
    steps = []
    for t in range(4):
        out, state = model.step(video[:, t], keep, state)
        steps.append(out)
    torch.testing.assert_close(torch.stack(steps, 1), pred, atol=1e-5, rtol=0)


def test_gradients_reach_every_parameter():
    model = _model().train()
    video = _video()
    keep = TubeMasking(N, 0.75).batch(0, [0, 1])
    reconstruction_loss(model(video, keep).pred, video, keep, 4).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert missing == []


def test_decoder_size_defaults_and_errors():
    cfg = MAEConfig(encoder=TRecViTConfig.from_variant("S"))
    assert (cfg.decoder_width, cfg.decoder_depth, cfg.decoder_heads, cfg.decoder_mlp_dim) == (192, 4, 3, 768)
    with pytest.raises(ValueError, match="decoder_width .* divisible by 4"):
        MAEConfig(encoder=ENC, decoder_width=30)
    with pytest.raises(ValueError, match="MAEConfig.decoder_width .* divisible by num_heads"):
        MAEConfig(encoder=ENC, decoder_width=36, decoder_heads=8)


# ------------------------------------------------------------------ losses
def test_each_loss_variant_against_a_hand_computation():
    video = _video(b=1, t=2)
    pred = torch.rand(1, 2, N, 48)
    keep = torch.tensor([[0, 5, 10, 15]])
    # patch (row 1, col 1) of frame 0, pixel (0, 0) is video[0, 0, :, 4, 4]
    assert torch.equal(patchify(video, 4)[0, 0, 5, :3], video[0, 0, :, 4, 4])
    assert torch.equal(unpatchify(patchify(video, 4), 4, (4, 4)), video)
    target = patchify(video, 4)
    full = ((pred - target) ** 2).mean()
    torch.testing.assert_close(reconstruction_loss(pred, video, keep, 4), full)
    masked = [i for i in range(N) if i not in (0, 5, 10, 15)]
    torch.testing.assert_close(reconstruction_loss(pred, video, keep, 4, masked_only=True),
                               ((pred - target)[:, :, masked] ** 2).mean())
    mean = target.mean(-1, keepdim=True)
    std = (target.var(-1, unbiased=False, keepdim=True) + 1e-6).sqrt()
    torch.testing.assert_close(targets(video, 4, norm_pix=True), (target - mean) / std)
    torch.testing.assert_close(reconstruction_loss(pred, video, keep, 4, norm_pix=True, masked_only=True),
                               ((pred - (target - mean) / std)[:, :, masked] ** 2).mean())


def test_psnr_and_the_mean_colour_baseline():
    video = torch.zeros(1, 1, 3, 16, 16)
    video[..., 0, :8, :] = 1.0  # red in the top half of the frame
    keep = torch.tensor([[0, 1]])  # two patches of the top row: all red
    base = mean_colour_baseline(video, keep, 4)
    assert torch.equal(base[0, 0, :, 10, 10], torch.tensor([1.0, 0.0, 0.0]))
    mse = float(((base - video) ** 2).mean())
    torch.testing.assert_close(psnr(base, video), torch.tensor([10 * torch.log10(torch.tensor(1 / mse))]))


# ------------------------------------------------------------ save and load
def test_autoencoder_folder_round_trip(tmp_path):
    assert MaskedAutoencoder.arch == MAE_ARCH  # what the classifier loaders recognise
    model = _model(norm_pix_loss=True)
    model.save_pretrained(tmp_path / "ae")
    loaded = MaskedAutoencoder.from_pretrained(tmp_path / "ae")
    assert loaded.config == model.config
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    TRecViT(ENC).save_pretrained(tmp_path / "enc")
    with pytest.raises(ValueError, match="holds a 'trecvit' model, not a masked autoencoder"):
        MaskedAutoencoder.from_pretrained(tmp_path / "enc")


# ------------------------------------------------------------ pre-training
def _config(out: Path, **changes) -> PretrainConfig:
    fields = dict(out_dir=str(out), synthetic_train_size=32, synthetic_val_size=8, num_frames=4, image_size=16,
                  variant="mu", model=dict(patch_size=4, rep_size=0), batch_size=8, max_steps=6, warmup_steps=2,
                  log_every=1, mask_ratio=0.75, decoder_depth=1, progress=False, tensorboard=False)
    fields.update(changes)
    return PretrainConfig(**fields)


def test_pretraining_learns_and_writes_the_encoder_and_the_autoencoder(tmp_path):
    result = Pretrainer(_config(tmp_path / "run", max_steps=12, lr=3e-3)).fit()
    rows = MetricsLog.read(tmp_path / "run" / "metrics.csv")
    train = [float(r["loss"]) for r in rows if r["split"] == "train"]
    assert train[-1] < train[0]
    val = [r for r in rows if r["split"] == "val"]
    assert val and float(val[-1]["psnr"]) > 0 and float(val[-1]["baseline_psnr"]) > 0
    assert result.final_eval.num_videos == 8
    assert (tmp_path / "run" / "curves.png").is_file()
    encoder = TRecViT.from_pretrained(tmp_path / "run" / "model")  # a plain TRecViT folder
    autoencoder = MaskedAutoencoder.from_pretrained(tmp_path / "run" / "autoencoder")
    for key, value in autoencoder.encoder.state_dict().items():
        assert torch.equal(encoder.encoder.state_dict()[key], value)
    assert autoencoder.config.mask_ratio == 0.75


def test_bf16_accumulation_and_grad_checkpointing_run(tmp_path):
    result = Pretrainer(_config(tmp_path / "run", max_steps=2, bf16=True, grad_accum=2,
                                grad_checkpointing=True, norm_pix_loss=True, masked_loss=True)).fit()
    assert result.skipped_steps == 0 and result.final_eval.num_videos == 8
    assert MaskedAutoencoder.from_pretrained(tmp_path / "run" / "autoencoder").config.norm_pix_loss


def test_the_shipped_demo_config_is_the_readme_run():
    cfg = PretrainConfig.from_yaml(Path(__file__).parent.parent / "configs" / "mae_synthetic.yaml")
    assert (cfg.mask_ratio, cfg.num_frames, cfg.model["patch_size"], cfg.epochs) == (0.75, 4, 4, 6)


def test_classification_only_options_are_refused(tmp_path):
    with pytest.raises(ValueError, match="PretrainConfig.mixup is not used"):
        _config(tmp_path, mixup=0.8)
    with pytest.raises(ValueError, match="PretrainConfig.arch must be 'trecvit'"):
        _config(tmp_path, arch="frame_average")


def test_a_folder_with_no_videos_is_refused(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no video here")
    cfg = _config(tmp_path / "run", data="videos", train_data=str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="no video files .* found under"):
        Pretrainer(cfg).fit()
    assert not (tmp_path / "run").exists()  # nothing written


RUNNER = Path(__file__).parent / "robustness" / "train_with_faults.py"


def _pretrain_args(out: Path) -> list[str]:
    return ["pretrain", "--out-dir", str(out), "--synthetic-train-size", "32", "--synthetic-val-size", "4",
            "--num-frames", "4", "--image-size", "16", "--variant", "mu", "--model", "patch_size=4",
            "--model", "rep_size=0", "--batch-size", "8", "--max-steps", "6", "--save-every", "2",
            "--warmup-steps", "2", "--log-every", "1", "--mask-ratio", "0.75", "--decoder-depth", "1",
            "--no-progress", "--no-tensorboard"]


def _run(args: list[str], fault: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("TRECVIT_FAULT", None)
    if fault:
        env["TRECVIT_FAULT"] = fault
    return subprocess.run([sys.executable, str(RUNNER), *args], env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_resume_after_sigkill_equals_an_uninterrupted_run(tmp_path):
    reference = _run(_pretrain_args(tmp_path / "ref"))
    assert reference.returncode == 0, reference.stderr[-3000:]
    killed = _run(_pretrain_args(tmp_path / "run"), fault="rename:2")  # SIGKILL before checkpoint 2 lands
    assert killed.returncode == -9, killed.stderr[-3000:]
    resumed = _run(["pretrain", "--resume", "--out-dir", str(tmp_path / "run"), "--no-progress"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr

    def losses(run):
        return [(r["step"], r["split"], r["loss"], r["psnr"]) for r in MetricsLog.read(run / "metrics.csv")]

    assert losses(tmp_path / "run") == losses(tmp_path / "ref")
    for folder in ("model", "autoencoder"):
        a = load_file(str(tmp_path / "run" / folder / "model.safetensors"))
        b = load_file(str(tmp_path / "ref" / folder / "model.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------- command line
def test_pretrain_reconstruct_and_probe_from_the_command_line(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(_pretrain_args(run)) == 0
    out = capsys.readouterr().out
    assert "held-out reconstruction PSNR" in out and "encoder:" in out
    assert main(["synthetic", str(tmp_path / "clips"), "--size", "3", "--frames", "4", "--image-size", "16"]) == 0
    videos = sorted(str(p) for p in (tmp_path / "clips" / "videos").glob("*.mp4"))
    capsys.readouterr()
    assert main(["reconstruct", "--checkpoint", str(run / "autoencoder"), *videos, "--out",
                 str(tmp_path / "grid.png"), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["video"] for row in lines] == videos
    assert all(set(row) >= {"video", "psnr", "baseline_psnr"} for row in lines)
    assert (tmp_path / "grid.png").stat().st_size > 1000
    assert main(["probe", "--checkpoint", str(run / "model"), "--synthetic-train-size", "24",
                 "--synthetic-val-size", "12", "--epochs", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0 <= result["top1"] <= 1 and 0 <= result["top5"] <= 1


def test_bad_input_on_the_command_line(tmp_path, capsys):
    assert main(["pretrain", "--out-dir", str(tmp_path / "r"), "--mask-ratio", "1.0"]) == 2
    assert "mask_ratio must be a fraction in [0, 1)" in capsys.readouterr().err
    TRecViT(ENC).save_pretrained(tmp_path / "enc")
    assert main(["reconstruct", "--checkpoint", str(tmp_path / "enc"), "x.mp4"]) == 2
    assert "pass the autoencoder/ folder" in capsys.readouterr().err
    _model().save_pretrained(tmp_path / "ae")
    assert main(["probe", "--checkpoint", str(tmp_path / "ae")]) == 2
    assert "model/" in capsys.readouterr().err
    for command in ("train", "pretrain"):  # --init takes an encoder, not the autoencoder
        assert main([command, "--out-dir", str(tmp_path / command), "--init", str(tmp_path / "ae")]) == 2
        assert "pass the run's model/ folder" in capsys.readouterr().err
    (tmp_path / "novideos").mkdir()
    assert main(["pretrain", "--out-dir", str(tmp_path / "r2"), "--data", "videos", "--train-data",
                 str(tmp_path / "novideos")]) == 2
    assert "no video files" in capsys.readouterr().err


@pytest.mark.slow
def test_ddp_two_cpu_processes_equal_one_process(tmp_path):
    """torchrun with 2 gloo processes (each half of every batch, with their videos' own masks) == one
    process: the masks depend on the video, not on the process that loads it."""
    assert main(_pretrain_args(tmp_path / "single")) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
                           "--nproc-per-node", "2", "-m", "trecvit.cli", *_pretrain_args(tmp_path / "ddp")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = load_file(str(tmp_path / "single" / "autoencoder" / "model.safetensors"))
    b = load_file(str(tmp_path / "ddp" / "autoencoder" / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(b[key], a[key], atol=1e-5, rtol=0)
