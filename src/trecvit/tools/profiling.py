"""Measuring TRecViT: FLOPs, latency, peak memory, and the machine's own ceilings.

Used by ``trecvit profile`` and by the benchmarks in ``benchmarks/``. All
timings are medians of several repeats after a warm-up; ratios are taken
against ceilings measured in the same process (a large square ``torch.mm`` for
the matmul rate, a large tensor copy for the memory bandwidth), because the
machines we run on are shared and noisy.

FLOPs are counted with :class:`torch.utils.flop_counter.FlopCounterMode`
(matrix products, convolutions and attention, one multiply-add = 2 FLOPs);
:func:`analytic_flops` gives the same count from the configuration, and a test
checks the two agree.

Peak memory is the peak of the tensor memory a workload allocates (activations,
gradients, optimiser state, the streaming state), tracked storage by storage
(:class:`TensorMemoryTracker`), in a fresh child process so that a workload
too big for the machine cannot take the caller down. The resident set size
(``VmHWM``) is reported beside it; it also holds libraries, weights and what
the C allocator keeps, and is too coarse to show a per-frame slope.
"""

from __future__ import annotations

import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
import weakref
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from trecvit.config import TRecViTConfig

MB = 1e6
GB = 1e9


# --------------------------------------------------------------------------- timing

def synchronize(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_repeats(fn: Callable[[], object], *, repeats: int = 3, warmup: int = 1,
                 device: torch.device | str = "cpu") -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn`` after ``warmup`` calls."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def median(values: list[float]) -> float:
    return float(statistics.median(values))


# --------------------------------------------------------------------------- machine ceilings

@dataclass
class Ceilings:
    """What this machine can do, measured now: the ceilings our figures are divided by."""

    device: str
    threads: int
    matmul_gflops: float  #: float32 ``torch.mm`` of two ``n x n`` matrices
    matmul_size: int
    bandwidth_gbs: float  #: bytes read + written per second by a large tensor copy
    copy_bytes: int
    matmul_gflops_bf16: float | None = None
    runs: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name or 'CPU'} ({torch.get_num_threads()} threads)"


def matmul_rate(device: torch.device | str = "cpu", *, size: int | None = None,
                dtype: torch.dtype = torch.float32, repeats: int = 5) -> tuple[float, list[float]]:
    """GFLOP/s of a large square ``torch.mm`` (median of ``repeats``), and every run's rate."""
    device = torch.device(device)
    n = size or (8192 if device.type == "cuda" else 4096)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    times = time_repeats(lambda: torch.mm(a, b, out=out), repeats=repeats, device=device)
    rates = [2 * n ** 3 / t / GB for t in times]
    return median(rates), rates


