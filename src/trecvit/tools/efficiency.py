"""The paper's efficiency study (Figures 3 and 5): TRecViT against ViViT and the hybrids, side by side.

For each architecture (``arch:variant`` with optional config fields, e.g.
``vivit:L:tubelet_frames=1``), clip length and attention implementation,
:func:`compare_efficiency` reports

* ``params``: the parameter count;
* ``gflops``: forward FLOPs of one clip, counted by PyTorch's
  ``FlopCounterMode`` (:func:`~trecvit.tools.profiling.count_flops`: matrix
  products, convolutions, attention; one multiply-add = 2 FLOPs);
* ``inference_peak_mb`` / ``train_peak_mb``: the peak tensor memory of a
  forward in inference mode, and of a training step's forward and backward
  (activations kept for the backward and the gradients; not an optimiser's
  state), tracked storage by storage
  (:class:`~trecvit.tools.profiling.TensorMemoryTracker`);
* ``latency_s``: the median wall-clock time of a real forward on this CPU,
  where it fits the time budget (``None`` otherwise).

FLOPs and memory are measured by running the model on *fake* tensors
(``torch._subclasses.FakeTensorMode``): every operator is dispatched with the
CPU's choice of kernel and allocates its outputs' shapes, but computes nothing
and takes no memory, so the figures of ViViT-L on 96 frames (tens of GB) are
measured on a laptop in seconds. A test checks they equal a real CPU run's
exactly. ``attention="naive"`` materialises the ``[b, h, n, n]`` score matrix
(what the paper's analysis of a lowered JAX graph counts); ``"fused"`` uses
PyTorch's ``scaled_dot_product_attention``, which never holds it
(:func:`trecvit.layers.attention.use_attention`).

:func:`stream_costs` is the streaming half: the per-frame latency and state
size of ``step`` against the frame index, constant for TRecViT and the LSTM
hybrid, growing for cViViT's key/value cache.
"""

from __future__ import annotations

import copy
import csv
import io
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import yaml

from trecvit.architectures import get_architecture
from trecvit.layers.attention import ATTENTION_MODES, use_attention
from trecvit.tools.profiling import MB, GB, TensorMemoryTracker, count_flops, median, time_repeats

DEFAULT_FRAMES = (8, 16, 32, 64, 96)
# TRecViT-B against ViViT-L and -B (full attention; ViViT-L also with one-frame tubelets, the setting
# under which the paper's ratios hold), the factorised ViViTs and the hybrids of Figure 5.
DEFAULT_ARCHS = ("trecvit:B", "vivit:L", "vivit:L:tubelet_frames=1", "vivit:B", "vivit_fe:L", "vivit_fsa:L",
                 "vit_lstm:B", "vit_conv1d:B", "vit_tsa:B")
REFERENCE = "trecvit:B"
ROW_KEYS = ("arch", "variant", "settings", "frames", "attention", "params", "gflops", "inference_peak_mb",
            "train_peak_mb", "latency_s", "estimated")


@dataclass(frozen=True)
class ArchSpec:
    """An architecture of the table at a ViT size, with config fields changed (``overrides``)."""

    arch: str
    variant: str
    overrides: tuple[tuple[str, Any], ...] = ()

    @property
    def label(self) -> str:
        extra = "".join(f":{k}={v}" for k, v in self.overrides)
        return f"{self.arch}:{self.variant}{extra}"

    @property
    def settings(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.overrides)

    def config(self, frames: int, size: int, num_classes: int = 400):
        """The config for clips of ``frames`` frames of ``size`` x ``size``."""
        row = get_architecture(self.arch)
        return row.config(self.variant, image_size=size, num_classes=num_classes, frames_per_clip=frames,
                          **dict(self.overrides))

    def build(self, frames: int, size: int) -> torch.nn.Module:
        torch.manual_seed(0)
        return get_architecture(self.arch).build(self.config(frames, size))


def parse_arch_specs(text: str | list[str]) -> list[ArchSpec]:
    """``"trecvit:B,vivit:L:tubelet_frames=1"`` -> specs; each field value is read as YAML.
    ``ValueError`` naming a malformed or unknown entry."""
    items = text.split(",") if isinstance(text, str) else list(text)
    specs = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        parts = item.split(":")
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise ValueError(f"--archs entry {item!r} must be ARCH:VARIANT[:FIELD=VALUE...], "
                             "e.g. trecvit:B or vivit:L:tubelet_frames=1")
        get_architecture(parts[0])  # names the known architectures when unknown
        overrides = []
        for part in parts[2:]:
            key, sep, value = part.partition("=")
            if not sep or not key:
                raise ValueError(f"--archs entry {item!r}: {part!r} is not FIELD=VALUE")
            overrides.append((key, yaml.safe_load(value)))
        spec = ArchSpec(parts[0], parts[1], tuple(overrides))
        spec.config(16, 224)  # a bad variant or field fails here, before any measurement
        specs.append(spec)
    if not specs:
        raise ValueError("--archs lists no architecture")
    return specs


