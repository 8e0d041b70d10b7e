"""Ablation runs behind ``trecvit ablate``: a table of training variants, each one ``Trainer`` run
per seed, with resumable partial results (the paper's section 5.1, Tables 1 and 2).

The variants and the built-in sets (and the YAML file of a set) are in
:mod:`trecvit.training.ablation_sets`.

The folder of an ablation (``OUT``)::

    OUT/ablation.yaml                  the set, its base config, variants and seeds
    OUT/runs/<variant>/seed-<s>/       one `trecvit train` run folder each, plus result.json
    OUT/results.csv, OUT/results.md    the table, rewritten after every finished run
    OUT/curves.png                     the training loss of every variant (first seed)

Resuming: a run whose ``result.json`` exists with the same configuration (runtime options such
as ``num_workers`` aside) is skipped, a run with checkpoints continues from the newest one, the
others start; so a killed ablation continues at the first unfinished variant. A finished (or
checkpointed) run whose configuration differs from the one asked for is refused, naming the
differences; ``overwrite=True`` deletes and retrains only those runs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from trecvit.checkpoints.integrity import atomic_write
from trecvit.training.ablation_sets import (FAILED_FILE, RESULT_FILE, PlannedRun, Variant, read_result,
                                            run_state)
from trecvit.training.config import RUNTIME_FIELDS, TrainConfig

logger = logging.getLogger(__name__)

SETTINGS_FILE = "ablation.yaml"
LOCK_FILE = ".ablate.lock"


# ------------------------------------------------------------------------------- resolving variants
def resolve(base: TrainConfig, variant: Variant) -> tuple[TrainConfig, list[str]]:
    """The run configuration of ``variant`` over ``base`` and notes on what was adapted: a base
    ``model`` field that the variant's architecture does not have is dropped (with a note).

    Raises:
        ValueError: naming the variant, when its configuration or its model config is invalid.
    """
    from trecvit.architectures import get_architecture

    data = base.to_dict()
    changes = dict(variant.changes)
    own_model = changes.pop("model", {}) or {}
    data.update(changes)
    model = {**data["model"], **own_model}
    notes = []
    if variant.lr_scale != 1.0:
        data["lr"], data["min_lr"] = data["lr"] * variant.lr_scale, data["min_lr"] * variant.lr_scale
        notes.append(f"lr and min_lr x {variant.lr_scale:g}")
    try:
        row = get_architecture(data["arch"])
        known = {f.name for f in dataclasses.fields(row.config_class)}
        for key in [k for k in model if k not in known and k not in own_model]:
            del model[key]
            notes.append(f"base model.{key} dropped ({row.config_class.__name__} has no such field)")
        data["model"] = model
        cfg = TrainConfig.from_dict(data, source="config")
        check_model_config(cfg)
    except ValueError as err:
        raise ValueError(f"variant {variant.name!r}: {err}") from None
    return cfg, notes


def check_model_config(cfg: TrainConfig) -> None:
    """Build the model config of ``cfg`` as the trainer does (without the data's class count), so
    that a bad ``model`` field fails before any training."""
    from trecvit.architectures import get_architecture

    if cfg.init != "scratch":  # the sizes come from the checkpoint
        return
    overrides = {k: v for k, v in cfg.model.items() if k != "num_classes"}
    overrides.setdefault("image_size", cfg.image_size)
    overrides.setdefault("frames_per_clip", cfg.num_frames)
    try:
        get_architecture(cfg.arch).config(cfg.variant, **overrides)
    except (TypeError, ValueError) as err:
        raise ValueError(f"model (arch {cfg.arch}, variant {cfg.variant}): {err}") from None


def describe_changes(base: TrainConfig, cfg: TrainConfig) -> str:
    """What differs in ``cfg`` from ``base`` (runtime options and the seed aside), e.g.
    ``arch=vit_lstm, model.min_rad=0.6``; ``"none (the base)"`` when nothing does."""
    a, b = base.to_dict(), cfg.to_dict()
    parts = []
    for key in a:
        if key in RUNTIME_FIELDS or key == "seed":
            continue
        if key == "model":
            parts += [f"model.{k}={_text(v)}" for k, v in b["model"].items() if a["model"].get(k, ...) != v]
            parts += [f"model.{k} dropped" for k in a["model"] if k not in b["model"]]
        elif a[key] != b[key]:
            parts.append(f"{key}={_text(b[key])}")
    return ", ".join(parts) or "none (the base)"


def _text(value: Any) -> str:
    """A config value as written in the changes column: ``0.6``, ``false``, ``space_time``."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def check_held_out(name: str, cfg: TrainConfig) -> None:
    """An ablation compares held-out top-1: refuse a run without a validation split."""
    if (cfg.data == "synthetic" and cfg.synthetic_val_size == 0) or (cfg.data != "synthetic"
                                                                      and not cfg.val_data):
        raise ValueError(f"variant {name!r} has no held-out split to measure top-1 on; give --val-data "
                         "(or --synthetic-val-size > 0 for the synthetic data)")


def plan(base: TrainConfig, variants: Sequence[Variant], seeds: Sequence[int]) -> list[PlannedRun]:
    """Every (variant, seed) run, variant by variant, checked before anything is trained; each run
    folder is ``base.out_dir/runs/<variant>/seed-<s>``."""
    if not seeds:
        raise ValueError("an ablation needs at least one seed (--seeds N, N >= 1)")
    runs = []
    root = Path(base.out_dir)
    for v in variants:
        cfg, notes = resolve(base, v)
        check_held_out(v.name, cfg)
        changes = describe_changes(base, cfg)
        for s in seeds:
            run_dir = root / "runs" / v.name / f"seed-{s}"
            runs.append(PlannedRun(v, s, cfg.replace(seed=s, out_dir=str(run_dir)), notes, changes))
    return runs


def measure_run(run: PlannedRun, result) -> dict[str, Any]:
    """The ``result.json`` of a finished :class:`~trecvit.training.TrainResult`: held-out top-1,
    training steps per second (the median over metrics.csv's log windows, which count training
    time only), parameters."""
    from trecvit.checkpoints.auto import load_model
    from trecvit.training.metrics import MetricsLog

    rates = [float(r["clips_per_s"]) for r in MetricsLog.read(run.out_dir / "metrics.csv")
             if r["split"] == "train" and r.get("clips_per_s")]
    ev = result.final_eval
    return {
        "variant": run.variant.name, "seed": run.seed, "arch": run.config.arch,
        "top1": ev.top1, "top5": ev.top5, "loss": ev.loss, "num_videos": ev.num_videos,
        "steps": result.steps, "skipped_steps": result.skipped_steps,
        "steps_per_s": statistics.median(rates) / run.config.batch_size if rates else None,
        "parameters": load_model(result.model_dir).num_parameters(),
        "seconds": result.seconds, "changes": run.changes, "config": run.config.to_dict(),
    }


def _write_json(path: Path, data: dict[str, Any]) -> None:
    text = json.dumps(data, indent=2) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


@contextmanager
def _locked(out: Path):
    """Refuse a second ``trecvit ablate`` on the same folder while one runs (a stale lock of a
    killed process is taken over)."""
    lock = out / LOCK_FILE
    if lock.is_file():
        try:
            pid = int(lock.read_text().strip() or 0)
        except ValueError:
            pid = 0
        if pid and pid != os.getpid() and _alive(pid):
            raise ValueError(f"another trecvit ablate (process {pid}) is running in {out}; wait for it, or "
                             f"delete {lock} if that process is not an ablate")
    lock.write_text(f"{os.getpid()}\n")
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _prepare_folder(out: Path, set_name: str) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out-dir {out} exists and is not a directory")
    settings = out / SETTINGS_FILE
    if settings.is_file():
        saved = (yaml.safe_load(settings.read_text(encoding="utf-8")) or {}).get("set")
        if saved != set_name:
            raise ValueError(f"{out} holds the ablation of set {saved!r}, not {set_name!r}; choose another "
                             "--out-dir")
    elif out.is_dir() and any(out.iterdir()):
        raise ValueError(f"--out-dir {out} is not empty and holds no {SETTINGS_FILE} (not an ablation "
                         "folder); choose another --out-dir")
    out.mkdir(parents=True, exist_ok=True)


def read_settings(out_dir: str | Path) -> dict[str, Any]:
    """The saved ``ablation.yaml`` of an ablation folder (``set``, ``seeds``, ``base``, ``variants``)."""
    path = Path(out_dir) / SETTINGS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"--resume: {path} does not exist; give --out-dir of an earlier ablation")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------- running
