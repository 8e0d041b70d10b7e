"""Training: config, schedule, the loop, checkpoints, exact resume after SIGKILL, DDP, fine-tuning."""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import yaml
from trecvit import TRecViT, TRecViTConfig
from trecvit.cli import main as cli_main
from trecvit.training import NonFiniteLossError, TrainConfig, Trainer
from trecvit.training.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from trecvit.training.config import add_config_arguments, config_from_args
from trecvit.training.data import StepPlan
from trecvit.training.metrics import MetricsLog
from trecvit.training.optim import lr_at, param_groups

FIXTURES = Path(__file__).parent / "fixtures"

# A few-second run: 1-layer width-32 TRecViT on 4-frame synthetic clips.
TINY = dict(synthetic_train_size=48, synthetic_val_size=12, num_frames=4, image_size=32, variant="mu",
            model={"patch_size": 8, "rep_size": 0}, batch_size=8, epochs=2, lr=3e-3, warmup_steps=2,
            log_every=1, progress=False, tensorboard=False)


def tiny_config(out_dir: Path, **changes) -> TrainConfig:
    return TrainConfig(out_dir=str(out_dir), **{**TINY, **changes})


def train_losses(run_dir: Path) -> dict[int, float]:
    return {int(r["step"]): float(r["loss"]) for r in MetricsLog.read(run_dir / "metrics.csv")
            if r["split"] == "train"}


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "model" / "model.safetensors"))


def assert_weights_close(got: dict, expected: dict, atol: float) -> None:
    """Equal up to float rounding. The key part of the attention bias is skipped: softmax ignores
    it, so its gradient is rounding noise that Adam's normalisation blows up to full-size steps."""
    assert got.keys() == expected.keys()
    for key in expected:
        a, b = got[key], expected[key]
        if key.endswith("attn.qkv.bias"):
            d = a.shape[0] // 3
            a, b = torch.cat([a[:d], a[2 * d:]]), torch.cat([b[:d], b[2 * d:]])
        torch.testing.assert_close(a, b, atol=atol, rtol=1e-4, msg=key)


def cli_args(*argv: str) -> list[str]:
    """``trecvit train`` arguments for the TINY run."""
    return ["train", "--synthetic-train-size", "48", "--synthetic-val-size", "0", "--num-frames", "4",
            "--variant", "mu", "--model", "patch_size=8", "--model", "rep_size=0", "--batch-size", "8",
            "--lr", "3e-3", "--warmup-steps", "2", "--log-every", "1", "--no-progress",
            "--no-tensorboard", *argv]


# ------------------------------------------------------------------- config
def test_config_yaml_and_command_line_overrides(tmp_path):
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("lr: 0.01\nbatch_size: 16\nmodel:\n  patch_size: 8\n  depth: 2\nhflip: true\n")
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    add_config_arguments(parser)
    args = parser.parse_args(["--config", str(yaml_file), "--lr", "3e-4", "--no-hflip", "--model",
                              "depth=3", "--max-steps", "7", "--eval-views", "4x3"])
    cfg = config_from_args(args)
    assert cfg.lr == 3e-4 and cfg.batch_size == 16 and cfg.hflip is False and cfg.max_steps == 7
    assert cfg.model == {"patch_size": 8, "depth": 3}
    assert cfg.eval_views == "4x3"
    assert TrainConfig.from_dict(yaml.safe_load(cfg.to_yaml())) == cfg  # the saved config round-trips