@dataclass
class EfficiencyRow:
    """One architecture at one clip length with one attention implementation (see the module)."""

    arch: str
    variant: str
    settings: str
    frames: int
    attention: str
    params: int
    gflops: float | None
    inference_peak_mb: float | None
    train_peak_mb: float | None
    latency_s: float | None
    estimated: bool = False  #: True where a figure is analytic (the trace failed), not measured
    note: str = ""
    label: str = field(default="", repr=False)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "label"}


# --------------------------------------------------------------------------- measurement

def _fake(model: torch.nn.Module):
    """``(fake mode, a copy of model whose tensors are fake)``: shapes without values."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    mode = FakeTensorMode(allow_non_fake_inputs=True)
    return mode, model._apply(lambda t: mode.from_tensor(t))


def trace_costs(model: torch.nn.Module, frames: int, size: int, attention: str = "fused",
                batch: int = 1) -> dict:
    """FLOPs and peak tensor memory of ``model`` on a ``[batch, frames, 3, size, size]`` clip,
    measured on fake tensors (``model`` is converted in place: build a fresh one to run it).

    Returns ``gflops`` (forward), ``inference_peak_bytes`` and ``train_peak_bytes`` (forward and
    backward of a training step)."""
    mode, model = _fake(model)
    with mode, use_attention(attention):
        video = torch.rand(batch, frames, 3, size, size)
        model.eval()
        with torch.inference_mode():
            flops = count_flops(lambda: model(video))
            with TensorMemoryTracker() as mem:
                model(video)
            inference = mem.peak_bytes
        model.train()
        with TensorMemoryTracker() as mem:
            model(video).logits.float().logsumexp(-1).mean().backward()
        train = mem.peak_bytes
    return {"gflops": flops / GB, "inference_peak_bytes": inference, "train_peak_bytes": train}


def measure_latency(model: torch.nn.Module, frames: int, size: int, attention: str = "fused",
                    repeats: int = 1, batch: int = 1) -> float:
    """Median seconds of a real inference forward on this CPU (one warm-up run first)."""
    video = torch.rand(batch, frames, 3, size, size)
    model.eval()
    with torch.inference_mode(), use_attention(attention):
        return median(time_repeats(lambda: model(video), repeats=repeats, warmup=1))


def analytic_estimate(spec: ArchSpec, frames: int, size: int) -> float | None:
    """The architecture's analytic forward GFLOPs (its ``analytic_flops``), ``None`` without one."""
    cls = get_architecture(spec.arch).model_class
    fn = getattr(cls, "analytic_flops", None)
    if fn is None:
        return None
    return fn(spec.config(frames, size), frames) / GB


def compare_efficiency(specs: list[ArchSpec], frames: tuple[int, ...] = DEFAULT_FRAMES, *, size: int = 224,
                       attentions: tuple[str, ...] = ("naive", "fused"), latency_gflops: float = 400.0,
                       repeats: int = 1, progress: Callable[[str], None] | None = None
                       ) -> list[EfficiencyRow]:
    """The efficiency table: one :class:`EfficiencyRow` per spec, clip length and attention.

    Latency is measured on a real forward only where the clip's forward is at most
    ``latency_gflops`` GFLOPs (0: never) and its traced inference memory fits in half of
    this machine's free memory; elsewhere it is ``None`` and the row says why.
    """
    for a in attentions:
        if a not in ATTENTION_MODES:
            raise ValueError(f"unknown attention {a!r}; expected one of {ATTENTION_MODES}")
    rows = []
    for spec in specs:
        for t in frames:
            model = spec.build(t, size)  # built once, copied for each trace
            for attention in attentions:
                if progress:
                    progress(f"{spec.label} {t} frames, {attention} attention")
                row = _measure(model, spec, t, size, attention, latency_gflops, repeats)
                row.label = spec.label
                rows.append(row)
    return rows


