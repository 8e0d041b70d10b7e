"""``trecvit demo``: TRecViT learns motion that an order-blind model cannot see.

On the built-in synthetic motion dataset (:mod:`trecvit.data.synthetic`), where
the class is *how* an object moves and five pairs of classes are the same clips
played backwards, the demo trains a small TRecViT and the same ViT with its
temporal blocks removed (frames averaged, :class:`trecvit.baselines.FrameAverageViT`),
evaluates both on held-out clips, prints a comparison, saves the TRecViT
(``save_pretrained``), the training curves, and a held-out clip as ``.mp4``, and
classifies that clip frame by frame as ``trecvit classify --stream`` does
(:func:`trecvit.classification.inference.classify_stream`).
Everything is seeded: the numbers are the same on every run on the same machine.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from trecvit.training import TrainConfig, Trainer
from trecvit.training.metrics import EvalResult, plot_curves

MARKER = ".trecvit-demo"

TARGET_TOP1 = 0.90  # TRecViT on held-out clips
BASELINE_PAIR_BAND = 0.10  # the baseline's within-pair accuracy must be 50% +- this

# The model: TRecViT-mu's family at width 96, 3 layers, 8x8 patches of 32x32 frames.
DEMO_MODEL = dict(width=96, depth=3, num_heads=4, mlp_dim=384, patch_size=8, rep_size=0)


def demo_config(out_dir: Path, *, quick: bool, seed: int) -> TrainConfig:
    """The TRecViT run of the demo (the baseline changes ``arch`` and ``epochs``)."""
    return TrainConfig(
        out_dir=str(out_dir / "trecvit"), seed=seed, data="synthetic",
        synthetic_train_size=192 if quick else 9600, synthetic_val_size=48 if quick else 1200,
        num_frames=8, image_size=32, variant="mu", model=dict(DEMO_MODEL),
        epochs=1 if quick else 6, batch_size=32, lr=2e-3, min_lr=1e-5, warmup_steps=5 if quick else 150,
        weight_decay=0.05, clip_grad=1.0, log_every=2 if quick else 25, eval_every=2,
        num_workers=0, tensorboard=True, progress=True)


@dataclass
class ModelScores:
    """Held-out results of one model of the demo."""

    name: str
    top1: float
    pair_top1: float  # top-1 over clips of the reversed-pair classes
    within_pair: float  # P(score of the true class > score of its time-reversed partner)
    per_pair: list[float]  # within-pair accuracy of each reversed pair
    train_minutes: float
    parameters: int


@dataclass
class DemoResult:
    passed: bool
    trecvit: ModelScores
    baseline: ModelScores
    out_dir: Path
    model_dir: Path
    clip: Path
    seconds: float


def pair_scores(name: str, result: EvalResult, minutes: float, parameters: int) -> ModelScores:
    """Top-1, and how often the true class beats its time-reversed partner."""
    from trecvit.data.synthetic import REVERSED_PAIRS

    probs, labels = result.probs, result.labels
    assert probs is not None and labels is not None
    in_pairs = torch.zeros_like(labels, dtype=torch.bool)
    wins, per_pair = [], []
    for a, b in REVERSED_PAIRS:
        pair_wins = []
        for true, other in ((a, b), (b, a)):
            mask = labels == true
            in_pairs |= mask
            pair_wins.append(probs[mask, true] > probs[mask, other])
        pair_wins = torch.cat(pair_wins)
        wins.append(pair_wins)
        per_pair.append(pair_wins.float().mean().item())
    top1 = probs.argmax(-1) == labels
    return ModelScores(name, top1.float().mean().item(), top1[in_pairs].float().mean().item(),
                       torch.cat(wins).float().mean().item(), per_pair, minutes, parameters)


def format_table(rows: list[ModelScores]) -> str:
    from trecvit.data.synthetic import MOTION_CLASSES, REVERSED_PAIRS

    pair_names = [f"{MOTION_CLASSES[a].split()[-1]}/{MOTION_CLASSES[b].split()[-1]}"
                  for a, b in REVERSED_PAIRS]
    head = (f"  {'model':<28} {'params':>8} {'train':>7} {'top-1':>7} {'pairs top-1':>12} "
            f"{'true > reversed':>16}")
    lines = [head, "  " + "-" * (len(head) - 2)]
    for r in rows:
        lines.append(f"  {r.name:<28} {r.parameters / 1e6:>7.2f}M {r.train_minutes:>5.1f}min "
                     f"{100 * r.top1:>6.1f}% {100 * r.pair_top1:>11.1f}% {100 * r.within_pair:>15.1f}%")
    lines.append("")
    lines.append("  true > reversed, per pair (chance 50%): " + ", ".join(pair_names))
    for r in rows:
        lines.append(f"  {r.name:<28} " + "  ".join(f"{100 * v:5.1f}%" for v in r.per_pair))
    return "\n".join(lines)


def _prepare(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out-dir {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ValueError(f"{out} is not empty; pass --overwrite to replace an earlier demo, or "
                             "choose another --out-dir")
        if not (out / MARKER).exists():
            raise ValueError(f"{out} is not empty and was not written by trecvit demo; refusing to "
                             "delete it (choose another --out-dir)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by trecvit demo\n", encoding="utf-8")


def run_demo(out_dir: str | Path = "trecvit-demo", *, overwrite: bool = False, quick: bool = False,
             seed: int = 0) -> DemoResult:
    """Run the demo (see the module docstring); prints its progress and the table."""
    from trecvit.checkpoints.auto import load_model
    from trecvit.classification.inference import classify_stream, clip_settings
    from trecvit.classification.labels import CLASSES_NAME, load_labels
    from trecvit.data.synthetic import MOTION_CLASSES, REVERSED_PAIRS, write_synthetic_videos

    t0 = time.perf_counter()
    out = Path(out_dir)
    _prepare(out, overwrite)
    cfg = demo_config(out, quick=quick, seed=seed)
    print(f"trecvit demo: {len(MOTION_CLASSES)} motion classes "
          f"({len(REVERSED_PAIRS)} pairs are the same clips played backwards), "
          f"{cfg.synthetic_train_size} training clips, {cfg.synthetic_val_size} held-out clips of "
          f"{cfg.num_frames} frames at {cfg.image_size}x{cfg.image_size}; writing to {out}/", flush=True)

    print("\n[1/4] training TRecViT", flush=True)
    t = time.perf_counter()
    res_t = Trainer(cfg).fit()
    minutes_t = (time.perf_counter() - t) / 60
    print("\n[2/4] training the order-blind baseline (the same ViT, temporal blocks removed, frames "
          "averaged)", flush=True)
    t = time.perf_counter()
    base_cfg = cfg.replace(out_dir=str(out / "baseline"), arch="frame_average",
                           epochs=1)
    res_b = Trainer(base_cfg).fit()
    minutes_b = (time.perf_counter() - t) / 60

    model_t = load_model(res_t.model_dir)
    n_t = model_t.num_parameters()
    n_b = load_model(res_b.model_dir).num_parameters()
    rows = [pair_scores("TRecViT", res_t.final_eval, minutes_t, n_t),
            pair_scores("frame-average ViT (baseline)", res_b.final_eval, minutes_b, n_b)]
    plot_curves({"TRecViT": out / "trecvit" / "metrics.csv",
                 "frame-average ViT": out / "baseline" / "metrics.csv"}, out / "curves.png",
                title="synthetic motion: TRecViT vs the order-blind baseline")

    print(f"\n[3/4] held-out results ({res_t.final_eval.num_videos} clips)\n")
    print(format_table(rows))

    print("\n[4/4] a held-out clip as .mp4, classified frame by frame (trecvit classify --stream)",
          flush=True)
    clips_dir = out / "heldout_clips"
    write_synthetic_videos(clips_dir, len(MOTION_CLASSES), num_frames=cfg.num_frames,
                           image_size=cfg.image_size, seed=cfg.seed + 1000)
    clips = sorted((clips_dir / "videos").glob("*.mp4"))
    # a clip of "moving right": the reverse of "moving left", which the baseline cannot tell apart
    clip = next((c for c in clips if c.stem.endswith("moving_right")), clips[0])
    print(f"$ trecvit classify {clip} --checkpoint {res_t.model_dir} --stream --top-k 3", flush=True)
    labels = load_labels(model_t.config.num_classes, res_t.model_dir / CLASSES_NAME)
    settings = clip_settings(model_t, res_t.model_dir)
    classify_stream(model_t, clip, labels, top=3, stride=settings.stride, image_size=settings.image_size,
                    write=lambda line: print(line, flush=True))

    trecvit, baseline = rows
    passed = trecvit.top1 >= TARGET_TOP1 and abs(baseline.within_pair - 0.5) <= BASELINE_PAIR_BAND
    seconds = time.perf_counter() - t0
    verdict = "PASS" if passed else ("QUICK RUN (no target)" if quick else "MISSED")
    print(f"\n{verdict}: TRecViT top-1 {100 * trecvit.top1:.1f}% (target >= {100 * TARGET_TOP1:.0f}%); "
          f"baseline picks the true class over its time-reversed partner {100 * baseline.within_pair:.1f}% "
          f"of the time (chance 50%). Total {seconds / 60:.1f} min.")
    print(f"Saved: model {res_t.model_dir}, curves {out / 'curves.png'}, metrics "
          f"{out / 'trecvit' / 'metrics.csv'}, held-out clips {clips_dir}.")
    return DemoResult(passed, trecvit, baseline, out, res_t.model_dir, clip, seconds)
