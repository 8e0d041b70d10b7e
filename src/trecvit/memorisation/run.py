"""One ``trecvit memorise`` run: train the models, evaluate them, write the table and the figures.

:func:`run_memorisation` trains each model of the run (or, with ``resume``, reuses one already
trained in the output folder with the same settings), evaluates every model at every test length
on the same held-out videos (ViViT once per interpolation of its temporal position embedding,
nearest and linear, switched on the trained model), adds the two remember-nothing baselines, and
writes into the output folder:

* ``results.md``: the table in the layout of the paper's Table 6, and the settings;
* ``results.csv`` and ``results.json``: every row of the table and of the sweep;
* ``sweep.png`` (:func:`~trecvit.memorisation.plots.plot_sweep`) and ``reconstructions.png``
  (:func:`~trecvit.memorisation.plots.plot_reconstructions`);
* ``run.json`` (the settings) and per model a folder ``trecvit/`` / ``vivit/`` with
  ``config.json``, ``model.safetensors`` and ``train_log.csv``.

A folder holding an earlier run is refused unless ``overwrite`` (which deletes the files above
and nothing else) or ``resume`` is given.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import shutil
import statistics
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from trecvit.checkpoints.integrity import atomic_write
from trecvit.memorisation.models import MODEL_CLASSES, build_config, build_model, count_parameters
from trecvit.memorisation.task import (RESAMPLINGS, EvalResult, MemoriseConfig, baseline_psnr, evaluate,
                                       oracle_psnr, train_model)

logger = logging.getLogger(__name__)

OUTPUT_FILES = ("results.md", "results.csv", "results.json", "sweep.png", "reconstructions.png", "run.json")
MODEL_NAMES = {"trecvit": "TRecViT", "vivit": "ViViT"}
# The paper's Table 6 (PSNR, dB; ViViT-L and TRecViT, Walking Tours at 224 x 224, ImageNet-initialised).
PAPER_TABLE6 = [
    {"model": "ViViT-L", "frames_train": 96, "frames_test": 96, "psnr": 32.2},
    {"model": "TRecViT", "frames_train": 96, "frames_test": 96, "psnr": 29.1},
    {"model": "ViViT-L", "frames_train": 64, "frames_test": 96, "psnr": 15.1},
    {"model": "TRecViT", "frames_train": 64, "frames_test": 96, "psnr": 26.4},
]
CSV_FIELDS = ("model", "interpolation", "params", "frames_train", "frames_test", "target_frame", "psnr",
              "psnr_sem", "closest_frame", "closest_is_k", "num_videos", "in_table")


@dataclass
class RunResult:
    """What :func:`run_memorisation` measured and wrote."""

    rows: list[dict]
    table: str
    out_dir: Path
    train_seconds: dict[str, float]


def check_out_dir(out_dir: str | Path, *, overwrite: bool, resume: bool) -> list[str]:
    """Check ``out_dir`` before any work: an earlier run in it is refused unless ``overwrite`` or
    ``resume``. Returns the names of the earlier run's files and folders found there."""
    out = Path(out_dir)
    if overwrite and resume:
        raise ValueError("give --overwrite (start afresh) or --resume (reuse trained models), not both")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out-dir {out} is a file, not a folder")
    ours = [name for name in (*OUTPUT_FILES, *MODEL_CLASSES) if (out / name).exists()]
    if ours and not (overwrite or resume):
        raise ValueError(f"--out-dir {out} holds an earlier run ({', '.join(ours)}); pass --resume to reuse "
                         "its trained models (the results are written again) or --overwrite to start afresh")
    return ours


def prepare_out_dir(out_dir: str | Path, *, overwrite: bool, resume: bool) -> Path:
    """:func:`check_out_dir`, then create the folder; with ``overwrite`` the earlier run's files
    and model folders are deleted first (nothing else in the folder)."""
    out = Path(out_dir)
    for name in check_out_dir(out, overwrite=overwrite, resume=resume):
        if overwrite:
            target = out / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def _normalised(data: dict) -> dict:
    return json.loads(json.dumps(data))