def _measure(model: torch.nn.Module, spec: ArchSpec, t: int, size: int, attention: str,
             latency_gflops: float, repeats: int) -> EfficiencyRow:
    params = sum(p.numel() for p in model.parameters())
    common = dict(arch=spec.arch, variant=spec.variant, settings=spec.settings, frames=t, attention=attention,
                  params=params)
    try:
        costs = trace_costs(copy.deepcopy(model), t, size, attention)
    except (RuntimeError, ValueError, NotImplementedError) as err:  # e.g. an operator without a fake kernel
        return EfficiencyRow(**common, gflops=analytic_estimate(spec, t, size), inference_peak_mb=None,
                             train_peak_mb=None, latency_s=None, estimated=True,
                             note=f"traced run failed ({type(err).__name__}: {err}); analytic FLOPs")
    row = EfficiencyRow(**common, gflops=costs["gflops"], latency_s=None,
                        inference_peak_mb=costs["inference_peak_bytes"] / MB,
                        train_peak_mb=costs["train_peak_bytes"] / MB)
    free = _available_bytes()
    if latency_gflops <= 0:
        row.note = "latency not measured"
    elif costs["gflops"] > latency_gflops:
        row.note = f"latency not measured: {costs['gflops']:.0f} GFLOPs > --latency-gflops {latency_gflops:g}"
    elif free and costs["inference_peak_bytes"] > free / 2:
        row.note = (f"latency not measured: needs {costs['inference_peak_bytes'] / GB:.1f} GB, this machine "
                    f"has {free / GB:.1f} GB free")
    else:
        row.latency_s = measure_latency(model, t, size, attention, repeats)
    return row


def _available_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# --------------------------------------------------------------------------- reporting