@dataclass
class AblationOutcome:
    """What :func:`run_ablation` did: the runs trained, skipped and failed, and the table."""

    out_dir: Path
    trained: list[str]
    skipped: list[str]
    failed: list[str]
    markdown: str


def run_ablation(base: TrainConfig, variants: Sequence[Variant], *, set_name: str, seeds: Sequence[int],
                 only: Sequence[str] | None = None, overwrite: bool = False,
                 report: Callable[[str], None] = logger.info) -> AblationOutcome:
    """Train every variant at every seed into ``base.out_dir`` (see the module docstring), resuming
    where an earlier call stopped, and write the results table after each run.

    Args:
        base: the base run; ``out_dir`` is the ablation folder.
        variants: the rows of the table, in order.
        set_name: recorded in ``ablation.yaml``; a folder of another set is refused.
        seeds: the seeds of every variant.
        only: train only these variants (the table still lists every finished one).
        overwrite: delete and retrain runs whose configuration changed (else they are refused).
        report: receives one line per run started, skipped or finished.

    Raises:
        ValueError: a bad variant, an ``only`` name not in the set, a folder that is not this
            ablation's, or runs of another configuration without ``overwrite``.
    """
    from trecvit.training import NonFiniteLossError, Trainer
    from trecvit.training.ablation_report import write_reports

    names = [v.name for v in variants]
    unknown = [n for n in (only or ()) if n not in names]
    if unknown:
        raise ValueError(f"--only {','.join(unknown)}: not in set {set_name!r}, whose variants are "
                         f"{', '.join(names)}")
    runs = plan(base, variants, seeds)
    todo = [r for r in runs if not only or r.variant.name in only]
    out = Path(base.out_dir)
    _prepare_folder(out, set_name)
    with _locked(out):
        states = {id(r): run_state(r) for r in todo}
        changed = [r for r in todo if states[id(r)][0] == "changed"]
        if changed and not overwrite:
            lines = "\n".join(f"  {r.out_dir}: {states[id(r)][1]}" for r in changed)
            raise ValueError(f"{len(changed)} run(s) in {out} were trained with another configuration:\n"
                             f"{lines}\npass --overwrite to delete and retrain them, or choose another "
                             "--out-dir")
        for r in changed:
            report(f"{r.variant.name} seed {r.seed}: configuration changed ({states[id(r)][1]}); deleting "
                   f"{r.out_dir} to retrain it (--overwrite)")
            shutil.rmtree(r.out_dir)
            states[id(r)] = ("new", "")
        settings = {"set": set_name, "seeds": list(seeds), "base": base.to_dict(),
                    "variants": [v.to_dict() for v in variants]}
        text = yaml.safe_dump(settings, sort_keys=False)
        atomic_write(out / SETTINGS_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        trained, skipped, failed = [], [], []
        pending = [r for r in todo if states[id(r)][0] != "done"]
        if not pending:
            report(f"all {len(todo)} run(s) of {set_name} in {out} are finished; nothing to train")
        for i, r in enumerate(todo, start=1):
            label = f"[{i}/{len(todo)}] {r.variant.name} seed {r.seed}"
            state, detail = states[id(r)]
            if state == "done":
                top1 = 100 * read_result(r.out_dir)["top1"]
                report(f"{label}: finished earlier, skipped (top-1 {top1:.1f}%)")
                skipped.append(r.variant.name)
                continue
            step = f"continuing from step {detail}" if state == "partial" else "starting"
            report(f"{label}: {step} ({r.changes}) -> {r.out_dir}")
            t = time.perf_counter()
            try:
                result = Trainer(r.config, resume=True).fit()
            except NonFiniteLossError as err:  # a variant that diverges is a result, not a crash
                _write_json(r.out_dir / FAILED_FILE, {"variant": r.variant.name, "seed": r.seed,
                                                      "error": str(err)})
                report(f"{label}: FAILED ({err}); a rerun retries it from its last checkpoint")
                failed.append(r.variant.name)
                write_reports(out, set_name, base, runs)
                continue
            data = measure_run(r, result)
            _write_json(r.out_dir / RESULT_FILE, data)
            (r.out_dir / FAILED_FILE).unlink(missing_ok=True)
            trained.append(r.variant.name)
            rate = f"{data['steps_per_s']:.2f}" if data["steps_per_s"] else "?"
            report(f"{label}: finished in {(time.perf_counter() - t) / 60:.1f} min: top-1 "
                   f"{100 * data['top1']:.1f}%, {rate} steps/s, {data['parameters'] / 1e6:.2f}M parameters")
            write_reports(out, set_name, base, runs)
        markdown = write_reports(out, set_name, base, runs)
    return AblationOutcome(out, trained, skipped, failed, markdown)


__all__ = ["AblationOutcome", "PlannedRun", "check_model_config", "describe_changes", "plan", "read_result",
           "read_settings", "resolve", "run_ablation", "run_state"]