def save_trained(model: nn.Module, folder: Path, kind: str, settings: dict, log) -> None:
    """``model.safetensors``, ``train_log.csv``, then ``config.json`` (written last: its presence
    means the folder is complete)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(folder / "model.safetensors", lambda tmp: save_file(state, str(tmp)))
    lines = ["step,loss,lr"] + [f"{i},{loss:.6g},{lr:.6g}"
                                for i, (loss, lr) in enumerate(zip(log.losses, log.lrs))]
    atomic_write(folder / "train_log.csv", lambda tmp: tmp.write_text("\n".join(lines) + "\n"))
    info = {"arch": model.arch, "kind": kind, "config": model.config.to_dict(), "training": settings,
            "result": {"steps": len(log.losses), "seconds": round(log.seconds, 1),
                       "final_loss": log.final_loss, "params": count_parameters(model)}}
    atomic_write(folder / "config.json", lambda tmp: tmp.write_text(json.dumps(info, indent=2) + "\n"))


def load_trained(folder: Path, kind: str, config, settings: dict) -> tuple[nn.Module, dict] | None:
    """The model trained in ``folder`` if it is complete and was trained with exactly ``config``
    and ``settings``; ``None`` if the folder is absent or incomplete; ``ValueError`` if it differs."""
    from safetensors.torch import load_file

    info_path = folder / "config.json"
    if not info_path.is_file() or not (folder / "model.safetensors").is_file():
        return None
    info = json.loads(info_path.read_text(encoding="utf-8"))
    wanted = {"config": _normalised(config.to_dict()), "training": _normalised(settings)}
    for part, value in wanted.items():
        if info.get(part) != value:
            diff = sorted(k for k in set(value) | set(info.get(part, {}))
                          if info.get(part, {}).get(k) != value.get(k))
            raise ValueError(f"--resume: the {kind} model in {folder} was trained with other {part} "
                             f"({', '.join(diff)}); use the same options, or --overwrite to start afresh")
    model = build_model(kind, config)
    model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
    return model.eval(), info["result"]


def make_source(cfg: MemoriseConfig):
    """The run's video source: synthetic walking tours or windows of a folder's videos."""
    from trecvit.memorisation.data import FolderWindows, SyntheticTours

    if cfg.data == "synthetic":
        return SyntheticTours(cfg.image_size, cfg.seed)
    return FolderWindows(cfg.data_dir, cfg.image_size, cfg.seed, held_out_frames=max(cfg.eval_lengths),
                         stride=cfg.data_stride)


def _row(model: str, interpolation: str, params: int | None, frames_train: int | None, frames_test: int,
         cfg: MemoriseConfig, psnr: torch.Tensor, matched: torch.Tensor | None) -> dict:
    result = EvalResult(psnr=psnr, recon=torch.empty(0), matched=torch.empty(0))
    row = {"model": model, "interpolation": interpolation, "params": params, "frames_train": frames_train,
           "frames_test": frames_test, "target_frame": cfg.target_frame, "psnr": round(result.mean, 3),
           "psnr_sem": round(result.sem, 3), "closest_frame": None, "closest_is_k": None,
           "num_videos": int(psnr.numel()), "in_table": frames_test in cfg.test_frames}
    if matched is not None:
        row["closest_frame"] = statistics.median(int(m) for m in matched)
        row["closest_is_k"] = round(float((matched == cfg.target_frame).float().mean()), 3)
    return row


def evaluate_all(models: dict[str, nn.Module], videos: torch.Tensor, cfg: MemoriseConfig,
                 show_progress: bool = True) -> tuple[list[dict], dict[tuple[str, int], EvalResult]]:
    """Every model (ViViT with each interpolation) and both baselines at every test length of
    ``cfg.eval_lengths`` on ``videos``. Returns the rows and the evaluations by (label, length)."""
    from tqdm.auto import tqdm

    rows, evals = [], {}
    oracles = oracle_psnr(videos, cfg.target_frame, cfg.patch_size)
    for t in tqdm(cfg.eval_lengths, desc="evaluate", disable=not show_progress, dynamic_ncols=True):
        for name, psnr in {**baseline_psnr(videos, t, cfg.target_frame), **oracles}.items():
            rows.append(_row(name, "-", None, None, t, cfg, psnr, None))
        for kind, model in models.items():
            params = count_parameters(model)
            modes = RESAMPLINGS if kind == "vivit" else ("none (recurrent)",)
            for mode in modes:
                if kind == "vivit" and t == cfg.train_frames and mode != modes[0]:
                    ev = evals[(f"vivit:{modes[0]}", t)]  # the learnt embedding as it is: no resampling
                elif kind == "vivit":
                    with model.resampling(mode):
                        ev = evaluate(model, videos, t, cfg.target_frame, batch_size=cfg.batch_size,
                                      device=cfg.device)
                else:
                    ev = evaluate(model, videos, t, cfg.target_frame, batch_size=cfg.batch_size,
                                  device=cfg.device)
                evals[(f"{kind}:{mode}" if kind == "vivit" else kind, t)] = ev
                rows.append(_row(MODEL_NAMES[kind], mode, params, cfg.train_frames, t, cfg, ev.psnr,
                                 ev.matched))
    return rows, evals


def format_table(rows: list[dict], cfg: MemoriseConfig) -> str:
    """The Markdown table of the test lengths, in the layout of the paper's Table 6: the rows
    tested at the training length first, then the longer ones; the baselines below."""
    def key(r):
        order = RESAMPLINGS.index(r["interpolation"]) if r["interpolation"] in RESAMPLINGS else 0
        return (r["frames_test"] != cfg.train_frames, r["frames_test"], r["model"] != "ViViT", order)

    lines = ["| Model | Params | Frames train | Frames test | ViViT temporal posemb | PSNR (dB) | "
             "Closest input frame (median; share = k) |", "|---|---|---|---|---|---|---|"]
    models = sorted((r for r in rows if r["in_table"] and r["frames_train"] is not None), key=key)
    # at the training length ViViT's embedding is not resampled: one row, not one per interpolation
    models = [r for r in models if not (r["model"] == "ViViT" and r["frames_test"] == cfg.train_frames
                                        and r["interpolation"] != RESAMPLINGS[0])]
    for r in models:
        interp = "learnt (no resampling)" if r["model"] == "ViViT" and r["frames_test"] == cfg.train_frames \
            else (r["interpolation"] if r["model"] == "ViViT" else "-")
        lines.append(f"| {r['model']} | {r['params'] / 1e3:.0f}k | {r['frames_train']} | "
                     f"{r['frames_test']} | "
                     f"{interp} | {r['psnr']:.2f} ± {r['psnr_sem']:.2f} | {r['closest_frame']:g} "
                     f"({100 * r['closest_is_k']:.0f}%) |")
    refs = sorted((r for r in rows if r["in_table"] and r["frames_train"] is None), key=key)
    for r in sorted(refs, key=lambda r: ("oracle" in r["model"], r["frames_test"])):
        if "oracle" in r["model"] and r["frames_test"] != min(cfg.test_frames):
            continue  # the oracles copy frame k: the same at every length
        what = "reference" if "oracle" in r["model"] else "baseline"
        length = "any" if "oracle" in r["model"] else r["frames_test"]
        lines.append(f"| *{r['model']}* ({what}) | - | - | {length} | - | "
                     f"{r['psnr']:.2f} ± {r['psnr_sem']:.2f} | - |")
    return "\n".join(lines)


def write_results(out: Path, cfg: MemoriseConfig, rows: list[dict], table: str, train_info: dict) -> None:
    """``results.md``, ``results.csv`` and ``results.json``."""
    n = cfg.val_videos
    source = ("synthetic walking tours" if cfg.data == "synthetic"
              else f"windows of the videos in {cfg.data_dir}")
    md = ["# Long-video memorisation (the paper's Table 6)\n",
          f"Reconstruct frame k = {cfg.target_frame} of T frames from the model's output; trained on "
          f"T = {cfg.train_frames}, {cfg.image_size} x {cfg.image_size} frames, {cfg.patch_size} x "
          f"{cfg.patch_size} patches, {source}; {cfg.steps} steps of {cfg.batch_size} videos, "
          f"seed {cfg.seed}. "
          f"PSNR on pixels in [0, 1], per video, then averaged over {n} held-out videos (± standard error). "
          "\"Closest input frame\": the input frame each reconstruction is nearest to (PSNR), median over "
          "videos, and the share of videos where it is frame k. The oracles are no models: frame k's "
          "own mean colour, and its patches' mean colours (what a memory of colours alone can reach).\n",
          table, ""]
    for kind, info in train_info.items():
        md.append(f"- {MODEL_NAMES[kind]}: {info['params']:,} parameters, trained in "
                  f"{info['seconds'] / 60:.1f} min, final training loss {info['final_loss']:.4f}")
    md.append("\nThe paper (Walking Tours, 224 x 224, ImageNet-initialised ViViT-L and TRecViT), "
              "PSNR (dB):\n")
    md.append("| Model | Frames train | Frames test | PSNR |\n|---|---|---|---|")
    md += [f"| {r['model']} | {r['frames_train']} | {r['frames_test']} | {r['psnr']} |" for r in PAPER_TABLE6]
    text = "\n".join(md) + "\n"
    atomic_write(out / "results.md", lambda tmp: tmp.write_text(text, encoding="utf-8"))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(out / "results.csv", lambda tmp: tmp.write_text(buf.getvalue(), encoding="utf-8"))
    payload = {"settings": cfg.to_dict(), "models": train_info, "rows": rows, "paper_table6": PAPER_TABLE6}
    atomic_write(out / "results.json", lambda tmp: tmp.write_text(json.dumps(payload, indent=2) + "\n"))


def write_figures(out: Path, cfg: MemoriseConfig, rows: list[dict], evals: dict,
                  videos: torch.Tensor) -> None:
    """``sweep.png`` and ``reconstructions.png``."""
    from trecvit.memorisation.plots import plot_reconstructions, plot_sweep

    plot_sweep(rows, out / "sweep.png", train_frames=cfg.train_frames, target_frame=cfg.target_frame,
               distances=cfg.sweep_distances, lengths=cfg.sweep_lengths,
               title=f"Memorisation of frame k = {cfg.target_frame}, trained on T = {cfg.train_frames}")
    t0 = min(cfg.test_frames)
    columns = [(f"last frame\nT={t0}", videos[:, t0 - 1], None)]
    for t in cfg.test_frames:
        for label, name in (("trecvit", "TRecViT"), ("vivit:nearest", "ViViT nearest"),
                            ("vivit:linear", "ViViT linear")):
            if (label, t) not in evals or (label == "vivit:linear" and t == cfg.train_frames):
                continue
            ev = evals[(label, t)]
            shown = "ViViT" if label.startswith("vivit") and t == cfg.train_frames else name
            columns.append((f"{shown}\nT={t}", ev.recon, ev.psnr))
    plot_reconstructions(videos[:, cfg.target_frame - 1], columns, out / "reconstructions.png",
                         title=f"Held-out videos: frame {cfg.target_frame} and its reconstructions after "
                               f"T frames (trained on T = {cfg.train_frames})")


def run_memorisation(cfg: MemoriseConfig, out_dir: str | Path, *, overwrite: bool = False,
                     resume: bool = False, show_progress: bool = True) -> RunResult:
    """Train (or reuse), evaluate and report; see the module docstring."""
    check_out_dir(out_dir, overwrite=overwrite, resume=resume)  # fail before any work
    source = make_source(cfg)  # a bad --data-dir fails here, before the folder is touched
    out = prepare_out_dir(out_dir, overwrite=overwrite, resume=resume)
    atomic_write(out / "run.json", lambda tmp: tmp.write_text(json.dumps(cfg.to_dict(), indent=2) + "\n"))
    logger.info("data: %s", source.describe() if hasattr(source, "describe") else cfg.data)
    videos = source.held_out(cfg.val_videos, max(cfg.eval_lengths))  # (V, T_max, 3, H, W)
    models, train_info = {}, {}
    for kind in cfg.models:
        config = build_config(kind, getattr(cfg, f"{kind}_variant"), image_size=cfg.image_size,
                              patch_size=cfg.patch_size, train_frames=cfg.train_frames,
                              overrides=getattr(cfg, f"{kind}_overrides"))
        settings = _normalised(cfg.training_settings(kind))
        loaded = load_trained(out / kind, kind, config, settings) if resume else None
        if loaded is not None:
            model, info = loaded
            logger.info("%s: reusing the model trained in %s", kind, out / kind)
        else:
            torch.manual_seed(cfg.seed * 1000 + list(MODEL_CLASSES).index(kind))  # per model, any order
            model = build_model(kind, config)
            log = train_model(model, source, cfg, desc=f"train {MODEL_NAMES[kind]}",
                              show_progress=show_progress)
            save_trained(model, out / kind, kind, settings, log)
            info = json.loads((out / kind / "config.json").read_text())["result"]
        models[kind] = model.to(cfg.device).eval()
        train_info[kind] = info
    rows, evals = evaluate_all(models, videos, cfg, show_progress=show_progress)
    table = format_table(rows, cfg)
    write_results(out, cfg, rows, table, train_info)
    write_figures(out, cfg, rows, evals, videos)
    return RunResult(rows=rows, table=table, out_dir=out,
                     train_seconds={k: float(v["seconds"]) for k, v in train_info.items()})