def copy_bandwidth(device: torch.device | str = "cpu", *, nbytes: int = 512 * 2 ** 20,
                   repeats: int = 5) -> tuple[float, list[float]]:
    """GB/s moved (read + write) by copying one large float32 tensor into another, pre-touched."""
    device = torch.device(device)
    src = torch.ones(nbytes // 4, device=device)
    dst = torch.zeros_like(src)  # written once, so no page faults are timed
    times = time_repeats(lambda: dst.copy_(src), repeats=repeats, device=device)
    rates = [2 * nbytes / t / GB for t in times]
    return median(rates), rates


def measure_ceilings(device: torch.device | str = "cpu", *, bf16: bool = False,
                     quick: bool = False) -> Ceilings:
    """Measure the fp32 matmul rate (and bf16, if asked) and the copy bandwidth of ``device``."""
    device = torch.device(device)
    size = (2048 if quick else 4096) if device.type == "cpu" else 8192
    mm, mm_runs = matmul_rate(device, size=size)
    bw, bw_runs = copy_bandwidth(device, nbytes=(128 if quick else 512) * 2 ** 20)
    mm_bf16 = None
    runs = {"matmul_gflops": mm_runs, "bandwidth_gbs": bw_runs}
    if bf16:
        mm_bf16, runs["matmul_gflops_bf16"] = matmul_rate(device, size=size, dtype=torch.bfloat16)
    return Ceilings(device=device_name(device), threads=torch.get_num_threads(), matmul_gflops=mm,
                    matmul_size=size, bandwidth_gbs=bw, copy_bytes=(128 if quick else 512) * 2 ** 20,
                    matmul_gflops_bf16=mm_bf16, runs=runs)


# --------------------------------------------------------------------------- FLOPs

def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn`` (matmuls, convolutions, attention) counted by PyTorch."""
    from torch.utils import flop_counter

    aten = torch.ops.aten
    # The CPU flash-attention kernels are not in PyTorch's table; they cost what the others cost.
    extra = {
        aten._scaled_dot_product_flash_attention_for_cpu:
            lambda q, k, v, *args, out_shape=None, **kwargs: flop_counter.sdpa_flop_count(q, k, v),
        aten._scaled_dot_product_flash_attention_for_cpu_backward:
            lambda g, q, k, v, *args, out_shape=None, **kwargs:
                flop_counter.sdpa_backward_flop_count(g, q, k, v),
    }
    with flop_counter.FlopCounterMode(display=False, custom_mapping=extra) as counter:
        fn()
    return int(counter.get_total_flops())


def analytic_flops(config: TRecViTConfig, num_frames: int, batch_size: int = 1,
                   image_size: int | tuple[int, int] | None = None) -> int:
    """Forward FLOPs of the full-clip TRecViT, from the configuration alone
    (:meth:`trecvit.TRecViT.analytic_flops`, which a test checks against :func:`count_flops`)."""
    from trecvit.model import TRecViT

    return TRecViT.analytic_flops(config, num_frames, batch_size, image_size)


# --------------------------------------------------------------------------- memory

class TensorMemoryTracker:
    """Peak bytes of tensor storage allocated inside a ``with`` block (any device).

    Every storage an operation creates is counted until it is freed; storages
    that existed before the block (weights, inputs) are not. This is what
    ``torch.cuda.max_memory_allocated`` measures on a GPU, without the
    allocator's caching, and it works on the CPU, where PyTorch keeps no such
    statistic. (Buffers an extension allocates inside one opaque operator,
    such as the Numba scan's per-thread row, are not seen.)

        with TensorMemoryTracker() as mem:
            model(video)
        mem.peak_bytes
    """

    def __init__(self):
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils.weak import WeakIdKeyDictionary

        tracker = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                tracker._track(out)
                return out

        self._mode = _Mode()
        self._live = WeakIdKeyDictionary()
        self.current_bytes = 0
        self.peak_bytes = 0

    def _track(self, out) -> None:
        from torch.utils._pytree import tree_leaves

        for leaf in tree_leaves(out):
            if not isinstance(leaf, torch.Tensor):
                continue
            storage = leaf.untyped_storage()
            if storage in self._live:
                continue
            nbytes = storage.nbytes()
            self._live[storage] = nbytes
            weakref.finalize(storage, self._free, nbytes)
            self.current_bytes += nbytes
            self.peak_bytes = max(self.peak_bytes, self.current_bytes)

    def _free(self, nbytes: int) -> None:
        self.current_bytes -= nbytes

    def __enter__(self) -> TensorMemoryTracker:
        self._mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._mode.__exit__(*exc)


def current_rss() -> int:
    """Resident set size of this process now, in bytes (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def peak_rss() -> int:
    """Peak resident set size of this process so far, in bytes.

    Linux's ``VmHWM``: unlike ``ru_maxrss``, it starts afresh in a new program,
    so a child process does not inherit its parent's peak.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _reset_peak_rss() -> None:
    """Start ``VmHWM`` afresh from the current resident size (Linux >= 4.0; else a no-op)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _make_model(spec: dict, device: torch.device) -> torch.nn.Module:
    """A randomly initialised model of ``spec["arch"]`` (a row of the architecture table,
    default ``trecvit``) of size ``spec["variant"]``."""
    from trecvit.architectures import get_architecture

    row = get_architecture(spec.get("arch", "trecvit"))
    config = row.config(spec["variant"], image_size=spec["size"], num_classes=spec.get("num_classes", 400),
                        frames_per_clip=spec.get("frames_per_clip", 32))
    torch.manual_seed(0)
    return row.build(config).to(device)


def _precision_setup(model: torch.nn.Module, spec: dict, device: torch.device, train: bool = False):
    """``(model, autocast context)`` for ``spec``'s ``amp`` (bfloat16 autocast) or ``precision``
    ``"bf16"`` with ``bf16_mode`` ``"weights"`` (a bfloat16 copy; not for training) or ``"autocast"``."""
    from trecvit.tools.precision import bf16_weights

    bf16 = spec.get("precision") == "bf16"
    weights = bf16 and spec.get("bf16_mode", "weights") == "weights" and not train
    amp = bool(spec.get("amp")) or (bf16 and not weights)
    return (bf16_weights(model) if weights else model), torch.autocast(device.type, dtype=torch.bfloat16,
                                                                       enabled=amp)


def run_workload(spec: dict) -> dict:
    """Run one workload described by ``spec`` once and report its memory (in this process).

    ``spec``: ``variant`` (and ``arch``, default ``trecvit``), ``size``, ``frames``, ``batch``,
    ``mode`` (``forward``,
    ``train`` or ``stream``), ``device``, optional ``amp`` (bfloat16 autocast), ``precision``
    (``"bf16"``, with ``bf16_mode``; int8 runs outside PyTorch and is not tracked) and
    ``warmup`` (run 2 frames first, untracked; off by default).

    Returns the peak tensor memory the run allocated (``added_bytes``: the input
    clip, activations, gradients, optimiser state; not the weights) and the
    process's resident sizes.
    """
    device = torch.device(spec.get("device", "cpu"))
    model = _make_model(spec, device)
    b, t, size, mode = spec.get("batch", 1), spec["frames"], spec["size"], spec["mode"]
    model, amp = _precision_setup(model, spec, device, train=mode == "train")
    optimizer = None
    if mode == "train":
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    else:
        model.eval()
    if mode not in ("forward", "train", "stream"):
        raise ValueError(f"unknown workload mode {mode!r}; expected forward, train or stream")
    frame = torch.rand(b, 3, size, size, device=device)

    def run(frames: int, step_optimizer: bool) -> None:
        video = frame[:, None].expand(b, frames, 3, size, size).contiguous()
        if mode == "train":
            with amp:
                loss = model(video).logits.float().logsumexp(-1).mean()
            loss.backward()
            if step_optimizer:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        elif mode == "forward":
            with torch.inference_mode(), amp:
                model(video)
        else:
            with torch.inference_mode(), amp:
                state = model.init_state(b, image_size=size, device=device)
                for i in range(frames):
                    _, state = model.step(video[:, i], state)

    if spec.get("warmup"):  # 2 frames first: libraries, JIT kernels and autograd set up
        run(min(2, t), step_optimizer=False)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    _reset_peak_rss()
    base_rss = current_rss()
    with TensorMemoryTracker() as tracker:
        run(t, step_optimizer=True)
    synchronize(device)
    return {"added_bytes": tracker.peak_bytes,  # tensor memory the workload allocated, at its peak
            "baseline_rss_bytes": base_rss, "peak_rss_bytes": peak_rss(),
            "cuda_peak_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None}


def run_stream_memory(spec: dict) -> dict:
    """Stream ``spec["checkpoints"][-1]`` frames through ``step`` and record memory on the way.

    Returns, after each checkpoint frame count, the peak tensor memory of the
    stream so far (:class:`TensorMemoryTracker`), the resident and peak resident
    sizes (bytes), and the state's size: with constant memory per frame these
    stay flat however long the stream.
    """
    device = torch.device(spec.get("device", "cpu"))
    model = _make_model(spec, device).eval()
    b, size, marks = spec.get("batch", 1), spec["size"], sorted(spec["checkpoints"])
    model, amp = _precision_setup(model, spec, device)
    gen = torch.Generator(device=device).manual_seed(0)
    frames = torch.rand(16, b, 3, size, size, device=device, generator=gen)
    out = {"frames": [], "peak_tensor_bytes": [], "rss_bytes": [], "peak_rss_bytes": [],
           "cuda_peak_bytes": []}
    with torch.inference_mode(), amp, TensorMemoryTracker() as tracker:
        state = model.init_state(b, image_size=size, device=device)
        for i in range(1, marks[-1] + 1):
            result, state = model.step(frames[i % 16], state)
            if i in marks:
                synchronize(device)
                out["frames"].append(i)
                out["peak_tensor_bytes"].append(tracker.peak_bytes)
                out["rss_bytes"].append(current_rss())
                out["peak_rss_bytes"].append(peak_rss())
                out["cuda_peak_bytes"].append(
                    torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None)
                if not bool(torch.isfinite(result.logits).all()):
                    raise RuntimeError(f"non-finite logits at frame {i}")
    out["state_bytes"] = state.nbytes()
    return out


def run_in_child(function: str, spec: dict, timeout: float = 1800) -> dict:
    """``trecvit.tools.profiling.<function>(spec)`` in a fresh Python process, so that its
    peak memory belongs to that workload alone. Returns its JSON result."""
    if function not in ("run_workload", "run_stream_memory"):
        raise ValueError(f"unknown memory probe {function!r}")
    code = (f"import json, sys; from trecvit.tools.profiling import {function}; "
            f"print('RESULT' + json.dumps({function}(json.loads(sys.argv[1]))))")
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ))
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT"):
            return json.loads(line[len("RESULT"):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    reason = "killed (out of memory?)" if proc.returncode in (-9, 137) else f"exit {proc.returncode}"
    raise RuntimeError(f"memory probe {spec} failed ({reason}): " + " | ".join(tail))


def measure_peak_memory(spec: dict, timeout: float = 1800) -> dict:
    """:func:`run_workload` in a fresh Python process, so its peak belongs to this workload alone."""
    return run_in_child("run_workload", spec, timeout)


# --------------------------------------------------------------------------- profile

@dataclass
class ProfileRow:
    frames: int
    params: int
    gflops: float  #: per call (full clip) or per frame (streaming)
    latency_s: float  #: per call (full clip) or per frame (streaming), median
    frames_per_s: float
    gflops_per_s: float
    peak_memory_mb: float | None
    latency_runs: list[float]
    state_mb: float | None = None
    precision: str = "fp32"  #: what ran: ``fp32``, ``bf16 (weights)``, ``int8 (ONNX Runtime)``, ...


def _runner(model, precision: str, compile: bool, bf16_mode: str, int8_options: dict | None):
    from trecvit.tools.precision import InferenceModel

    return InferenceModel(model, precision, compile=compile and precision != "int8", bf16_mode=bf16_mode,
                          int8_options=int8_options)


def _time_steps(runner, frame: torch.Tensor, state, frames: int, repeats: int, dev: torch.device):
    """Stream ``frames`` frames through ``runner.step``; the times of the last ``repeats``
    (never the first frame, which compiles or builds a session), and the final state."""
    times = []
    for i in range(frames):
        synchronize(dev)
        start = time.perf_counter()
        _, state = runner.step(frame, state)
        synchronize(dev)
        if i >= max(1, frames - repeats):
            times.append(time.perf_counter() - start)
    return times, state


def profile_model(variant: str, frames: list[int], *, size: int = 224, batch: int = 1,
                  stream: bool = False, device: str = "cpu", repeats: int = 3,
                  memory: bool = True, amp: bool = False, compile: bool = False,
                  progress: Callable[[str], None] | None = None, arch: str = "trecvit",
                  precision: str = "fp32", bf16_mode: str = "weights",
                  int8_options: dict | None = None) -> list[ProfileRow]:
    """Parameters, FLOPs, latency, frames/s and peak memory of ``variant`` for each clip length.

    With ``stream=True`` each row is a stream of ``frames`` frames through
    :meth:`~trecvit.TRecViT.step`: latency and FLOPs are per frame (the median of
    the last ``repeats`` frames) and peak memory is that of the whole stream.
    ``precision`` (``fp32``, ``bf16`` with ``bf16_mode``, ``int8``) and ``compile`` run it as
    :class:`trecvit.tools.precision.InferenceModel` does; ``amp`` is bf16 autocast. The FLOPs
    are those of the float32 model; int8 rows have no peak memory (ONNX Runtime allocates
    outside PyTorch).
    """
    if amp:
        precision, bf16_mode = "bf16", "autocast"
    dev = torch.device(device)
    model = _make_model({"arch": arch, "variant": variant, "size": size}, dev).eval()
    if stream and not hasattr(model, "step"):
        raise ValueError(f"--stream profiles model.step, but the {arch!r} architecture does not run "
                         "frame by frame")
    params = model.num_parameters()
    runner = _runner(model, precision, compile, bf16_mode, int8_options)
    rows = []
    for t in frames:
        if progress:
            progress(f"{variant} {'stream' if stream else 'clip'} {t} frames, {runner.describe()}")
        spec = {"arch": arch, "variant": variant, "size": size, "frames": t, "batch": batch, "device": device,
                "mode": "stream" if stream else "forward", "precision": precision, "bf16_mode": bf16_mode}
        if stream:
            frame = torch.rand(batch, 3, size, size, device=dev)
            with torch.inference_mode():
                state = runner.init_state(batch, image_size=size, device=dev)
                flops = count_flops(lambda: model.step(frame, state))
                times, state = _time_steps(runner, frame, state, t, repeats, dev)
            latency = median(times)
            row = ProfileRow(frames=t, params=params, gflops=flops / GB, latency_s=latency,
                             frames_per_s=batch / latency, gflops_per_s=flops / latency / GB,
                             peak_memory_mb=None, latency_runs=times, state_mb=state.nbytes() / MB,
                             precision=runner.describe())
        else:
            video = torch.rand(batch, t, 3, size, size, device=dev)
            with torch.inference_mode():
                flops = count_flops(lambda: model(video))
                times = time_repeats(lambda: runner(video), repeats=repeats, device=dev)
            latency = median(times)
            row = ProfileRow(frames=t, params=params, gflops=flops / GB, latency_s=latency,
                             frames_per_s=batch * t / latency, gflops_per_s=flops / latency / GB,
                             peak_memory_mb=None, latency_runs=times, precision=runner.describe())
        if memory and precision != "int8":
            row.peak_memory_mb = measure_peak_memory(spec)["added_bytes"] / MB
        rows.append(row)
    return rows


@dataclass
class PrecisionRow:
    """One precision of ``trecvit profile``'s summary: the full clip and ``step``, side by side."""

    precision: str  #: what ran (:meth:`InferenceModel.describe`)
    reason: str  #: why this precision (``auto: ...`` or ``as asked``)
    clip_frames: int
    clip_latency_s: float | None  #: one call on the whole clip, median
    clip_frames_per_s: float | None
    step_latency_s: float | None  #: one frame through ``step``, median
    step_frames_per_s: float | None
    clip_runs: list[float] = field(default_factory=list)
    step_runs: list[float] = field(default_factory=list)
    note: str = ""


def precision_summary(variant: str, precisions: list[tuple[str, str]], *, frames: int = 8, size: int = 224,
                      batch: int = 1, device: str = "cpu", repeats: int = 3, compile: bool = False,
                      arch: str = "trecvit", bf16_mode: str = "weights",
                      progress: Callable[[str], None] | None = None,
                      int8_options: dict | None = None) -> list[PrecisionRow]:
    """Latency and frames/s of the full clip (``frames`` frames) and of ``step`` for each of
    ``precisions`` (``(precision, reason)`` pairs, from
    :func:`~trecvit.tools.precision.resolve_precision`), on one randomly initialised model."""
    dev = torch.device(device)
    model = _make_model({"arch": arch, "variant": variant, "size": size}, dev).eval()
    video = torch.rand(batch, frames, 3, size, size, device=dev)
    rows = []
    for precision, reason in precisions:
        runner = _runner(model, precision, compile, bf16_mode, int8_options)
        if progress:
            progress(f"{variant} {runner.describe()}: clip of {frames} frames and step")
        with torch.inference_mode():
            clip = time_repeats(lambda: runner(video), repeats=repeats, device=dev)
            row = PrecisionRow(runner.describe(), reason, frames, median(clip), batch * frames / median(clip),
                               None, None, clip_runs=clip)
            if hasattr(model, "step"):
                state = runner.init_state(batch, image_size=size, device=dev)
                steps, _ = _time_steps(runner, video[:, 0], state, repeats + 2, repeats, dev)
                row.step_latency_s, row.step_runs = median(steps), steps
                row.step_frames_per_s = batch / median(steps)
            else:
                row.note = f"no step: the {arch!r} architecture does not run frame by frame"
        rows.append(row)
    return rows


def format_precision_table(rows: list[PrecisionRow]) -> str:
    """The per-precision summary of ``trecvit profile``, with each row's speed-up over the first."""
    def cell(seconds, fps):
        return f"{'-':>10} {'-':>9}" if seconds is None else f"{seconds * 1e3:10.1f} {fps:9.2f}"

    head = (f"{'precision':<28} {'clip ms':>10} {'frames/s':>9} {'step ms':>10} {'frames/s':>9} "
            f"{'clip x':>7} {'step x':>7}")
    lines = [f"(full clip of {rows[0].clip_frames} frames and step per frame; x = speed-up over "
             f"{rows[0].precision})", head]
    base = rows[0]
    for r in rows:
        clip_x = base.clip_latency_s / r.clip_latency_s if r.clip_latency_s else float("nan")
        step_x = (base.step_latency_s / r.step_latency_s if r.step_latency_s and base.step_latency_s
                  else float("nan"))
        lines.append(f"{r.precision:<28} {cell(r.clip_latency_s, r.clip_frames_per_s)} "
                     f"{cell(r.step_latency_s, r.step_frames_per_s)} {clip_x:7.2f} {step_x:7.2f}"
                     + (f"  {r.note}" if r.note else ""))
    return "\n".join(lines)


def format_table(rows: list[ProfileRow], *, stream: bool, ceilings: Ceilings | None = None) -> str:
    unit = "per frame" if stream else "per clip"
    head = (f"{'frames':>7} {'params':>11} {'GFLOPs':>9} {'latency s':>10} {'frames/s':>9} "
            f"{'GFLOP/s':>8} {'peak MB':>9}")
    if ceilings:
        head += f" {'of mm':>6}"
    if stream:
        head += f" {'state MB':>9}"
    lines = [f"(GFLOPs and latency {unit}; peak MB = peak tensor memory the run allocated)", head]
    for r in rows:
        mem = f"{r.peak_memory_mb:9.1f}" if r.peak_memory_mb is not None else f"{'-':>9}"
        line = (f"{r.frames:>7} {r.params:>11,} {r.gflops:9.2f} {r.latency_s:10.4f} "
                f"{r.frames_per_s:9.2f} {r.gflops_per_s:8.1f} {mem}")
        if ceilings:
            line += f" {r.gflops_per_s / ceilings.matmul_gflops:6.2f}"
        if stream:
            line += f" {r.state_mb:9.1f}"
        lines.append(line)
    return "\n".join(lines)


def plot_rows(rows: list[ProfileRow], path: str, *, title: str, stream: bool) -> None:
    """Save a PNG of latency, FLOPs and peak memory against the number of frames."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from trecvit.checkpoints.integrity import atomic_write

    frames = [r.frames for r in rows]
    series = [("latency (s)" + (" per frame" if stream else ""), [r.latency_s for r in rows]),
              ("GFLOPs" + (" per frame" if stream else ""), [r.gflops for r in rows]),
              ("peak memory (MB)", [r.peak_memory_mb if r.peak_memory_mb is not None else math.nan
                                    for r in rows])]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, (label, values) in zip(axes, series):
        ax.plot(frames, values, marker="o")
        ax.set_xlabel("frames")
        ax.set_ylabel(label)
        ax.set_xticks(frames)
        ax.set_xlim(left=0)
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
    fig.suptitle(title)
    fig.tight_layout()
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