@pytest.mark.parametrize("text, match", [
    ("lr: 0.1\nlearning_rate: 0.1\n", "unknown training option"),
    ("batch_size: eight\n", "batch_size must be int"),
    ("data: imagenet\n", "data must be one of"),
    ("batch_size: 10\ngrad_accum: 3\n", "divisible by grad_accum"),
    ("- a list\n", "YAML mapping"),
])
def test_config_errors_name_the_field(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        TrainConfig.from_yaml(path)


def test_lr_schedule_warmup_then_cosine():
    kw = dict(total_steps=100, warmup_steps=10, lr=1.0, min_lr=0.01)
    assert lr_at(0, **kw) == pytest.approx(0.1)
    assert lr_at(9, **kw) == pytest.approx(1.0)
    assert lr_at(10, **kw) == pytest.approx(1.0)
    assert lr_at(55, **kw) == pytest.approx(0.505)
    assert lr_at(100, **kw) == pytest.approx(0.01)
    values = [lr_at(s, **kw) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_weight_decay_only_on_matrices():
    model = TRecViT(TRecViTConfig.from_variant("mu", image_size=32, patch_size=8, num_classes=3))
    decay, no_decay = param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert all(p.dim() >= 2 for p in decay["params"]) and decay["weight_decay"] == 0.05
    assert no_decay["weight_decay"] == 0.0
    assert "encoder.tokenizer.pos_embed" not in decayed and "encoder.tokenizer.cls_token" not in decayed
    assert not any("a_param" in n or n.endswith("bias") or "norm" in n for n in decayed)
    assert "encoder.blocks.0.spatial.attn.qkv.weight" in decayed
    assert "encoder.blocks.0.temporal.rg_lru.input_gate.weight" in decayed  # block-diagonal [h, l/h, l/h]


def test_step_plan_splits_global_batches_over_processes_and_accumulation():
    single = StepPlan(40, 8, world_size=1, grad_accum=1, seed=3)
    split = StepPlan(40, 8, world_size=2, grad_accum=2, seed=3)
    steps = list(single.micro_batches(0, 10, rank=0))
    for step in range(10):
        parts = [list(split.micro_batches(step, step + 1, rank=r)) for r in range(2)]
        assert sum(sum(parts, []), []) == steps[step]  # the same clips, in the same order
    epoch0 = sorted(i for b in steps[:5] for _, i in b)
    assert epoch0 == list(range(40))  # every clip once per epoch
    assert steps[5] != steps[0]  # a new order in the next epoch


# --------------------------------------------------------------------- loop
def test_tiny_run_learns_and_writes_everything(tmp_path):
    out = tmp_path / "run"
    result = Trainer(tiny_config(out, epochs=4, keep_last=2, tensorboard=True, ema_decay=0.9)).fit()
    losses = train_losses(out)
    assert result.steps == 24 and len(losses) == 24
    assert sum(list(losses.values())[-4:]) < sum(list(losses.values())[:4])  # it learns
    assert [s for s, _ in list_checkpoints(out / "checkpoints")] == [18, 24]  # keep_last=2
    for name in ("config.yaml", "metrics.csv", "curves.png", "per_class.csv", "model/config.json",
                 "model/classes.txt"):
        assert (out / name).is_file(), name
    assert any((out / "tensorboard").iterdir())
    assert TrainConfig.from_yaml(out / "config.yaml") == tiny_config(out, epochs=4, keep_last=2,
                                                                       tensorboard=True, ema_decay=0.9)
    model = TRecViT.from_pretrained(out / "model")
    ckpt = load_checkpoint(list_checkpoints(out / "checkpoints")[-1][1])
    ema = ckpt["ema"]
    assert torch.equal(model.state_dict()["head.classifier.weight"], ema["head.classifier.weight"])
    assert result.final_eval is not None and result.final_eval.num_videos == 12


def test_refuses_to_overwrite_a_run_without_resume(tmp_path):
    out = tmp_path / "run"
    Trainer(tiny_config(out, epochs=1)).fit()
    before = (out / "metrics.csv").read_bytes()
    with pytest.raises(ValueError, match="--resume"):
        Trainer(tiny_config(out, epochs=1)).fit()
    assert (out / "metrics.csv").read_bytes() == before


def test_gradient_accumulation_matches_one_big_batch(tmp_path):
    a = Trainer(tiny_config(tmp_path / "a", epochs=1, synthetic_val_size=0)).fit()
    b = Trainer(tiny_config(tmp_path / "b", epochs=1, synthetic_val_size=0, grad_accum=2)).fit()
    assert_weights_close(final_weights(b.out_dir), final_weights(a.out_dir), atol=2e-5)


def test_grad_checkpointing_and_bf16_runs(tmp_path):
    a = Trainer(tiny_config(tmp_path / "a", epochs=1, synthetic_val_size=0)).fit()
    b = Trainer(tiny_config(tmp_path / "b", epochs=1, synthetic_val_size=0, grad_checkpointing=True)).fit()
    # recomputation gives the same gradients
    assert_weights_close(final_weights(b.out_dir), final_weights(a.out_dir), atol=1e-5)
    c = Trainer(tiny_config(tmp_path / "c", epochs=1, bf16=True, mixup=0.8, cutmix=1.0,
                            label_smoothing=0.1)).fit()
    assert all(math.isfinite(v) for v in train_losses(c.out_dir).values())


class _FlakyTRecViT(TRecViT):
    """Returns NaN logits on the chosen forward calls."""

    def __init__(self, config, bad_calls):
        super().__init__(config)
        self.calls, self.bad_calls = 0, set(bad_calls)

    def forward(self, video):
        out = super().forward(video)
        self.calls += 1
        if self.calls in self.bad_calls:
            out.logits = out.logits * float("nan")
        return out


def _flaky(cfg: TrainConfig, bad_calls) -> _FlakyTRecViT:
    from trecvit.training.trainer import build_model

    torch.manual_seed(cfg.seed)
    model = _FlakyTRecViT(build_model(cfg, 12).config, bad_calls)
    return model


def test_non_finite_loss_skips_the_step_and_stops_after_k_in_a_row(tmp_path):
    cfg = tiny_config(tmp_path / "a", epochs=1, synthetic_val_size=0, max_nonfinite=3)
    model = _flaky(cfg, bad_calls={2, 4})
    result = Trainer(cfg, model=model).fit()
    assert result.skipped_steps == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())
    rows = MetricsLog.read(Path(cfg.out_dir) / "metrics.csv")
    assert rows[-1]["skipped"] == "2"

    cfg = tiny_config(tmp_path / "b", epochs=2, synthetic_val_size=0, max_nonfinite=3, save_every=2)
    model = _flaky(cfg, bad_calls={5, 6, 7})
    with pytest.raises(NonFiniteLossError, match="3 optimiser steps in a row"):
        Trainer(cfg, model=model).fit()
    # steps 5-7 (calls 5, 6, 7) were bad: it stops at step 7; the checkpoints (step 6 holds the
    # weights of step 4, untouched by the skipped steps) are intact and finite
    step, path = list_checkpoints(Path(cfg.out_dir) / "checkpoints")[-1]
    assert step == 6
    assert all(torch.isfinite(t).all() for t in load_checkpoint(path)["model"].values())


# -------------------------------------------------------------- checkpoints
def test_checkpoint_write_is_atomic_and_a_full_disk_keeps_the_previous_one(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, 1, {"model": {"w": torch.ones(3)}, "optimizer": {}, "config": {}}, keep_last=3)

    def full_disk(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="earlier checkpoints are intact"):
        save_checkpoint(tmp_path, 2, {"model": {"w": torch.zeros(3)}, "optimizer": {}, "config": {}},
                        keep_last=3)
    monkeypatch.undo()
    assert [s for s, _ in list_checkpoints(tmp_path)] == [1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000001.pt"]  # no temporary left
    assert torch.equal(load_checkpoint(tmp_path / "step_00000001.pt")["model"]["w"], torch.ones(3))


def test_checkpoint_refuses_a_pickle_that_would_run_code(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "step_00000001.pt"
    torch.save({"format_version": 1, "evil": Evil()}, path)
    with pytest.raises(ValueError, match="not a readable training checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()


def test_resume_refuses_a_changed_config(tmp_path):
    out = tmp_path / "run"
    Trainer(tiny_config(out, epochs=1, max_steps=3)).fit()
    with pytest.raises(ValueError, match="lr"):
        Trainer(tiny_config(out, epochs=1, max_steps=3, lr=1.0), resume=True).fit()
    # runtime-only fields may change
    Trainer(tiny_config(out, epochs=1, max_steps=3, num_workers=1), resume=True).fit()


@pytest.mark.slow
def test_ddp_two_cpu_processes_equal_one_process(tmp_path):
    """torchrun with 2 gloo processes, batch split between them == one process, same global batch."""
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    common = ["--max-steps", "4", "--synthetic-train-size", "48"]
    assert cli_main(cli_args("--out-dir", str(single), *common)) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
                           "--nproc-per-node", "2", "-m", "trecvit.cli",
                           *cli_args("--out-dir", str(ddp), *common)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_weights_close(final_weights(ddp), final_weights(single), atol=1e-5)
    ls, ld = train_losses(single), train_losses(ddp)
    assert ls.keys() == ld.keys()
    for step in ls:
        assert ld[step] == pytest.approx(ls[step], rel=1e-4)


# --------------------------------------------------------------- fine-tuning
def _write_video_folder(root: Path, classes: list[str], per_class: int, size: int = 64) -> None:
    from trecvit.data.synthetic import write_synthetic_videos

    tmp = root.parent / "synthetic_src"
    write_synthetic_videos(tmp, len(classes) * per_class * 4, num_frames=8, image_size=size, seed=5)
    import csv

    with open(tmp / "labels.csv") as fh:
        rows = list(csv.reader(fh))
    counts = {c: 0 for c in classes}
    for path, label in rows:
        if path == "path":
            continue
        name = f"c{int(label)}"
        if name in counts and counts[name] < per_class:
            (root / name).mkdir(parents=True, exist_ok=True)
            (tmp / path).rename(root / name / Path(path).name)
            counts[name] += 1


@pytest.mark.slow
def test_fine_tune_a_converted_official_checkpoint_on_a_video_folder(tmp_path, capsys):
    converted = tmp_path / "converted"
    assert cli_main(["convert", str(FIXTURES / "tiny_tok_learn.ckpt.npz"), str(converted)]) == 0
    source = TRecViT.from_pretrained(converted)
    videos = tmp_path / "videos"
    _write_video_folder(videos, ["c0", "c1", "c2"], per_class=4)
    (videos / "c2" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    out = tmp_path / "finetune"
    code = cli_main(["train", "--data", "folder", "--train-data", str(videos), "--val-data", str(videos),
                     "--init", str(converted), "--image-size", "64", "--num-frames", "8",
                     "--batch-size", "4", "--max-steps", "3", "--eval-views", "2x3", "--no-hflip",
                     "--min-scale", "0.5", "--num-workers", "2", "--out-dir", str(out), "--no-progress",
                     "--no-tensorboard", "--log-every", "1"])
    assert code == 0
    tuned = TRecViT.from_pretrained(out / "model")
    assert tuned.config.num_classes == 3 and tuned.config.width == source.config.width
    assert tuned.config.depth == source.config.depth
    # trained from the checkpoint: the recurrence weights moved only a little from the source's
    key = "encoder.blocks.0.temporal.rg_lru.a_param"
    assert not torch.equal(tuned.state_dict()[key], source.state_dict()[key])
    torch.testing.assert_close(tuned.state_dict()[key], source.state_dict()[key], atol=0.05, rtol=0)
    assert (out / "model" / "classes.txt").read_text().split("\n")[:3] == ["c0", "c1", "c2"]
    # evaluate and classify the result from the command line
    capsys.readouterr()
    assert cli_main(["evaluate", "--checkpoint", str(out / "model"), "--data", "folder", "--val-data",
                     str(videos), "--views", "2x3", "--num-workers", "0", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["videos"] == 12 and report["failed"] == 1  # the broken file is counted, not fatal
    assert len(report["per_class"]) == 3
    clip = next((videos / "c1").iterdir())
    assert cli_main(["classify", str(clip), "--checkpoint", str(out / "model"), "--stream"]) == 0


# ---------------------------------------------------------------- shipped files
@pytest.mark.parametrize("name", ["kinetics400_B.yaml", "ssv2_B.yaml"])
def test_shipped_configs_load(name):
    path = Path(__file__).parent.parent / "configs" / name
    cfg = TrainConfig.from_yaml(path, train_data="train.csv")
    assert cfg.variant == "B" and cfg.model["min_rad"] == 0.6 and cfg.num_frames == 32
    assert cfg.hflip is (name != "ssv2_B.yaml")


@pytest.mark.slow
def test_demo_quick_runs_end_to_end(tmp_path, capsys):
    from trecvit.classification.demo import run_demo

    out = tmp_path / "demo"
    result = run_demo(out, quick=True)
    text = capsys.readouterr().out
    assert "true > reversed" in text and "frames/s" in text  # the table, then classify --stream
    assert (out / "curves.png").is_file() and (result.model_dir / "model.safetensors").is_file()
    assert result.clip.suffix == ".mp4" and result.clip.is_file()
    with pytest.raises(ValueError, match="--overwrite"):
        run_demo(out, quick=True)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "precious.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not written by trecvit demo"):
        run_demo(tmp_path / "mine", quick=True, overwrite=True)
    assert (tmp_path / "mine" / "precious.txt").read_text() == "keep me"
