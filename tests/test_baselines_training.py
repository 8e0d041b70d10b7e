"""``trecvit train --arch NAME`` trains each of the paper's baselines on the synthetic motion data,
and ``evaluate`` / ``classify`` run the folder it writes (the architecture table at work)."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from trecvit.architectures import ARCHITECTURES
from trecvit.checkpoints.auto import from_pretrained
from trecvit.cli import main

BASELINES = ["vivit", "vivit_fe", "vivit_fsa", "cvivit", "vit_lstm", "vit_conv1d", "vit_tsa", "pure_lru"]


def test_every_baseline_of_the_paper_is_in_the_architecture_table():
    assert set(BASELINES) <= set(ARCHITECTURES)


@pytest.mark.parametrize("arch", BASELINES)
def test_train_arch_trains_a_baseline_and_its_folder_loads(tmp_path, arch, capsys):
    out = tmp_path / arch
    argv = ["train", "--arch", arch, "--variant", "mu", "--model", "patch_size=8", "--model", "rep_size=0",
            "--synthetic-train-size", "16", "--synthetic-val-size", "8", "--num-frames", "4",
            "--image-size", "32", "--batch-size", "8", "--epochs", "1", "--lr", "1e-3", "--warmup-steps", "1",
            "--log-every", "1", "--no-progress", "--no-tensorboard", "--out-dir", str(out)]
    assert main(argv) == 0
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["arch"] == arch and config["frames_per_clip"] == 4
    model = from_pretrained(out / "model")
    assert type(model).arch == arch
    weights = load_file(str(out / "model" / "model.safetensors"))
    assert weights.keys() == model.state_dict().keys()
    assert "val" in (out / "metrics.csv").read_text()
