"""Endless streams and extreme frames through :meth:`TRecViT.step`.

* 20,000 frames per stream (``TRECVIT_STREAM_FRAMES``; 100,000 for the README's
  figures) through ``step``, in float32 and in bfloat16 CPU
  autocast: the state keeps its shapes, dtypes and size and stays bounded and
  finite, every output is finite, the process memory stays flat, and every
  frame's outputs (and the state at every chunk end) equal those of
  :meth:`TRecViT.step_chunk` run over the same frames in chunks of 1 to 1,647
  frames with its own state carried across.
* Extreme frames (black, white, noise, saturated colours, black/white flicker,
  a sudden cut) keep the state bounded and the outputs finite; once normal
  frames come back, the streams that saw them converge towards one that did not;
  ``state.reset(mask)`` mid-stream gives exactly the outputs of a fresh stream.

The two endless streams (one per dtype) run side by side in two spawned
processes, which also keeps their memory figures free of pytest's own. At about
300 frames/s per process on a loaded 2-core machine, 100,000 frames took 5.5
minutes, more than half of the suite's time budget, hence the shorter default;
``TRECVIT_STREAM_FRAMES=100000 python -m pytest tests/robustness/test_streams.py -s``
runs the long one.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import resource
import time
from concurrent.futures import Future, ProcessPoolExecutor

import pytest
import torch

from conftest import tiny_model

STREAM_FRAMES = int(os.environ.get("TRECVIT_STREAM_FRAMES", "20000"))
STREAM_BATCH = 1
# width 16, depth 2, 8x8 frames of 2x2 patches of 4 pixels: 5 tokens per frame (with the class token)
STREAM_CONFIG = dict(width=16, depth=2, num_heads=2, mlp_dim=32, patch_size=4, image_size=8,
                     rep_size=8, num_classes=5, frames_per_clip=16)
# Chunk sizes for step_chunk, cycled: 3,004 frames a cycle. The first cycle is the warm-up
# of the memory figures (every chunk size has then been allocated once).
CHUNKS = (1, 2, 5, 31, 64, 254, 1000, 1647)
# |step - step_chunk| allowed at every frame (and, for the states, at every chunk end).
# float32: rounding only (GEMMs of other shapes; the scan kernel against one multiply-add per
# frame) for the per-frame outputs and the recurrent state, which does not accumulate it. The
# running mean behind logits and pre_logits is a float32 sum over every frame seen: its
# rounding error grows with the stream (about 1e-5 after 15,000 frames, 9e-5 after 100,000,
# the same against a float64 sum), hence the looser bound on those two.
# bfloat16 autocast: the linear layers round their outputs to bfloat16 (8 bits of mantissa; a
# step is 2**-7 = 0.008 for values in [1, 2), 0.016 in [2, 4)), and a GEMM over one frame and
# over 1,000 rounds differently: the paths differ by a few bfloat16 steps (measured over
# 100,000 frames: encoded 0.055, logits 0.008, lru 0.021, conv 0.031).
TOLERANCE = {
    "float32": dict(encoded=1e-5, lru=1e-5, conv=1e-5, logits=2e-4, pre_logits=2e-4,
                    feature_sum_rel=2e-4, running_mean=2e-4),
    "bfloat16": dict(encoded=0.125, lru=0.0625, conv=0.0625, logits=0.03, pre_logits=0.01,
                     feature_sum_rel=0.01, running_mean=0.01),
}
STATE_BOUND = 100.0  # |lru| and |conv| state values; the tiny model's reach about 2
RSS_GROWTH_BOUND = 4 * 2 ** 20  # bytes, after the warm-up cycle


def make_frames(start: int, count: int, batch: int, size: int, seed: int = 0) -> torch.Tensor:
    """Frames ``start .. start + count - 1`` of ``batch`` deterministic streams, ``[count, b, 3, s, s]``.

    A smooth pattern drifting over time plus noise; a scene cut every 4,999 frames (the
    pattern jumps), and in every 25,000 frames a stretch of 500 black and one of 500 white
    frames. Any frame can be made on its own, so a stream never has to sit in memory.
    """
    t = torch.arange(start, start + count, dtype=torch.float64).view(-1, 1, 1, 1, 1)
    b = torch.arange(batch, dtype=torch.float64).view(1, -1, 1, 1, 1)
    c = torch.arange(3, dtype=torch.float64).view(1, 1, -1, 1, 1)
    y = torch.arange(size, dtype=torch.float64).view(1, 1, 1, -1, 1)
    x = torch.arange(size, dtype=torch.float64).view(1, 1, 1, 1, -1)
    scene = torch.div(t, 4999, rounding_mode="floor")
    phase = (scene * 0.37 + b * 0.23 + c * 0.11) % 1.0
    wave = torch.sin(2 * torch.pi * (x / size + 0.5 * y / size + t / (97.0 + 13 * b) + phase))
    gen = torch.Generator().manual_seed(seed * 1_000_003 + start)
    noise = torch.rand(count, batch, 3, size, size, generator=gen, dtype=torch.float64)
    frames = (0.5 + 0.35 * wave + 0.15 * (noise - 0.5)).clamp(0, 1)
    stretch = t.remainder(25_000)
    frames = torch.where((stretch >= 5_000) & (stretch < 5_500), 0.0, frames)  # black
    frames = torch.where((stretch >= 15_000) & (stretch < 15_500), 1.0, frames)  # white
    return frames.float()


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc; elsewhere the peak from getrusage).

    With glibc, freed heap memory is first handed back to the system (``malloc_trim``), so
    the figure follows the memory in use rather than what the allocator keeps for later.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * resource.getpagesize()
    except OSError:  # pragma: no cover - not Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def stream_figures(dtype: str, frames: int = STREAM_FRAMES, batch: int = STREAM_BATCH) -> dict:
    """Stream ``frames`` frames of ``batch`` streams through ``step`` (and, chunk by chunk,
    the same frames through ``step_chunk``); return the figures the test checks.

    Runs in a worker process (one thread). Raises AssertionError at the first state whose
    shape, dtype or size changed, or that holds a non-finite value.
    """
    torch.set_num_threads(1)
    model = tiny_model(**STREAM_CONFIG)
    size = model.config.image_hw[0]
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bfloat16"
                else contextlib.nullcontext())
    tol = {k: v for k, v in TOLERANCE[dtype].items() if k != "running_mean"}
    step_state = chunk_state = model.init_state(batch)
    spec = [(t.shape, t.dtype) for t in step_state]
    nbytes = step_state.nbytes()
    longest = max(CHUNKS)
    buffers: dict[str, torch.Tensor] = {}
    deviation = dict.fromkeys(tol, 0.0)
    mean_error = 0.0  # |running mean of step - the same mean summed in float64|
    sum64 = torch.zeros(batch, model.head.feature_dim, dtype=torch.float64)
    max_abs = dict(lru=0.0, conv=0.0, encoded=0.0, logits=0.0)
    checked, start, chunk_index = 0, 0, 0
    rss_after_warmup = rss_peak = 0
    step_seconds = 0.0
    with torch.inference_mode(), autocast:
        while start < frames:
            count = min(CHUNKS[chunk_index % len(CHUNKS)], frames - start)
            video = make_frames(start, count, batch, size)  # (t, b, 3, h, w)
            began = time.perf_counter()
            for i in range(count):
                out, step_state = model.step(video[i], step_state)
                if not buffers:
                    buffers = {"encoded": out.encoded.new_empty(longest, *out.encoded.shape),
                               "logits": out.logits.new_empty(longest, *out.logits.shape),
                               "pre_logits": out.pre_logits.new_empty(longest, *out.pre_logits.shape),
                               "lru": step_state.lru.new_empty(longest, *step_state.lru.shape),
                               "conv": step_state.conv.new_empty(longest, *step_state.conv.shape)}
                buffers["encoded"][i].copy_(out.encoded)
                buffers["logits"][i].copy_(out.logits)
                buffers["pre_logits"][i].copy_(out.pre_logits)
                buffers["lru"][i].copy_(step_state.lru)
                buffers["conv"][i].copy_(step_state.conv)
                assert [(t.shape, t.dtype) for t in step_state] == spec, f"state changed at frame {start + i}"
            step_seconds += time.perf_counter() - began
            assert step_state.nbytes() == nbytes
            seen = {k: v[:count] for k, v in buffers.items()}
            for name, values in seen.items():
                assert bool(torch.isfinite(values).all()), f"non-finite {name} in frames {start}..{start + count}"
                max_abs[name] = max(max_abs.get(name, 0.0), float(values.abs().max()))

            # the same frames as one chunk, from the chunked path's own state
            chunk_out, chunk_state = model.step_chunk(video.transpose(0, 1), chunk_state)
            for name in ("encoded", "logits", "pre_logits"):
                got = getattr(chunk_out, name).transpose(0, 1).float()
                deviation[name] = max(deviation[name], float((seen[name].float() - got).abs().max()))
            for name in ("lru", "conv"):
                gap = float((getattr(step_state, name) - getattr(chunk_state, name)).abs().max())
                deviation[name] = max(deviation[name], gap)
            # the running mean of the per-frame features, summed in float64
            features = model.head.frame_features(chunk_out.encoded).double()  # (b, t, r)
            sums = sum64[:, None] + features.cumsum(dim=1)
            counts = torch.arange(start + 1, start + count + 1, dtype=torch.float64).view(1, -1, 1)
            mean64 = (sums / counts).transpose(0, 1)  # (t, b, r)
            mean_error = max(mean_error, float((seen["pre_logits"].double() - mean64).abs().max()))
            sum64 = sums[:, -1]
            assert torch.get_num_threads() == 1, "a step_chunk changed torch's thread count"
            rel = (step_state.feature_sum - chunk_state.feature_sum).abs().max() / step_state.num_frames.max()
            deviation["feature_sum_rel"] = max(deviation["feature_sum_rel"], float(rel))
            assert torch.equal(step_state.num_frames, chunk_state.num_frames)
            for name, limit in tol.items():
                assert deviation[name] <= limit, (
                    f"{dtype}: step and step_chunk differ by {deviation[name]:.3g} in {name} "
                    f"by frame {start + count} (tolerance {limit})")
            checked += count
            start += count
            chunk_index += 1
            if chunk_index == len(CHUNKS):
                rss_after_warmup = rss_peak = rss_bytes()
            elif chunk_index > len(CHUNKS):
                rss_peak = max(rss_peak, rss_bytes())
    return dict(dtype=dtype, frames=start, streams=batch, frames_checked=checked,
                num_frames=step_state.num_frames.tolist(), state_bytes=nbytes,
                step_seconds=step_seconds, frames_per_second=start / step_seconds,
                max_abs=max_abs, deviation=deviation, running_mean_error=mean_error, chunks=chunk_index,
                rss_after_warmup=rss_after_warmup, rss_growth=rss_peak - rss_after_warmup)


@pytest.fixture(scope="module")
def stream_runs(request):
    """The endless streams selected for this session, started side by side in spawned workers."""
    wanted = [item.callspec.params["dtype"] for item in request.session.items
              if getattr(item, "originalname", None) == "test_endless_stream" and hasattr(item, "callspec")]
    pool = ProcessPoolExecutor(max_workers=max(1, len(wanted)), mp_context=multiprocessing.get_context("spawn"))
    runs: dict[str, Future] = {dtype: pool.submit(stream_figures, dtype) for dtype in wanted}
    yield runs
    pool.shutdown(cancel_futures=True)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_endless_stream(stream_runs, dtype):
    figures = stream_runs[dtype].result(timeout=1800)
    print(f"\n{dtype}: {figures}")
    assert figures["frames"] == STREAM_FRAMES and figures["frames_checked"] == STREAM_FRAMES
    assert figures["num_frames"] == [STREAM_FRAMES] * STREAM_BATCH
    assert figures["max_abs"]["lru"] < STATE_BOUND and figures["max_abs"]["conv"] < STATE_BOUND
    tolerance = TOLERANCE[dtype]
    assert all(figures["deviation"][k] <= tolerance[k] for k in figures["deviation"])
    assert figures["running_mean_error"] <= tolerance["running_mean"]
    assert figures["rss_growth"] < RSS_GROWTH_BOUND, (
        f"RSS grew by {figures['rss_growth'] / 2 ** 20:.1f} MiB over {STREAM_FRAMES} frames")


# ------------------------------------------------------------------------------ extreme frames
EXTREME_KINDS = ("control", "black", "white", "noise", "saturated", "flicker", "cut")
EXTREME_FRAMES = 1000  # frames of extreme input, then as many normal frames
RECOVERY_FRAMES = 1000


def extreme_frames(count: int, size: int, seed: int = 0) -> torch.Tensor:
    """``[count, 7, 3, s, s]``: one stream of each kind in :data:`EXTREME_KINDS`.

    control: the normal frames of :func:`make_frames`; black; white; uniform noise; saturated
    colours (every pixel a pure primary or secondary colour, new each frame); flicker (black
    and white alternating every frame); cut (the control scene, then at half-time a sudden
    cut to a saturated red/blue checkerboard).
    """
    gen = torch.Generator().manual_seed(seed)
    control = make_frames(0, count, 1, size)[:, 0]
    t = torch.arange(count).view(-1, 1, 1, 1)
    flicker = (t % 2).float().expand(count, 3, size, size)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    checker = ((yy + xx) % 2).float()
    scene_b = torch.stack([checker, torch.zeros_like(checker), 1 - checker])  # red/blue
    cut = torch.where(t < count // 2, control, scene_b)
    streams = [control, torch.zeros_like(control), torch.ones_like(control),
               torch.rand(control.shape, generator=gen),
               (torch.rand(control.shape, generator=gen) < 0.5).float(), flicker, cut]
    return torch.stack(streams, dim=1)


def autocast_for(dtype: str):
    return torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bfloat16" else contextlib.nullcontext()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_extreme_frames_do_not_destabilise_the_recurrence(dtype):
    model = tiny_model(**STREAM_CONFIG)
    size = model.config.image_hw[0]
    b = len(EXTREME_KINDS)
    extreme = extreme_frames(EXTREME_FRAMES, size)
    normal = make_frames(EXTREME_FRAMES, RECOVERY_FRAMES, 1, size).expand(-1, b, -1, -1, -1)
    state = model.init_state(b)
    lru_max = torch.zeros(b)
    conv_max = torch.zeros(b)
    logits_max = torch.zeros(b)
    encoded_gap, lru_gap = [], []  # per recovery frame: max |stream - control| of each stream
    with torch.inference_mode(), autocast_for(dtype):
        for t, frame in enumerate(torch.cat([extreme, normal])):
            out, state = model.step(frame.contiguous(), state)
            assert bool(torch.isfinite(out.logits).all()) and bool(torch.isfinite(out.encoded).all()), t
            lru_max = torch.maximum(lru_max, state.lru.abs().amax(dim=(0, 2, 3)))
            conv_max = torch.maximum(conv_max, state.conv.abs().amax(dim=(0, 2, 3, 4)))
            logits_max = torch.maximum(logits_max, out.logits.float().abs().amax(dim=1))
            if t >= EXTREME_FRAMES:
                encoded_gap.append((out.encoded - out.encoded[:1]).float().abs().amax(dim=(1, 2)))
                lru_gap.append((state.lru - state.lru[:, :1]).abs().amax(dim=(0, 2, 3)))
    assert all(bool(torch.isfinite(s).all()) for s in state)
    encoded_gap, lru_gap = torch.stack(encoded_gap), torch.stack(lru_gap)  # (recovery, b)
    report = {kind: dict(lru_max=round(float(lru_max[i]), 3), conv_max=round(float(conv_max[i]), 3),
                         logits_max=round(float(logits_max[i]), 3),
                         lru_gap=(round(float(lru_gap[0, i]), 4), round(float(lru_gap[-1, i]), 4)),
                         encoded_gap=(round(float(encoded_gap[:100, i].mean()), 4),
                                      round(float(encoded_gap[-100:, i].mean()), 4)))
              for i, kind in enumerate(EXTREME_KINDS)}
    print(f"\n{dtype}: {report}")
    # bounded state and sane logits: within a small factor of what normal frames give
    assert float(lru_max.max()) < STATE_BOUND and float(conv_max.max()) < STATE_BOUND
    assert bool((lru_max <= 4 * lru_max[0]).all()) and bool((conv_max <= 4 * conv_max[0]).all()), report
    assert bool((logits_max <= 4 * logits_max[0] + 0.5).all()), report
    # back on normal frames, every stream converges towards the control stream
    noise = 0.0 if dtype == "float32" else 0.05  # bfloat16 rounding keeps the gaps from reaching 0
    assert bool((lru_gap[-1] <= 0.5 * lru_gap[0] + noise).all()), report
    assert bool((encoded_gap[-100:].mean(0) <= 0.5 * encoded_gap[:100].mean(0) + noise).all()), report


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_reset_mid_stream_equals_a_fresh_stream_exactly(dtype):
    """After 300 frames of extreme input, ``state.reset(mask)`` gives the reset streams exactly
    (bit for bit) the outputs and states of streams started afresh on the same frames."""
    model = tiny_model(**STREAM_CONFIG)
    size = model.config.image_hw[0]
    b = len(EXTREME_KINDS)
    mask = torch.tensor([i % 2 == 1 for i in range(b)])
    history = extreme_frames(300, size)
    after = make_frames(300, 100, b, size)
    with torch.inference_mode(), autocast_for(dtype):
        state = model.init_state(b)
        for frame in history:
            _, state = model.step(frame.contiguous(), state)
        reset, fresh = state.reset(mask), model.init_state(b)
        for frame in after:
            out, reset = model.step(frame, reset)
            ref, fresh = model.step(frame, fresh)
            for name in ("encoded", "logits", "probs", "pre_logits"):
                assert torch.equal(getattr(out, name)[mask], getattr(ref, name)[mask]), name
            for name, ours, theirs in zip(("conv", "lru"), (reset.conv, reset.lru), (fresh.conv, fresh.lru)):
                assert torch.equal(ours[:, mask], theirs[:, mask]), name
            assert torch.equal(reset.feature_sum[mask], fresh.feature_sum[mask])
    assert reset.num_frames.tolist() == [100 if m else 400 for m in mask.tolist()]