def ratios(rows: list[EfficiencyRow], reference: str = REFERENCE) -> list[dict]:
    """For each baseline row: its memory and FLOPs over the reference's at the same frames and
    attention (``> 1``: the reference, TRecViT-B by default, is that many times cheaper)."""
    ref = {(r.frames, r.attention): r for r in rows if r.label == reference}
    out = []
    for r in rows:
        base = ref.get((r.frames, r.attention))
        if r.label == reference or base is None:
            continue
        out.append({"baseline": r.label, "frames": r.frames, "attention": r.attention,
                    "inference_memory": _ratio(r.inference_peak_mb, base.inference_peak_mb),
                    "train_memory": _ratio(r.train_peak_mb, base.train_peak_mb),
                    "flops": _ratio(r.gflops, base.gflops)})
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_rows(rows: list[EfficiencyRow]) -> str:
    """The table ``trecvit compare-efficiency`` prints (Markdown)."""
    lines = ["| model | frames | attention | params (M) | GFLOPs | inference peak (MB) | train peak (MB) "
             "| latency (s) |", "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        mark = " *" if r.estimated else ""
        lines.append(f"| {r.label} | {r.frames} | {r.attention} | {r.params / 1e6:.1f} | "
                     f"{_fmt(r.gflops, ',.0f')}{mark} | {_fmt(r.inference_peak_mb, ',.0f')} | "
                     f"{_fmt(r.train_peak_mb, ',.0f')} | {_fmt(r.latency_s, '.2f')} |")
    if any(r.estimated for r in rows):
        lines.append("\n\\* analytic estimate, not measured")
    return "\n".join(lines)


def format_ratios(rows: list[EfficiencyRow], reference: str = REFERENCE) -> str:
    lines = [f"| baseline / {reference} | frames | attention | inference memory | train memory | FLOPs |",
             "|---|---:|---|---:|---:|---:|"]
    for q in ratios(rows, reference):
        lines.append(f"| {q['baseline']} | {q['frames']} | {q['attention']} | "
                     f"{_fmt(q['inference_memory'], '.1f')}x | {_fmt(q['train_memory'], '.1f')}x | "
                     f"{_fmt(q['flops'], '.1f')}x |")
    return "\n".join(lines)


def rows_to_csv(rows: list[EfficiencyRow]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[*ROW_KEYS, "note"], lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow(r.to_dict())
    return buf.getvalue()


def plot_efficiency(rows: list[EfficiencyRow], path: str | Path, *, attention: str = "naive",
                    size: int = 224) -> None:
    """A two-panel PNG like the paper's Figure 3: inference peak memory and FLOPs against frames,
    log scale, one line per architecture (rows of one ``attention`` implementation)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from trecvit.checkpoints.integrity import atomic_write

    chosen = [r for r in rows if r.attention == attention] or rows
    labels = list(dict.fromkeys(r.label for r in chosen))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    for label in labels:
        mine = sorted((r for r in chosen if r.label == label), key=lambda r: r.frames)
        style = dict(marker="o", linewidth=2.5 if label == REFERENCE else 1.3)
        for ax, key in zip(axes, ("inference_peak_mb", "gflops")):
            xs = [r.frames for r in mine if getattr(r, key) is not None]
            ys = [getattr(r, key) / (1e3 if key == "inference_peak_mb" else 1) for r in mine
                  if getattr(r, key) is not None]
            ax.plot(xs, ys, label=label, **style)
    for ax, ylabel in zip(axes, ("inference peak memory (GB)", "GFLOPs per clip")):
        ax.set_xlabel(f"frames ({size} x {size})")
        ax.set_ylabel(ylabel)
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"Efficiency, batch 1, {attention} attention")
    fig.tight_layout()
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


# --------------------------------------------------------------------------- streaming

@dataclass
class StreamCost:
    """Per-frame cost of ``step`` for one architecture: ``latency_s[i]`` and ``state_mb[i]``
    after frame ``i + 1``."""

    label: str
    latency_s: list[float]
    state_mb: list[float]


def stream_costs(specs: list[ArchSpec], num_frames: int = 1000, *, size: int = 112,
                 show_progress: bool = False) -> list[StreamCost]:
    """Stream ``num_frames`` frames through each spec's ``step`` (real runs on this CPU) and record
    every frame's latency and the state's size after it. Specs without ``step`` are refused."""
    from tqdm import tqdm

    out = []
    for spec in specs:
        model = spec.build(16, size).eval()
        model.require_streaming(f"the streaming study of {spec.label}")
        frame = torch.rand(1, 3, size, size)
        latency, state_mb = [], []
        bar = tqdm(total=num_frames, desc=f"stream {spec.label}", unit="frame", leave=False,
                   disable=not show_progress)
        with torch.inference_mode():
            warm = model.init_state(1, image_size=size)
            for _ in range(3):  # kernels and caches warm, untimed, on a state of its own
                _, warm = model.step(frame, warm)
            state = model.init_state(1, image_size=size)
            for _ in range(num_frames):
                start = time.perf_counter()
                _, state = model.step(frame, state)
                latency.append(time.perf_counter() - start)
                state_mb.append(state.nbytes() / MB)
                bar.update(1)
        bar.close()
        out.append(StreamCost(spec.label, latency, state_mb))
    return out


def plot_stream_costs(costs: list[StreamCost], path: str | Path, *, size: int) -> None:
    """One PNG, two panels: per-frame latency (a running median over 25 frames) and state size
    against the frame index."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from trecvit.checkpoints.integrity import atomic_write

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for c in costs:
        xs = list(range(1, len(c.latency_s) + 1))
        smooth = [median(c.latency_s[max(0, i - 24):i + 1]) * 1e3 for i in range(len(c.latency_s))]
        axes[0].plot(xs, smooth, label=c.label)
        axes[1].plot(xs, c.state_mb, label=c.label)
    axes[0].set_ylabel("step latency (ms, running median)")
    axes[1].set_ylabel("streaming state (MB)")
    for ax in axes:
        ax.set_xlabel("frame index")
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
    axes[1].legend(fontsize=8)
    fig.suptitle(f"Streaming cost per frame, {size} x {size}, batch 1")
    fig.tight_layout()
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def summarise_stream(costs: list[StreamCost]) -> str:
    """Markdown: latency and state at frames 10, 100 and the last, per architecture."""
    n = len(costs[0].latency_s) if costs else 0
    marks = sorted({m for m in (10, 100, n) if 0 < m <= n})
    head = "| model | " + " | ".join(f"ms @ {m}" for m in marks) + " | " + \
        " | ".join(f"state MB @ {m}" for m in marks) + " |"
    lines = [head, "|---|" + "---:|" * (2 * len(marks))]
    for c in costs:
        ms = [median(c.latency_s[max(0, m - 10):m]) * 1e3 for m in marks]
        lines.append(f"| {c.label} | " + " | ".join(f"{v:.1f}" for v in ms) + " | " +
                     " | ".join(f"{c.state_mb[m - 1]:.2f}" for m in marks) + " |")
    return "\n".join(lines)


__all__ = ["ArchSpec", "DEFAULT_ARCHS", "DEFAULT_FRAMES", "EfficiencyRow", "StreamCost", "compare_efficiency",
           "format_ratios", "format_rows", "parse_arch_specs", "plot_efficiency", "plot_stream_costs",
           "ratios", "rows_to_csv", "stream_costs", "summarise_stream", "trace_costs"]
