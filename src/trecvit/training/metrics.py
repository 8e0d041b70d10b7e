"""Metrics: accuracy, per-class tables, and the CSV / TensorBoard / PNG logs of a run."""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from trecvit.checkpoints.integrity import atomic_write

logger = logging.getLogger(__name__)

CSV_FIELDS = ("step", "epoch", "split", "loss", "top1", "top5", "lr", "clips_per_s", "skipped")


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """``[b]`` bool: is the label among the ``k`` highest scores."""
    k = min(k, logits.shape[-1])
    return (logits.topk(k, dim=-1).indices == labels[:, None]).any(dim=-1)


@dataclass
class EvalResult:
    """Video-level results of an evaluation (scores averaged over the views of a video)."""

    loss: float
    top1: float
    top5: float
    num_videos: int
    per_class: list[tuple[int, int, float]] = field(default_factory=list)  # (class, videos, top-1)
    num_failed: int = 0
    probs: torch.Tensor | None = None  # [videos, classes]
    labels: torch.Tensor | None = None  # [videos]

    @classmethod
    def from_scores(cls, probs: torch.Tensor, labels: torch.Tensor, num_failed: int = 0) -> "EvalResult":
        """From per-video probabilities ``[v, classes]`` and labels ``[v]``."""
        if probs.shape[0] == 0:
            return cls(math.nan, math.nan, math.nan, 0, [], num_failed, probs, labels)
        nll = -torch.log(probs.gather(1, labels[:, None]).clamp_min(1e-12)).mean().item()
        top1 = topk_correct(probs, labels, 1)
        top5 = topk_correct(probs, labels, 5)
        per_class = []
        for c in range(probs.shape[1]):
            mask = labels == c
            if mask.any():
                per_class.append((c, int(mask.sum()), top1[mask].float().mean().item()))
        return cls(nll, top1.float().mean().item(), top5.float().mean().item(), int(labels.numel()),
                   per_class, num_failed, probs, labels)


def per_class_table(result: EvalResult, classes: list[str]) -> str:
    """A text table of top-1 per class, worst first."""
    rows = sorted(result.per_class, key=lambda r: r[2])
    width = max([len(classes[c]) for c, _, _ in rows] + [5])
    lines = [f"  {'class':<{width}}  videos   top-1"]
    for c, n, acc in rows:
        lines.append(f"  {classes[c]:<{width}}  {n:>6}  {100 * acc:5.1f}%")
    return "\n".join(lines)


def write_per_class_csv(path: Path, result: EvalResult, classes: list[str]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["class_index", "class", "videos", "top1"])
            for c, n, acc in result.per_class:
                w.writerow([c, classes[c], n, f"{acc:.6f}"])
    atomic_write(path, write)


class MetricsLog:
    """Appends metric rows to ``metrics.csv`` and, when available, TensorBoard.

    On resume, ``truncate_after(step)`` drops the rows a killed run wrote after its
    last checkpoint, so the file reads as one uninterrupted run.
    """

    def __init__(self, out_dir: Path, tensorboard: bool = True, fields: tuple[str, ...] = CSV_FIELDS):
        self.path = out_dir / "metrics.csv"
        self.fields = tuple(fields)
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is a dependency, but may be missing in odd installs
                logger.warning("tensorboard is not installed; metrics go to %s only", self.path)
            else:
                self.writer = SummaryWriter(log_dir=str(out_dir / "tensorboard"))
        if not self.path.exists():
            with open(self.path, "w", newline="", encoding="utf-8") as fh:
                csv.writer(fh).writerow(self.fields)

    def truncate_after(self, step: int) -> None:
        """Keep the rows up to ``step``, dropping any row cut short by a crash mid-write."""
        rows = self.read(self.path)

        def keep(row: dict[str, str]) -> bool:
            if any(row.get(k) is None for k in self.fields) or None in row:
                return False  # too few or too many fields: a torn line
            try:
                return int(row["step"]) <= step
            except ValueError:
                return False

        kept = [r for r in rows if keep(r)]
        if len(kept) == len(rows):
            return

        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                w = csv.DictWriter(fh, fieldnames=self.fields)
                w.writeheader()
                w.writerows(kept)
        atomic_write(self.path, write)

    def log(self, step: int, epoch: float, split: str, **values: float) -> None:
        row = {"step": step, "epoch": f"{epoch:.4f}", "split": split}
        for key in self.fields[3:]:
            value = values.get(key)
            row[key] = "" if value is None else (f"{value:.6g}" if isinstance(value, float) else value)
        with open(self.path, "a", newline="", encoding="utf-8") as fh:
            csv.DictWriter(fh, fieldnames=self.fields).writerow(row)
            fh.flush()
        if self.writer is not None:
            for key, value in values.items():
                if value is not None and not (isinstance(value, float) and math.isnan(value)):
                    self.writer.add_scalar(f"{split}/{key}", value, step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    @staticmethod
    def read(path: str | Path) -> list[dict[str, str]]:
        with open(path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))


def plot_curves(runs: dict[str, Path], out_png: Path, title: str = "", *, metric: str = "top1",
                metric_label: str = "validation top-1 (%)", scale: float = 100.0,
                ylim: tuple[float, float] | None = (0.0, 100.0)) -> None:
    """Training loss and a validation metric (column ``metric`` times ``scale``; top-1 in %
    by default) against the step of one or more runs (``{name: metrics.csv}``), side by side,
    as a PNG (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, csv_path in runs.items():
        rows = MetricsLog.read(csv_path)
        train = [(int(r["step"]), float(r["loss"])) for r in rows if r["split"] == "train" and r["loss"]]
        val = [(int(r["step"]), scale * float(r[metric])) for r in rows
               if r["split"] == "val" and r.get(metric)]
        if train:
            ax1.plot(*zip(*train), label=name, lw=1.2)
        if val:
            ax2.plot(*zip(*val), marker="o", label=name)
    ax1.set(xlabel="step", ylabel="training loss", yscale="log")
    ax2.set(xlabel="step", ylabel=metric_label)
    if ylim is not None:
        ax2.set_ylim(*ylim)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        if len(runs) > 1:
            ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    atomic_write(out_png, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
