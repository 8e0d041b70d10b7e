"""``trecvit ablate``: variant files and their errors, the built-in Table 1 / Table 2 sets, a tiny
ablation through the command line (tables with mean and spread over seeds), resuming after a kill,
refusing a changed recipe, and a diverging variant recorded as failed."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trecvit.cli import main
from trecvit.training import NonFiniteLossError, Trainer, TrainConfig, build_model
from trecvit.training.ablation import describe_changes, plan, resolve
from trecvit.training.ablation_sets import BUILTIN_SETS, RECIPE, Variant, read_set_file, recipe
from trecvit.training.checkpoint import list_checkpoints

# A run of a second or two: TRecViT-mu (width 32, 1 layer) on 16 synthetic clips of 4 frames.
TINY_OPTIONS = ["--synthetic-train-size", "16", "--synthetic-val-size", "8", "--num-frames", "4",
                "--variant", "mu", "--model", "patch_size=8", "--batch-size", "4", "--max-steps", "3",
                "--warmup-steps", "1", "--log-every", "1", "--save-every", "1", "--num-workers", "0",
                "--no-progress"]

TWO_VARIANTS = "- name: a\n  model: {min_rad: 0.7}\n- name: b\n  lr: 0.01\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def ablate(out: Path, set_file: Path, *extra: str) -> int:
    return main(["ablate", "--set", str(set_file), "--out-dir", str(out), *TINY_OPTIONS, *extra])


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def snapshot(run_dir: Path) -> dict[str, tuple[int, bytes]]:
    """The result and checkpoint files of a run: ``{name: (mtime_ns, bytes)}``."""
    files = [run_dir / "result.json", *(p for _, p in list_checkpoints(run_dir / "checkpoints"))]
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in files}


# ---------------------------------------------------------------------------------- variant files
def test_set_file_list_and_mapping_forms(tmp_path):
    variants, base = read_set_file(write(tmp_path / "s.yaml", TWO_VARIANTS))
    assert [v.name for v in variants] == ["a", "b"] and base == {}
    assert variants[0].changes == {"model": {"min_rad": 0.7}} and variants[1].changes == {"lr": 0.01}
    text = ("base: {lr: 0.005}\nvariants:\n  - name: low\n    lr_scale: 0.5\n    note: half the lr\n"
            "    paper: {top1: 60.0}\n")
    variants, base = read_set_file(write(tmp_path / "m.yaml", text))
    assert base == {"lr": 0.005}
    assert variants[0] == Variant("low", {}, 0.5, "half the lr", {"top1": 60.0})


@pytest.mark.parametrize("text, match", [
    ("- name: a\n  lrr: 0.1\n", r"variant #1 \('a'\): unknown field\(s\) lrr"),
    ("- name: a\n- name: b\n  model: {depth: 2}\n- name: a\n  lr: 0.1\n", r"variant #3 \('a'\).*used twice"),
    ("- lr: 0.1\n", r"variant #1: 'name' must be"),
    ("- name: ../up\n", r"'name' must be a folder-safe name"),
    ("- name: a\n  seed: 3\n", r"seed cannot be set per variant"),
    ("- name: a\n  model: 3\n", r"'model' must be a mapping"),
    ("- name: a\n  lr_scale: 0\n", r"'lr_scale' must be a number > 0"),
    ("name: a\n", r"a mapping must have 'variants'"),
    ("[]\n", r"expected a non-empty list"),
])
def test_set_file_errors_name_the_variant(tmp_path, text, match):
    with pytest.raises(ValueError, match=match):
        read_set_file(write(tmp_path / "bad.yaml", text))


def test_resolve_merges_model_scales_lr_and_names_a_bad_variant():
    base = TrainConfig(model={"patch_size": 8, "rep_size": 0, "min_rad": 0.6}, lr=1e-3, min_lr=1e-5)
    cfg, notes = resolve(base, Variant("x", {"model": {"depth": 2}}, lr_scale=0.1))
    assert cfg.model == {"patch_size": 8, "rep_size": 0, "min_rad": 0.6, "depth": 2}  # merged, not replaced
    assert cfg.lr == pytest.approx(1e-4) and cfg.min_lr == pytest.approx(1e-6)
    assert describe_changes(base, cfg) == "model.depth=2, lr=0.0001, min_lr=1e-06"
    assert notes == ["lr and min_lr x 0.1"]
    # a base model field the architecture does not have is dropped, with a note
    cfg, notes = resolve(base, Variant("fsa", {"arch": "vivit_fsa"}))
    assert "min_rad" not in cfg.model and "base model.min_rad dropped" in notes[0]
    assert describe_changes(base, cfg) == "arch=vivit_fsa, model.min_rad dropped"
    with pytest.raises(ValueError, match=r"variant 'bad'.*min_rad"):
        resolve(base, Variant("bad", {"model": {"min_rad": 1.5}}))
    with pytest.raises(ValueError, match=r"variant 'typo'.*not_a_field"):
        resolve(base, Variant("typo", {"model": {"not_a_field": 1}}))
    with pytest.raises(ValueError, match=r"variant 'neg'.*batch_size"):
        resolve(base, Variant("neg", {"batch_size": 0}))


# ------------------------------------------------------------------------------------ built-in sets
def test_builtin_sets_build_valid_configs_and_models(tmp_path):
    base = TrainConfig.from_dict({**recipe(), "out_dir": str(tmp_path)})
    assert base.max_steps == RECIPE["max_steps"] and base.model["width"] == 96
    params = {}
    for variants in BUILTIN_SETS.values():
        runs = plan(base, variants, [0, 1])
        assert [r.variant.name for r in runs[::2]] == [v.name for v in variants]
        for r in runs[::2]:
            params[r.variant.name] = build_model(r.config, 12).num_parameters()
    by_name = {r.variant.name: r for r in plan(base, BUILTIN_SETS["table1"], [0])}
    assert by_name["no-skip"].config.lr == pytest.approx(0.1 * base.lr)
    assert by_name["no-skip"].config.model["temporal_skip"] is False
    assert by_name["space-time"].config.model["block_order"] == "space_time"
    assert by_name["official"].changes == "none (the base)"
    assert params["no-conv"] < params["official"] and params["no-gates"] < params["official"]
    assert params["paper-range"] == params["official"]
    archs = {r.variant.name: r.config.arch for r in plan(base, BUILTIN_SETS["table2"], [0])}
    assert archs == {"vivit_fsa": "vivit_fsa", "vit_lstm": "vit_lstm", "vit_conv1d": "vit_conv1d",
                     "trecvit": "trecvit"}
    assert runs[1].out_dir == tmp_path / "runs" / "vivit_fsa" / "seed-1"


def test_list_prints_the_variants_and_the_user_options_change_the_base(capsys):
    assert main(["ablate", "--set", "table1", "--list", "--max-steps", "7"]) == 0
    out = capsys.readouterr().out
    for v in BUILTIN_SETS["table1"]:
        assert f"{v.name}: " in out
    assert "no-skip: model.temporal_skip=false, lr=0.0002, min_lr=1e-06" in out
    assert "7 steps of 32 clips" in out and "width=96" in out
    assert main(["ablate", "--set", "table2", "--list", "--variant", "Ti"]) == 0
    out = capsys.readouterr().out  # --variant drops the recipe's size fields
    assert "size Ti (patch_size=8, rep_size=0)" in out and "vivit_fsa: arch=vivit_fsa" in out


def test_refuses_a_foreign_folder_an_unknown_variant_and_no_held_out_split(tmp_path, capsys):
    set_file = write(tmp_path / "s.yaml", TWO_VARIANTS)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert ablate(foreign, set_file) == 2
    assert "not an ablation folder" in capsys.readouterr().err
    assert ablate(tmp_path / "o", set_file, "--only", "a,zzz") == 2
    assert "--only zzz: not in set 's'" in capsys.readouterr().err
    assert ablate(tmp_path / "o", set_file, "--synthetic-val-size", "0") == 2
    assert "no held-out split" in capsys.readouterr().err
    assert (foreign / "notes.txt").read_text() == "mine" and not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------- running
@pytest.mark.slow
def test_tiny_ablate_through_the_cli_writes_the_tables_and_reruns_nothing(tmp_path, capsys):
    out = tmp_path / "abl"
    set_file = write(tmp_path / "s.yaml", TWO_VARIANTS)
    assert ablate(out, set_file, "--seeds", "2") == 0
    printed = capsys.readouterr().out
    rows = read_csv(out / "results.csv")
    assert [r["variant"] for r in rows] == ["a", "b"]
    for r in rows:
        assert r["seeds"] == "2" and r["seeds_planned"] == "2"
        top1 = [float(t) for t in r["top1_per_seed"].split(";")]
        assert len(top1) == 2 and float(r["top1_mean"]) == pytest.approx(sum(top1) / 2, abs=1e-3)
        assert r["top1_std"] != "" and r["top1_var"] != "" and float(r["steps_per_s"]) > 0
        assert float(r["params_M"]) > 0
    assert rows[0]["changes"] == "model.min_rad=0.7" and rows[1]["changes"] == "lr=0.01"
    markdown = (out / "results.md").read_text()
    assert "| variant | arch | changes | seeds | top-1 (%) | std | var | steps/s | params (M) |" in markdown
    assert "| `a` | trecvit | model.min_rad=0.7 | 2 |" in markdown and markdown in printed
    result = json.loads((out / "runs" / "b" / "seed-1" / "result.json").read_text())
    assert result["seed"] == 1 and result["steps"] == 3 and result["config"]["lr"] == 0.01
    assert (out / "curves.png").is_file() and (out / "ablation.yaml").is_file()

    before = {d: snapshot(out / "runs" / d / "seed-0") for d in ("a", "b")}
    assert ablate(out, set_file, "--seeds", "2") == 0  # everything is done
    assert "are finished; nothing to train" in capsys.readouterr().out
    assert {d: snapshot(out / "runs" / d / "seed-0") for d in ("a", "b")} == before
    assert main(["ablate", "--resume", "--out-dir", str(out)]) == 0  # the saved settings
    assert "nothing to train" in capsys.readouterr().out

    # a changed recipe is refused for the finished runs, naming them and the change
    assert ablate(out, set_file, "--seeds", "2", "--max-steps", "4") == 2
    err = capsys.readouterr().err
    assert "4 run(s)" in err and "max_steps: 3 -> 4" in err and "--overwrite" in err
    assert {d: snapshot(out / "runs" / d / "seed-0") for d in ("a", "b")} == before
    # --overwrite retrains only the changed runs asked for (--only a, one seed)
    assert ablate(out, set_file, "--max-steps", "4", "--only", "a", "--overwrite") == 0
    assert json.loads((out / "runs" / "a" / "seed-0" / "result.json").read_text())["steps"] == 4
    assert snapshot(out / "runs" / "b" / "seed-0") == before["b"]
    rows = read_csv(out / "results.csv")  # b's runs are of another recipe now: not in the table
    assert [(r["variant"], r["seeds"]) for r in rows] == [("a", "1"), ("b", "0")]
    assert "not run yet" in (out / "results.md").read_text()


@pytest.mark.slow
def test_a_killed_ablate_resumes_at_the_first_unfinished_variant(tmp_path, capsys):
    out = tmp_path / "abl"
    set_file = write(tmp_path / "s.yaml", "- name: first\n- name: second\n  max_steps: 40\n  save_every: 2\n"
                                          "- name: third\n  lr: 0.005\n")
    cmd = [sys.executable, "-m", "trecvit.cli", "ablate", "--set", str(set_file), "--out-dir", str(out),
           *TINY_OPTIONS]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = tmp_path / "killed.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT)
    first, second = out / "runs" / "first" / "seed-0", out / "runs" / "second" / "seed-0"
    try:
        deadline = time.monotonic() + 300
        while not ((first / "result.json").is_file() and list_checkpoints(second / "checkpoints")):
            assert proc.poll() is None, f"the ablation ended before it could be killed:\n{log.read_text()}"
            assert time.monotonic() < deadline, "the first variant did not finish within 300 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert not (second / "result.json").exists(), "the second variant finished before the kill"
    before = snapshot(first)
    killed_at = list_checkpoints(second / "checkpoints")[-1][0]

    assert main(["ablate", "--set", str(set_file), "--out-dir", str(out), *TINY_OPTIONS]) == 0
    printed = capsys.readouterr().out
    assert "[1/3] first seed 0: finished earlier, skipped" in printed
    assert f"[2/3] second seed 0: continuing from step {killed_at}" in printed
    assert "[3/3] third seed 0: starting" in printed
    assert snapshot(first) == before  # not retrained
    assert json.loads((second / "result.json").read_text())["steps"] == 40
    rows = read_csv(out / "results.csv")
    assert [(r["variant"], r["seeds"]) for r in rows] == [("first", "1"), ("second", "1"), ("third", "1")]
    assert not (out / ".ablate.lock").exists()


@pytest.mark.slow
def test_a_diverging_variant_is_recorded_as_failed_and_retried(tmp_path, capsys, monkeypatch):
    set_file = write(tmp_path / "s.yaml", "- name: ok\n- name: diverges\n  lr: 0.02\n")
    fit = Trainer.fit

    def fit_or_diverge(self):
        if self.cfg.lr == 0.02:
            raise NonFiniteLossError("5 optimiser steps in a row had a non-finite loss")
        return fit(self)

    monkeypatch.setattr(Trainer, "fit", fit_or_diverge)
    out = tmp_path / "abl"
    assert ablate(out, set_file) == 1
    captured = capsys.readouterr()
    assert "diverges seed 0: FAILED" in captured.out and "1 run(s) failed (diverges)" in captured.err
    assert (out / "runs" / "diverges" / "seed-0" / "failed.json").is_file()
    assert "| `diverges` | trecvit | lr=0.02 | 0 of 1 (1 failed) | failed |" in (out / "results.md").read_text()
    monkeypatch.setattr(Trainer, "fit", fit)
    assert ablate(out, set_file) == 0  # a rerun retries it
    assert not (out / "runs" / "diverges" / "seed-0" / "failed.json").exists()
    assert [r["seeds"] for r in read_csv(out / "results.csv")] == ["1", "1"]
