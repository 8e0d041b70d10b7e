"""The results table of ``trecvit ablate``: per variant, held-out top-1 over seeds (mean, standard
deviation and variance, as the paper's appendix reports over seeds), training steps per second and
parameters, as Markdown and CSV, beside the paper's numbers (section 5.1, Tables 1 and 2).

The table is derived from the runs' ``result.json`` files only, so it can always be rewritten:
:func:`write_reports` is called after every finished run, and a partial ablation's table lists the
variants still to run.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from trecvit.checkpoints.integrity import atomic_write
from trecvit.training.ablation_sets import FAILED_FILE, PlannedRun, read_result, run_state
from trecvit.training.config import TrainConfig

CSV_COLUMNS = ("variant", "arch", "changes", "seeds", "seeds_planned", "top1_mean", "top1_std", "top1_var",
               "top1_per_seed", "steps_per_s", "params_M", "minutes", "failed_seeds", "paper_top1",
               "paper_steps_per_s", "note")


@dataclass
class VariantRow:
    """One row of the table: a variant's finished seeds.

    Attributes:
        top1: held-out top-1 (%) of each finished seed, in seed order.
        steps_per_s: mean over the finished seeds of each run's training steps per second.
        parameters: the model's parameter count (``None`` until a seed has finished).
    """

    variant: str
    arch: str
    changes: str
    note: str
    seeds_planned: int
    top1: list[float] = field(default_factory=list)
    steps_per_s: float | None = None
    parameters: int | None = None
    minutes: float = 0.0
    failed_seeds: list[int] = field(default_factory=list)
    paper: dict[str, float] = field(default_factory=dict)

    @property
    def seeds(self) -> int:
        return len(self.top1)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.top1) if self.top1 else None

    @property
    def std(self) -> float | None:
        """The sample standard deviation over seeds (``None`` with fewer than two)."""
        return statistics.stdev(self.top1) if len(self.top1) > 1 else None

    @property
    def var(self) -> float | None:
        """The sample variance over seeds (``None`` with fewer than two)."""
        return statistics.variance(self.top1) if len(self.top1) > 1 else None


def summarise(runs: Sequence[PlannedRun]) -> list[VariantRow]:
    """One :class:`VariantRow` per variant of ``runs``, in order, from the finished runs' results
    (a result of another configuration than the planned one is left out)."""
    rows: dict[str, VariantRow] = {}
    rates: dict[str, list[float]] = {}
    for r in runs:
        v = r.variant
        row = rows.setdefault(v.name, VariantRow(v.name, r.config.arch, r.changes, _note(r), 0,
                                                 paper=dict(v.paper)))
        row.seeds_planned += 1
        if run_state(r)[0] != "done":
            if (r.out_dir / FAILED_FILE).is_file():
                row.failed_seeds.append(r.seed)
            continue
        data = read_result(r.out_dir)
        row.top1.append(100 * data["top1"])
        row.parameters = data["parameters"]
        row.minutes += data["seconds"] / 60
        if data.get("steps_per_s"):
            rates.setdefault(v.name, []).append(data["steps_per_s"])
    for name, values in rates.items():
        rows[name].steps_per_s = statistics.fmean(values)
    return list(rows.values())


def _note(run: PlannedRun) -> str:
    return "; ".join(p for p in [run.variant.note, *run.notes] if p)


def _num(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def describe_base(base: TrainConfig, seeds: Sequence[int]) -> str:
    """One paragraph: the base run of the table (model, data, schedule, seeds)."""
    model = ", ".join(f"{k}={v}" for k, v in base.model.items()) or "no overrides"
    if base.data == "synthetic":
        data = (f"the synthetic motion data ({base.synthetic_train_size} training / "
                f"{base.synthetic_val_size} held-out clips")
    else:
        data = f"{base.data} data ({base.train_data}; held-out: {base.val_data}"
    data += f"; {base.num_frames} frames at {base.image_size}x{base.image_size})"
    length = f"{base.max_steps} steps" if base.max_steps else f"{base.epochs} epochs"
    seed_text = ", ".join(map(str, seeds))
    return (f"Base run: `{base.arch}` size {base.variant} ({model}) on {data}; {length} of "
            f"{base.batch_size} clips, lr {base.lr:g} ({base.warmup_steps} warm-up steps, cosine to "
            f"{base.min_lr:g}), weight decay {base.weight_decay:g}; seed(s) {seed_text} ({len(seeds)} per "
            "variant). Top-1 on the held-out clips (mean over seeds; std and var: the sample standard "
            "deviation and variance over seeds); steps/s: training steps per second on this machine "
            "(the median over the log windows, evaluation excluded), mean over seeds.")


def markdown_table(rows: Sequence[VariantRow], title: str, base_text: str) -> str:
    """The Markdown of the results: a heading, the base run, the table and the notes."""
    paper = any(r.paper for r in rows)
    head = ["variant", "arch", "changes", "seeds", "top-1 (%)", "std", "var", "steps/s", "params (M)"]
    if paper:
        head += ["paper top-1 (%)", "paper steps/s"]
    lines = [f"### {title}", "", base_text, "", "| " + " | ".join(head) + " |",
             "|" + "|".join("---" if i < 3 else "---:" for i in range(len(head))) + "|"]
    for r in rows:
        seeds = str(r.seeds) if r.seeds == r.seeds_planned else f"{r.seeds} of {r.seeds_planned}"
        if r.failed_seeds:
            seeds += f" ({len(r.failed_seeds)} failed)"
        top1 = _num(r.mean, 1) if r.seeds else ("failed" if r.failed_seeds else "not run yet")
        cells = [f"`{r.variant}`", r.arch, r.changes, seeds, top1, _num(r.std, 2), _num(r.var, 2),
                 _num(r.steps_per_s, 2), "" if r.parameters is None else f"{r.parameters / 1e6:.3f}"]
        if paper:
            cells += [_num(r.paper.get("top1"), 1), _num(r.paper.get("steps_per_s"), 1)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    notes = [f"- `{r.variant}`: {r.note}" for r in rows if r.note]
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines) + "\n"


def csv_text(rows: Sequence[VariantRow]) -> str:
    """The table as CSV (:data:`CSV_COLUMNS`; top-1 in %, empty where not measured)."""
    buffer = io.StringIO()
    w = csv.writer(buffer, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in rows:
        w.writerow([r.variant, r.arch, r.changes, r.seeds, r.seeds_planned, _num(r.mean, 4), _num(r.std, 4),
                    _num(r.var, 4), ";".join(f"{t:.4f}" for t in r.top1), _num(r.steps_per_s, 4),
                    "" if r.parameters is None else f"{r.parameters / 1e6:.6f}", _num(r.minutes, 2),
                    ";".join(map(str, r.failed_seeds)), _num(r.paper.get("top1"), 1),
                    _num(r.paper.get("steps_per_s"), 1), r.note])
    return buffer.getvalue()


def write_reports(out: Path, set_name: str, base: TrainConfig, runs: Sequence[PlannedRun]) -> str:
    """Write ``results.md``, ``results.csv`` and ``curves.png`` (the training loss of each variant's
    first finished seed) into ``out``; returns the Markdown."""
    from trecvit.training.ablation_sets import SET_TITLES
    from trecvit.training.metrics import plot_curves

    rows = summarise(runs)
    seeds = sorted({r.seed for r in runs})
    title = f"Ablation `{set_name}`" + (f": {SET_TITLES[set_name]}" if set_name in SET_TITLES else "")
    markdown = markdown_table(rows, title, describe_base(base, seeds))
    atomic_write(out / "results.md", lambda tmp: tmp.write_text(markdown, encoding="utf-8"))
    text = csv_text(rows)
    atomic_write(out / "results.csv", lambda tmp: tmp.write_text(text, encoding="utf-8"))
    curves = {}
    for r in runs:
        if r.variant.name not in curves and read_result(r.out_dir) is not None:
            curves[r.variant.name] = r.out_dir / "metrics.csv"
    if curves:
        plot_curves(curves, out / "curves.png",
                    title=f"ablation {set_name}: training loss, final held-out top-1")
    return markdown


__all__ = ["CSV_COLUMNS", "VariantRow", "csv_text", "describe_base", "markdown_table", "summarise",
           "write_reports"]
