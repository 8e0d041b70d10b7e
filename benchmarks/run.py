"""TRecViT benchmarks: our figures against this machine's own ceilings, measured in the same run.

    python benchmarks/run.py                      # all eight, CPU (about 75 minutes on 2 cores)
    python benchmarks/run.py --only scan,memory   # some of them
    python benchmarks/run.py --quick              # small shapes, a smoke test (about a minute)
    python benchmarks/run.py --device cuda        # on a GPU (adds bfloat16 rows)
    python benchmarks/run.py --only precision --demo-run trecvit-demo   # precisions side by side (~40 min)

Benchmarks (see benchmarks/RESULTS.md for what they showed):

inference  full-clip forward of TRecViT-B at 224, 8 and 32 frames, batch 1, float32, eager
           and torch.compile: seconds, frames/s, GFLOP/s and GFLOP/s over the fp32 matmul rate.
streaming  per-frame latency of ``step`` at frames 10, 100 and 1000 of one stream (B and S at
           224), against the full clip's per-frame cost; memory of a TRecViT-S stream at 64 x 64
           after 10, 100, 1000 and 10000 frames.
training   forward + backward + AdamW step of TRecViT-S at 224, 8 frames, batch 1, float32 and
           bfloat16 autocast, eager and torch.compile: GFLOP/s over the matmul rate.
scan       the RG-LRU layer alone (B*N = 197, L = 768), forward + backward, T = 32 ... 4096,
           and its temporal scan, against the time to move their tensors once at the copy
           bandwidth; equality with the simple sequential scan.
memory     peak memory of the full-clip forward and of a training step of TRecViT-B at 224
           against the number of frames (8, 16, 32, 64), each in a fresh process.
pretraining  a masked-autoencoder pre-training step (mask ratio 0.9: encoder on the visible
           tubes, default decoder, forward + backward + AdamW) of TRecViT-S at 224, 16 frames,
           against a supervised training step of the same encoder on all tokens, side by side.
tracking   online point tracking: per-frame latency of PointTracker.step (TRecViT-S and B at 224,
           the default readout) with 16, 64 and 256 query points, against the encoder's step
           alone, side by side; frames per second.
precision  inference precisions side by side (TRecViT-S and B at 224, batch 1): ``step`` per frame
           and the full clip of 8 frames in eager fp32, compiled fp32 (with and without Inductor's
           freezing), eager bf16 (bfloat16 weights, and autocast), compiled bf16 (both), ONNX
           Runtime fp32 and int8 (ONNX Runtime's quantisation of the exported step); medians,
           ratios to eager fp32, the machine's ISA features and fp32/bf16/int8 matmul rates, and
           the issue's targets (N/A where the machine lacks the feature a target needs). bf16 rows
           are skipped where their estimated time is too long (no bf16 unit: emulated, ~50x slower
           than fp32). With ``--demo-run DIR`` (a ``trecvit demo`` folder) also the accuracy bounds:
           top-1 agreement with fp32 and max |logit difference| of bf16 and int8 on the demo's
           held-out clips, and a 10,000-frame stream's state in bf16 and int8 against fp32.

Every timing is the median of at least 3 repeats after a warm-up. Each benchmark writes
``<out>/<name>.json`` (ceilings, every run, targets) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import trecvit  # noqa: F401  (first: it turns on transparent huge pages before torch loads)
import torch
from trecvit import TRecViT, TRecViTConfig
from trecvit.layers import RGLRU
from trecvit.layers.scan import linear_scan, resolve_scan_impl
from trecvit.tools.profiling import (GB, MB, count_flops, measure_ceilings, measure_peak_memory, median,
                               run_in_child, synchronize, time_repeats)

BENCHMARKS = ("inference", "streaming", "training", "scan", "memory", "pretraining", "tracking", "precision")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def build(variant: str, size: int, device: torch.device, train: bool = False) -> TRecViT:
    torch.manual_seed(0)
    config = TRecViTConfig.from_variant(variant, image_size=size, num_classes=400)
    model = TRecViT(config).to(device)
    return model.train(train)


def target(name: str, value: float | None, op: str, threshold: float, note: str = "",
           applies: bool = True) -> dict:
    """A target's result; ``applies=False`` (the machine lacks what it needs) reports it as N/A."""
    if not applies or value is None:
        return {"name": name, "value": value, "op": op, "threshold": threshold, "met": None, "note": note}
    met = value >= threshold if op == ">=" else value <= threshold
    return {"name": name, "value": value, "op": op, "threshold": threshold, "met": bool(met),
            "note": note}


# --------------------------------------------------------------------------- 1. inference

def bench_inference(args, ceil) -> dict:
    dev = torch.device(args.device)
    variant, size, frame_counts = ("Ti", 64, (4, 8)) if args.quick else ("B", 224, (8, 32))
    model = build(variant, size, dev).eval()
    rows = []
    modes = ["eager"] + (["compiled"] if args.compile else [])
    dtypes = [torch.float32] + ([torch.bfloat16] if dev.type == "cuda" else [])
    for t in frame_counts:
        video = torch.rand(1, t, 3, size, size, device=dev)
        with torch.inference_mode():
            flops = count_flops(lambda: model(video))
        for mode in modes:
            fn = model
            if mode == "compiled":
                torch._dynamo.reset()
                fn = torch.compile(model, dynamic=False)
            for dtype in dtypes:
                amp = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16)
                log(f"inference {variant} {t} frames {mode} {str(dtype)[6:]}")
                with torch.inference_mode(), amp:
                    start = time.perf_counter()
                    fn(video)  # warm-up (compiles)
                    first = time.perf_counter() - start
                    times = time_repeats(lambda: fn(video), repeats=args.repeats, warmup=1, device=dev)
                sec = median(times)
                rate = ceil.matmul_gflops if dtype == torch.float32 else ceil.matmul_gflops_bf16
                rows.append({"variant": variant, "size": size, "frames": t, "mode": mode,
                             "dtype": str(dtype)[6:], "seconds": sec, "runs": times,
                             "first_call_s": first, "frames_per_s": t / sec, "gflop": flops / GB,
                             "gflop_per_s": flops / sec / GB, "of_matmul": flops / sec / GB / rate})
    # The ceiling of this model's own matrix products: its linear layers' shapes, run alone.
    t = frame_counts[0]
    cfg, m_rows = model.config, t * (model.config.num_tokens)
    shapes = [(cfg.width, cfg.lru_width)] * 2 + [(cfg.lru_width, cfg.width), (cfg.width, 3 * cfg.width),
                                                 (cfg.width, cfg.width), (cfg.width, cfg.mlp_dim),
                                                 (cfg.mlp_dim, cfg.width)]
    operands = [(torch.randn(m_rows, k, device=dev), torch.randn(n, k, device=dev),
                 torch.randn(n, device=dev)) for k, n in shapes]

    def linears():
        for _ in range(cfg.depth):
            for x, w, bias in operands:
                torch.addmm(bias, x, w.t())

    mm_flops = cfg.depth * sum(2 * m_rows * k * n for k, n in shapes)
    mm_sec = median(time_repeats(linears, repeats=args.repeats, device=dev))
    linear_ceiling = {"frames": t, "seconds": mm_sec, "gflop": mm_flops / GB,
                      "gflop_per_s": mm_flops / mm_sec / GB,
                      "of_matmul": mm_flops / mm_sec / GB / ceil.matmul_gflops}
    f32 = [r for r in rows if r["dtype"] == "float32" and r["frames"] == frame_counts[0]]
    best = max(f32, key=lambda r: r["of_matmul"])
    targets = [target(f"GFLOP/s / fp32 matmul rate at {frame_counts[0]} frames ({best['mode']})",
                      best["of_matmul"], ">=", 0.85),
               target(f"... eager at {frame_counts[0]} frames", f32[0]["of_matmul"], ">=", 0.85)]
    table = ["| frames | mode | dtype | seconds | frames/s | GFLOP | GFLOP/s | of matmul |",
             "|---:|---|---|---:|---:|---:|---:|---:|"]
    table += [f"| {r['frames']} | {r['mode']} | {r['dtype']} | {r['seconds']:.3f} | "
              f"{r['frames_per_s']:.2f} | {r['gflop']:.1f} | {r['gflop_per_s']:.1f} | "
              f"{r['of_matmul']:.2f} |" for r in rows]
    table += ["", f"The model's linear layers alone ({linear_ceiling['gflop']:.1f} GFLOP at {t} frames): "
              f"{linear_ceiling['seconds']:.3f} s, {linear_ceiling['gflop_per_s']:.1f} GFLOP/s, "
              f"{linear_ceiling['of_matmul']:.2f} of the square-matmul rate."]
    return {"rows": rows, "linear_layers_alone": linear_ceiling, "targets": targets, "table": table}


# --------------------------------------------------------------------------- 2. streaming

def bench_streaming(args, ceil) -> dict:
    dev = torch.device(args.device)
    size = 64 if args.quick else 224
    marks = (10, 100) if args.quick else (10, 100, 1000)
    variants = ("Ti",) if args.quick else ("B", "S")
    rows, targets = [], []
    for variant in variants:
        model = build(variant, size, dev).eval()
        for mode in ["eager"] + (["compiled"] if args.compile else []):
            clip_fn, step_fn, mode_marks = model, model.step, marks
            if mode == "compiled":  # compiled rows stop at frame 100: latency is flat (eager rows)
                torch._dynamo.reset()
                clip_fn = torch.compile(model, dynamic=False)
                step_fn = torch.compile(model.step, dynamic=False)
                mode_marks = marks[:2]
            # the full clip's per-frame cost, for comparison
            clip_t = 8
            video = torch.rand(1, clip_t, 3, size, size, device=dev)
            with torch.inference_mode():
                clip = median(time_repeats(lambda: clip_fn(video), repeats=args.repeats, warmup=2,
                                           device=dev))
            frames = torch.rand(8, 1, 3, size, size, device=dev)
            latencies = []
            log(f"streaming {variant} at {size}, {mode}: {mode_marks[-1]} frames")
            with torch.inference_mode():
                state = model.init_state(1, image_size=size, device=dev)
                for _ in range(2):  # warm-up (compiles): a fresh stream, then a running one
                    _, warm = step_fn(frames[0], state)
                    _, warm = step_fn(frames[1], warm)
                for i in range(1, mode_marks[-1] + 1):
                    synchronize(dev)
                    start = time.perf_counter()
                    _, state = step_fn(frames[i % 8], state)
                    synchronize(dev)
                    latencies.append(time.perf_counter() - start)
                    if i % 250 == 0:
                        log(f"  frame {i}: {latencies[-1] * 1e3:.1f} ms")
            at = {}
            for m in mode_marks:  # median of the 5 frames ending at frame m
                window = latencies[m - 5:m]
                at[m] = median(window)
                rows.append({"variant": variant, "mode": mode, "size": size, "frame": m,
                             "latency_s": at[m], "runs": window, "frames_per_s": 1 / at[m],
                             "full_clip_per_frame_s": clip / clip_t, "full_clip_runs": clip_t,
                             "step_over_clip": at[m] / (clip / clip_t), "state_mb": state.nbytes() / MB})
            if mode == "eager":
                targets.append(target(f"{variant}: latency at frame {marks[-1]} / frame {marks[0]}",
                                      at[marks[-1]] / at[marks[0]], "<=", 1.10))
            last = mode_marks[-1]
            targets.append(target(f"{variant} {mode}: step at frame {last} / full clip ({clip_t} frames) "
                                  "per frame", at[last] / (clip / clip_t), "<=", 1.25))
    # memory of one long stream, in a fresh process
    mem_marks = [10, 100, 1000] if args.quick else [10, 100, 1000, 10000]
    log(f"streaming memory: S at 64 x 64, {mem_marks[-1]} frames")
    mem = run_in_child("run_stream_memory", {"variant": "S", "size": 64, "checkpoints": mem_marks,
                                             "device": args.device})
    growth = (mem["peak_tensor_bytes"][-1] - mem["peak_tensor_bytes"][0]) / MB
    targets.append(target(f"S stream peak tensor memory growth, frame 10 -> {mem_marks[-1]} (MB)",
                          growth, "<=", 0.0))
    table = ["| variant | mode | frame | latency ms | frames/s | full clip ms/frame | step / clip "
             "| state MB |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    table += [f"| {r['variant']} | {r['mode']} | {r['frame']} | {r['latency_s'] * 1e3:.1f} | "
              f"{r['frames_per_s']:.2f} | "
              f"{r['full_clip_per_frame_s'] * 1e3:.1f} | {r['step_over_clip']:.2f} | {r['state_mb']:.1f} |"
              for r in rows]
    table += ["", "| S at 64 x 64: frames streamed | peak tensor memory MB | resident MB "
              "| peak resident MB |",
              "|---:|---:|---:|---:|"]
    table += [f"| {f} | {m / MB:.2f} | {r / MB:.1f} | {p / MB:.1f} |"
              for f, m, r, p in zip(mem["frames"], mem["peak_tensor_bytes"], mem["rss_bytes"],
                                    mem["peak_rss_bytes"])]
    return {"rows": rows, "stream_memory": mem, "targets": targets, "table": table}


# --------------------------------------------------------------------------- 3. training

def bench_training(args, ceil) -> dict:
    dev = torch.device(args.device)
    variant, size, t = ("Ti", 64, 4) if args.quick else ("S", 224, 8)
    rows = []
    for mode in ["eager"] + (["compiled"] if args.compile else []):
        for dtype in ("float32", "bfloat16"):
            model = build(variant, size, dev, train=True)
            # fused: one kernel for all parameters (PyTorch >= 2.4 on CPU and GPU)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05, fused=True)
            video = torch.rand(1, t, 3, size, size, device=dev)
            label = torch.tensor([3], device=dev)
            forward = torch.compile(model, dynamic=False) if mode == "compiled" else model
            amp = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dtype == "bfloat16")

            def train_step():
                with amp:
                    logits = forward(video).logits
                loss = torch.nn.functional.cross_entropy(logits.float(), label)
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                return loss

            log(f"training {variant} {t} frames {mode} {dtype}")
            flops = count_flops(lambda: model(video).logits.float().logsumexp(-1).sum().backward())
            opt.zero_grad(set_to_none=True)
            train_step()  # warm-up: compiles, creates the optimiser state
            times = time_repeats(train_step, repeats=args.repeats, warmup=1, device=dev)
            sec = median(times)
            rate = ceil.matmul_gflops if dtype == "float32" else (ceil.matmul_gflops_bf16 or float("nan"))
            rows.append({"variant": variant, "size": size, "frames": t, "mode": mode, "dtype": dtype,
                         "seconds": sec, "runs": times, "gflop": flops / GB,
                         "gflop_per_s": flops / sec / GB,
                         "of_fp32_matmul": flops / sec / GB / ceil.matmul_gflops,
                         "of_own_dtype_matmul": flops / sec / GB / rate})
            model = opt = None  # free before the next configuration
            torch._dynamo.reset()
    f32 = [r for r in rows if r["dtype"] == "float32"]
    best = max(f32, key=lambda r: r["of_fp32_matmul"])
    targets = [target(f"training GFLOP/s / fp32 matmul rate, float32 ({best['mode']})",
                      best["of_fp32_matmul"], ">=", 0.6)]
    table = ["| mode | dtype | seconds | GFLOP (fwd+bwd) | GFLOP/s | of fp32 matmul | of same-dtype matmul |",
             "|---|---|---:|---:|---:|---:|---:|"]
    table += [f"| {r['mode']} | {r['dtype']} | {r['seconds']:.3f} | {r['gflop']:.1f} | "
              f"{r['gflop_per_s']:.1f} | {r['of_fp32_matmul']:.2f} | {r['of_own_dtype_matmul']:.2f} |"
              for r in rows]
    return {"rows": rows, "targets": targets, "table": table}


# --------------------------------------------------------------------------- pre-training

def bench_pretraining(args, ceil) -> dict:
    from trecvit.mae import MAEConfig, MaskedAutoencoder, TubeMasking
    from trecvit.mae.loss import reconstruction_loss

    dev = torch.device(args.device)
    variant, size, t, ratio = ("Ti", 64, 4, 0.9) if args.quick else ("S", 224, 16, 0.9)
    torch.manual_seed(0)
    supervised = build(variant, size, dev, train=True)
    mae = MaskedAutoencoder(MAEConfig(encoder=supervised.config, mask_ratio=ratio)).to(dev).train()
    opt_sup = torch.optim.AdamW(supervised.parameters(), lr=1e-4, weight_decay=0.05, fused=True)
    opt_mae = torch.optim.AdamW(mae.parameters(), lr=1e-4, weight_decay=0.05, fused=True)
    video = torch.rand(1, t, 3, size, size, device=dev)
    label = torch.tensor([3], device=dev)
    grid = supervised.config.grid_hw
    masking = TubeMasking(grid[0] * grid[1], ratio, seed=0)
    keep = masking.batch(0, [0]).to(dev)
    patch = supervised.config.patch_size

    def supervised_step():
        loss = torch.nn.functional.cross_entropy(supervised(video).logits.float(), label)
        loss.backward()
        opt_sup.step()
        opt_sup.zero_grad(set_to_none=True)

    def pretraining_step():
        loss = reconstruction_loss(mae(video, keep).pred, video, keep, patch)
        loss.backward()
        opt_mae.step()
        opt_mae.zero_grad(set_to_none=True)

    log(f"pre-training vs supervised step, {variant} at {size}, {t} frames, mask ratio {ratio}")
    flops_sup = count_flops(lambda: supervised(video).logits.float().logsumexp(-1).sum().backward())
    flops_mae = count_flops(lambda: reconstruction_loss(mae(video, keep).pred, video, keep, patch).backward())
    opt_sup.zero_grad(set_to_none=True)
    opt_mae.zero_grad(set_to_none=True)
    supervised_step()  # warm-up: creates the optimiser state
    pretraining_step()
    sup_times, mae_times = [], []
    for _ in range(args.repeats):  # alternating, so both see the same machine load
        sup_times += time_repeats(supervised_step, repeats=1, warmup=0, device=dev)
        mae_times += time_repeats(pretraining_step, repeats=1, warmup=0, device=dev)
    ratios = [m / s for m, s in zip(mae_times, sup_times)]
    row = {"variant": variant, "size": size, "frames": t, "mask_ratio": ratio,
           "tokens_per_frame_encoder": masking.num_keep + 1,
           "tokens_per_frame_supervised": supervised.config.num_tokens,
           "supervised_seconds": median(sup_times), "pretraining_seconds": median(mae_times),
           "supervised_runs": sup_times, "pretraining_runs": mae_times, "ratios": ratios,
           "ratio": median(ratios), "supervised_gflop": flops_sup / GB, "pretraining_gflop": flops_mae / GB,
           "encoder_parameters": sum(p.numel() for p in mae.encoder.parameters()),
           "decoder_parameters": sum(p.numel() for p in mae.decoder.parameters())}
    targets = [target("pre-training step / supervised step (median of side-by-side ratios)", row["ratio"],
                      "<=", 0.3)]
    table = ["| step | tokens per frame | GFLOP (fwd+bwd) | seconds (median) |",
             "|---|---:|---:|---:|",
             f"| supervised, all tokens | {row['tokens_per_frame_supervised']} | "
             f"{row['supervised_gflop']:.1f} | {row['supervised_seconds']:.3f} |",
             f"| MAE pre-training, ratio {ratio} (encoder + decoder) | {row['tokens_per_frame_encoder']} "
             f"(decoder {grid[0] * grid[1]}) | {row['pretraining_gflop']:.1f} | "
             f"{row['pretraining_seconds']:.3f} |",
             "",
             f"Ratio (median of {len(ratios)} side-by-side ratios): **{row['ratio']:.3f}** "
             f"(runs: {', '.join(f'{r:.3f}' for r in ratios)}); FLOP ratio {flops_mae / flops_sup:.3f}. "
             f"Encoder {row['encoder_parameters'] / 1e6:.1f} M parameters, decoder "
             f"{row['decoder_parameters'] / 1e6:.2f} M."]
    return {"rows": [row], "targets": targets, "table": table}


# --------------------------------------------------------------------------- 4. scan

def bench_scan(args, ceil) -> dict:
    dev = torch.device(args.device)
    bn, width, heads = (197, 768, 12)
    lengths = (32, 256) if args.quick else (32, 256, 1024, 4096)
    check_at = lengths[-1] if args.quick else 1024
    bw = ceil.bandwidth_gbs * GB
    rows, targets = [], []
    gen = torch.Generator(device=dev).manual_seed(0)
    layer = RGLRU(width, heads).to(dev)
    for t in lengths:
        numel = bn * t * width
        tensor_bytes = numel * 4
        # -- the scan alone: h_t = a_t h_{t-1} + x_t, forward + backward
        a = torch.rand(1, t, bn, width, device=dev, generator=gen).requires_grad_()
        x = torch.randn(1, t, bn, width, device=dev, generator=gen).requires_grad_()
        g = torch.randn(1, t, bn, width, device=dev, generator=gen)
        impl = resolve_scan_impl(x)
        for name, chosen in ((impl, "auto"),) + ((("sequential", "sequential"),) if t <= 1024 else ()):
            log(f"scan T={t} {name}")

            def scan_fwd_bwd():
                h = linear_scan(a, x, impl=chosen)
                torch.autograd.grad(h, (a, x), g)

            times = time_repeats(scan_fwd_bwd, repeats=args.repeats, device=dev)
            sec = median(times)
            bound = 8 * tensor_bytes / bw  # fwd: read a, x, write h; bwd: read g, a, h, write da, dx
            rows.append({"what": "scan", "impl": name, "T": t, "seconds": sec, "runs": times,
                         "bytes_once": 8 * tensor_bytes, "bandwidth_bound_s": bound,
                         "over_bound": sec / bound})
        if t == check_at:
            ours = linear_scan(a, x)
            ours_grads = torch.autograd.grad(ours, (a, x), g)
            ref = linear_scan(a, x, impl="sequential")
            ref_grads = torch.autograd.grad(ref, (a, x), g)
            err = max(float((ours - ref).abs().max()),
                      *(float((p - q).abs().max()) for p, q in zip(ours_grads, ref_grads)))
            targets.append(target(f"scan at T={t}: max abs difference to the sequential scan",
                                  err, "<=", 1e-5))
        a = x = g = None  # free before the layer runs
        # -- the RG-LRU layer (gates + scan), forward + backward, where it fits in memory
        if tensor_bytes * 24 > 0.8 * _total_memory(dev):
            rows.append({"what": "rglru", "impl": impl, "T": t, "seconds": None,
                         "note": "skipped: its activations do not fit in memory here"})
            continue
        c = torch.randn(1, t, bn, width, device=dev, generator=gen).requires_grad_()
        gy = torch.randn(1, t, bn, width, device=dev, generator=gen)
        flops = count_flops(lambda: (layer(c)[0] * gy).sum().backward())
        layer.zero_grad(set_to_none=True)
        c.grad = None
        for name, env in ((impl, None),) + ((("sequential", "sequential"),) if t <= 256 else ()):
            log(f"rglru T={t} {name}")

            def layer_fwd_bwd():
                torch.autograd.grad(layer(c)[0], [c, *layer.parameters()], gy)

            with _scan_env(env):
                times = time_repeats(layer_fwd_bwd, repeats=args.repeats, device=dev)
            sec = median(times)
            io = 4 * tensor_bytes / bw  # read c, write y; read dy, write dc
            compute = flops / GB / ceil.matmul_gflops
            rows.append({"what": "rglru", "impl": name, "T": t, "seconds": sec, "runs": times,
                         "io_bound_s": io, "matmul_bound_s": compute, "gflop": flops / GB,
                         "over_bound": sec / max(io, compute), "over_io": sec / io})
        c = gy = None
    main = [r for r in rows if r["what"] == "scan" and r["impl"] != "sequential" and r["T"] == check_at]
    targets.insert(0, target(f"scan forward + backward at T={check_at} / bandwidth bound",
                             main[0]["over_bound"], "<=", 3.0))
    table = ["| what | impl | T | seconds | bound s | over bound |", "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        if r.get("seconds") is None:
            table.append(f"| {r['what']} | {r['impl']} | {r['T']} | {r['note']} | | |")
            continue
        bound = r.get("bandwidth_bound_s") or max(r["io_bound_s"], r["matmul_bound_s"])
        table.append(f"| {r['what']} | {r['impl']} | {r['T']} | {r['seconds']:.3f} | {bound:.3f} | "
                     f"{r['over_bound']:.2f} |")
    return {"rows": rows, "targets": targets, "table": table}


def _total_memory(dev: torch.device) -> int:
    if dev.type == "cuda":
        return torch.cuda.get_device_properties(dev).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


class _scan_env:
    def __init__(self, impl):
        self.impl = impl

    def __enter__(self):
        self.old = os.environ.get("TRECVIT_SCAN")
        if self.impl:
            os.environ["TRECVIT_SCAN"] = self.impl

    def __exit__(self, *exc):
        if self.old is None:
            os.environ.pop("TRECVIT_SCAN", None)
        else:
            os.environ["TRECVIT_SCAN"] = self.old


# --------------------------------------------------------------------------- 5. memory

def bench_memory(args, ceil) -> dict:
    variant, size, frame_counts = ("Ti", 64, (8, 16, 32)) if args.quick else ("B", 224, (8, 16, 32, 64))
    rows, targets = [], []
    ram_mb = _total_memory(torch.device(args.device)) / MB
    for mode in ("forward", "train"):
        for t in frame_counts:
            done = [r for r in rows if r["mode"] == mode and r["added_mb"] is not None]
            if len(done) >= 2:  # skip a run that a straight line says cannot fit in this machine
                slope, icpt = _fit([r["frames"] for r in done], [r["added_mb"] for r in done])
                need = slope * t + icpt + max(r["baseline_rss_mb"] for r in done)
                if need > 0.9 * ram_mb:
                    rows.append({"mode": mode, "frames": t, "added_mb": None, "predicted_mb": need,
                                 "error": f"not run: needs about {need / 1e3:.1f} GB (straight-line "
                                          f"prediction), this machine has {ram_mb / 1e3:.1f} GB"})
                    log(f"memory {variant} {mode} {t} frames: {rows[-1]['error']}")
                    continue
            log(f"memory {variant} {mode} {t} frames (fresh process)")
            spec = {"variant": variant, "size": size, "frames": t, "batch": 1, "mode": mode,
                    "device": args.device}
            try:
                res = measure_peak_memory(spec)
                rows.append({"mode": mode, "frames": t, "added_mb": res["added_bytes"] / MB,
                             "peak_rss_mb": res["peak_rss_bytes"] / MB,
                             "baseline_rss_mb": res["baseline_rss_bytes"] / MB})
            except (RuntimeError, OSError) as err:
                rows.append({"mode": mode, "frames": t, "added_mb": None, "error": str(err)[:300]})
        ok = [r for r in rows if r["mode"] == mode and r["added_mb"] is not None]
        if len(ok) >= 3:
            xs, ys = [r["frames"] for r in ok], [r["added_mb"] for r in ok]
            slope, icpt = _fit(xs, ys)
            worst = max(abs(y - (slope * x + icpt)) / y for x, y in zip(xs, ys))
            for r in ok:
                r["linear_fit_mb"] = slope * r["frames"] + icpt
            targets.append(target(f"{mode}: largest deviation from a straight line (fraction)", worst,
                                  "<=", 0.10, f"{slope:.1f} MB per frame + {icpt:.1f} MB"))
    table = ["| run | frames | peak tensor memory MB | straight-line fit MB | process peak resident MB |",
             "|---|---:|---:|---:|---:|"]
    for r in rows:
        if r["added_mb"] is None:
            table.append(f"| {r['mode']} | {r['frames']} | {r['error'][:120]} | | |")
        else:
            table.append(f"| {r['mode']} | {r['frames']} | {r['added_mb']:.0f} | "
                         f"{r.get('linear_fit_mb', float('nan')):.0f} | {r['peak_rss_mb']:.0f} |")
    return {"variant": variant, "size": size, "rows": rows, "targets": targets, "table": table}


def _fit(xs, ys):
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return slope, my - slope * mx


# --------------------------------------------------------------------------- 7. tracking

def bench_tracking(args, ceil) -> dict:
    from trecvit.tracking import PointTracker, TrackerConfig

    dev = torch.device(args.device)
    size = 64 if args.quick else 224
    variants = ("Ti",) if args.quick else ("S", "B")
    counts = (16, 64) if args.quick else (16, 64, 256)
    frames_timed = 5 if args.quick else 10
    rows, targets = [], []
    for variant in variants:
        torch.manual_seed(0)
        tracker = PointTracker(TrackerConfig(encoder=TRecViTConfig.from_variant(variant, image_size=size))
                               ).to(dev).eval()
        frames = torch.rand(frames_timed + 2, 1, 3, size, size, device=dev)

        def per_frame(step, state):  # median latency of frames_timed steps after 2 warm-up frames
            times = []
            with torch.inference_mode():
                for i in range(frames_timed + 2):
                    synchronize(dev)
                    start = time.perf_counter()
                    _, state = step(frames[i], state)
                    synchronize(dev)
                    times.append(time.perf_counter() - start)
            return median(times[2:]), times[2:]

        log(f"tracking {variant} at {size}: points {counts}")
        encoder_runs, tracker_runs = [], {n: [] for n in counts}
        for _ in range(args.repeats):  # side by side: the encoder alone, then the tracker per count
            enc, _ = per_frame(tracker.encoder.step, tracker.encoder.init_state(1, size, device=dev))
            encoder_runs.append(enc)
            for n in counts:
                g = torch.Generator().manual_seed(n)
                queries = torch.cat([torch.zeros(1, n, 1), torch.rand(1, n, 2, generator=g)], -1).to(dev)
                t, _ = per_frame(tracker.step, tracker.init_state(queries, size))
                tracker_runs[n].append(t)
        enc = median(encoder_runs)
        for n in counts:
            lat = median(tracker_runs[n])
            ratio = median([t / e for t, e in zip(tracker_runs[n], encoder_runs)])
            rows.append({"variant": variant, "size": size, "points": n, "latency_s": lat,
                         "frames_per_s": 1 / lat, "encoder_step_s": enc, "over_encoder": ratio,
                         "runs": tracker_runs[n], "encoder_runs": encoder_runs})
            if n == 64:
                targets.append(target(f"{variant}: tracker step with 64 points / encoder step", ratio,
                                      "<=", 1.25, "the readout costs at most a quarter of the trunk"))
    table = ["| variant | points | step ms | frames/s | encoder step ms | tracker / encoder |",
             "|---|---:|---:|---:|---:|---:|"]
    table += [f"| {r['variant']} | {r['points']} | {r['latency_s'] * 1e3:.1f} | {r['frames_per_s']:.2f} | "
              f"{r['encoder_step_s'] * 1e3:.1f} | {r['over_encoder']:.2f} |" for r in rows]
    return {"rows": rows, "targets": targets, "table": table}


# --------------------------------------------------------------------------- 8. precision

PRECISION_ROWS = (  # (name, precision, compiled, InferenceModel keywords)
    ("eager fp32", "fp32", False, {}),
    ("compiled fp32", "fp32", True, {}),
    ("compiled fp32, no freezing", "fp32", True, {"freezing": False}),
    ("eager bf16 weights", "bf16", False, {"bf16_mode": "weights"}),
    ("eager bf16 autocast", "bf16", False, {"bf16_mode": "autocast"}),
    ("compiled bf16 weights", "bf16", True, {"bf16_mode": "weights"}),
    ("compiled bf16 autocast", "bf16", True, {"bf16_mode": "autocast"}),
    ("int8 (ONNX Runtime)", "int8", False, {}),
    ("ONNX Runtime fp32", "onnx", False, {}),  # the same export unquantised: what int8 itself brings
)
INT8_ROW = "int8 (ONNX Runtime)"


class _OnnxFp32:
    """The float32 ONNX step in ONNX Runtime, called as the benchmark calls an InferenceModel."""

    def __init__(self, path):
        from trecvit.tools.export import OnnxStreamingSession

        self.session = OnnxStreamingSession(path, threads=torch.get_num_threads())

    def step(self, frame, state):
        return self.session.step(frame, state)

    def __call__(self, video):  # a clip: its frames through the step
        state = self.session.init_state(video.shape[0])
        for i in range(video.shape[1]):
            out, state = self.session.step(video[:, i], state)
        return out


def _precision_runners(model, variant, size, rates, info, args, tmp, clip_flops) -> tuple[dict, list]:
    """``{row name: runner}`` for this machine, and the rows skipped (with why)."""
    from trecvit.tools.precision import InferenceModel

    dev = torch.device(args.device)
    runners, skipped = {}, []
    for name, prec, compiled, kw in PRECISION_ROWS:
        if (compiled and not args.compile) or (prec in ("int8", "onnx") and dev.type != "cpu"):
            continue
        if prec == "bf16" and not info.bf16_unit and rates.bf16:
            estimate = clip_flops / (rates.bf16 * GB)  # seconds per clip at the measured bf16 rate
            if estimate > args.max_row_seconds:
                skipped.append({"variant": variant, "row": name, "skipped":
                                f"no AMX or AVX-512 BF16: bf16 is emulated ({rates.bf16:.1f} GFLOP/s), about "
                                f"{estimate:.0f} s per clip; correctness: tests/test_precision.py"})
                continue
        if prec == "onnx":
            if INT8_ROW not in runners:
                continue
            runners[name] = _OnnxFp32(Path(tmp) / f"{variant}_fp32.onnx")
        elif prec == "int8":
            runners[name] = InferenceModel(model, "int8", int8_options={"cache_dir": tmp})
            runners[name].int8.file((size, size), fp32_copy=Path(tmp) / f"{variant}_fp32.onnx")
        else:
            runners[name] = InferenceModel(model, prec, compile=compiled, **kw)
    return runners, skipped


def bench_precision(args, ceil) -> dict:
    import tempfile

    from trecvit.tools.machine import machine_info, measure_matmul_rates

    dev = torch.device(args.device)
    variants, size, clip_t = (("Ti",), 64, 4) if args.quick else (("S", "B"), 224, 8)
    info = machine_info(dev)
    log("precision: matmul rates")
    rates = measure_matmul_rates(dev, max_size=512 if args.quick else 2048,
                                 target_s=0.05 if args.quick else 0.3, repeats=max(args.repeats, 3))
    lacks = "" if info.bf16_unit else "machine lacks AMX and AVX-512 BF16"
    tmp = tempfile.TemporaryDirectory(prefix="trecvit-bench-precision-")
    rows, targets = [], []
    for variant in variants:
        model = build(variant, size, dev).eval()
        video = torch.rand(1, clip_t, 3, size, size, device=dev)
        frames = torch.rand(8, 1, 3, size, size, device=dev)
        with torch.inference_mode():
            clip_flops = count_flops(lambda: model(video))
            state0 = model.init_state(1, image_size=size, device=dev)
            step_flops = count_flops(lambda: model.step(frames[0], state0))
        log(f"precision {variant} at {size}: exporting / preparing")
        runners, skipped = _precision_runners(model, variant, size, rates, info, args, tmp.name, clip_flops)
        prepare = {}
        with torch.inference_mode():
            for name, runner in runners.items():  # warm-up: compiles / builds the session
                log(f"precision {variant}: warm-up of {name}")
                start = time.perf_counter()
                runner(video)
                state = model.init_state(1, image_size=size, device=dev)
                for i in range(2):
                    _, state = runner.step(frames[i], state)
                prepare[name] = time.perf_counter() - start
            # side by side: each repeat times every row once (a clip, then 5 frames of a stream)
            times = {name: {"clip": [], "step": []} for name in runners}
            states = {name: model.init_state(1, image_size=size, device=dev) for name in runners}
            for r in range(args.repeats):
                log(f"precision {variant}: repeat {r + 1}/{args.repeats}")
                for name, runner in runners.items():
                    times[name]["clip"] += time_repeats(lambda: runner(video), repeats=1, warmup=0,
                                                        device=dev)
                    for i in range(5):
                        synchronize(dev)
                        start = time.perf_counter()
                        _, states[name] = runner.step(frames[i], states[name])
                        synchronize(dev)
                        times[name]["step"].append(time.perf_counter() - start)
        base = times.get("eager fp32")
        done = []
        for name in runners:
            clip_s, step_s = median(times[name]["clip"]), median(times[name]["step"])
            prec = next(p for n, p, _, _ in PRECISION_ROWS if n == name)
            rate = {"bf16": rates.bf16, "int8": rates.int8}.get(prec, rates.fp32)
            done.append({"variant": variant, "row": name, "size": size, "clip_frames": clip_t,
                         "clip_s": clip_s, "clip_fps": clip_t / clip_s, "step_s": step_s,
                         "step_fps": 1 / step_s, "clip_runs": times[name]["clip"],
                         "step_runs": times[name]["step"], "clip_gflop": clip_flops / GB,
                         "step_gflop": step_flops / GB,
                         "clip_of_own_matmul": clip_flops / clip_s / GB / rate if rate else None,
                         "clip_x_fp32": median(base["clip"]) / clip_s if base else None,
                         "step_x_fp32": median(base["step"]) / step_s if base else None,
                         "prepare_s": prepare[name]})
        rows += done + skipped
        targets += _precision_targets(variant, done, info, lacks)
        runners = model = None
        torch._dynamo.reset()
    tmp.cleanup()
    result = {"machine": info.to_dict(), "matmul_rates": rates.to_dict(), "rows": rows}
    table = _precision_table(rows, info, rates, clip_t)
    if args.demo_run:
        accuracy = _precision_accuracy(args)
        targets += accuracy.pop("targets")
        table += [""] + accuracy.pop("table")
        result["accuracy"] = accuracy
    else:
        table += ["", "Accuracy bounds: not measured; give --demo-run DIR (a `trecvit demo` output folder)."]
    result.update(targets=targets, table=table)
    return result


def _precision_table(rows, info, rates, clip_t) -> list[str]:
    def num(value, fmt):
        return "-" if value is None else format(value, fmt)

    found = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in info.features.summary().items())
    lines = [f"Machine: {info.name}, {info.threads} threads; {found}",
             f"Matmul rates: fp32 {rates.fp32:.1f} GFLOP/s, bf16 {num(rates.bf16, '.1f')} GFLOP/s, int8 "
             f"{num(rates.int8, '.1f')} GOP/s ({rates.int8_backend}); square sides {rates.sizes}", "",
             f"| variant | row | step ms | step frames/s | step x fp32 | clip ({clip_t} frames) s | "
             "clip frames/s | clip x fp32 | clip GFLOP/s / own matmul rate | warm-up s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['variant']} | {r['row']} | skipped: {r['skipped']} | | | | | | | |")
            continue
        lines.append(f"| {r['variant']} | {r['row']} | {r['step_s'] * 1e3:.1f} | {r['step_fps']:.2f} | "
                     f"{num(r['step_x_fp32'], '.2f')} | {r['clip_s']:.3f} | {r['clip_fps']:.2f} | "
                     f"{num(r['clip_x_fp32'], '.2f')} | {num(r['clip_of_own_matmul'], '.2f')} | "
                     f"{r['prepare_s']:.1f} |")
    return lines


def _precision_targets(variant: str, rows: list[dict], info, lacks: str) -> list[dict]:
    """The issue's targets for ``variant`` (N/A, with the reason, where the machine lacks what
    a target needs)."""
    done = {r["row"]: r for r in rows}
    fp32 = done.get("eager fp32")
    out = []
    need = {"S": 25.0, "B": 9.0}.get(variant)
    if need and done:
        best = max(done.values(), key=lambda r: r["step_fps"])
        out.append(target(f"{variant}: step frames/s, best row ({best['row']})", best["step_fps"], ">=", need,
                          f"a target for a CPU with AMX; {lacks}" if lacks else "", applies=not lacks))
    if variant in ("B", "Ti"):
        bf16 = [r for n, r in done.items() if "bf16" in n]
        best = max(bf16, key=lambda r: r["clip_fps"]) if bf16 else None
        note = lacks or ("" if best else "no bf16 rows")
        ratio = best["clip_x_fp32"] if best and fp32 else None
        of_rate = best["clip_of_own_matmul"] if best else None
        out.append(target(f"{variant}: full clip, best bf16 / eager fp32", ratio, ">=", 3.0, note,
                          applies=not lacks))
        out.append(target(f"{variant}: full clip, best bf16 GFLOP/s / bf16 matmul rate", of_rate, ">=", 0.6,
                          note, applies=not lacks))
    int8 = done.get(INT8_ROW)
    if int8 and fp32:
        note = f"this CPU has {info.bf16_unit}: a target for CPUs without one" if info.bf16_unit else ""
        out.append(target(f"{variant}: int8 step / eager fp32 step", int8["step_x_fp32"], ">=", 1.8, note,
                          applies=not info.bf16_unit))
    return out


def _precision_accuracy(args) -> dict:
    """The issue's accuracy bounds on a ``trecvit demo`` folder's model and held-out clips."""
    from dataclasses import asdict

    from trecvit.checkpoints.auto import load_model
    from trecvit.data.synthetic import SyntheticMotion
    from trecvit.tools.precision import compare_precisions, stream_drift
    from trecvit.training.config import TrainConfig

    root = Path(args.demo_run)
    run = next((d for d in (root / "trecvit", root) if (d / "config.yaml").is_file()), None)
    if run is None or not (run / "model").is_dir():
        raise FileNotFoundError(f"--demo-run {root}: no trecvit/config.yaml and trecvit/model (give the "
                                "output folder of `trecvit demo`)")
    cfg = TrainConfig.from_yaml(run / "config.yaml")
    model = load_model(run / "model").eval()
    size = min(cfg.synthetic_val_size, args.demo_clips or cfg.synthetic_val_size)
    log(f"precision accuracy: {size} held-out clips (seed {cfg.seed + 1000}, the demo's evaluation)")
    videos, labels = SyntheticMotion(size, num_frames=cfg.num_frames, image_size=cfg.image_size,
                                     seed=cfg.seed + 1000).materialize()
    videos = videos.float() / 255
    options = {"int8_options": {"cache_dir": str(Path(args.out) / "precision_int8_cache")}}
    agreements = compare_precisions(model, videos, labels, ("int8", ("bf16", {"bf16_mode": "weights"}),
                                                            ("bf16", {"bf16_mode": "autocast"})),
                                    options=options)
    frames = videos[:64].reshape(-1, 1, *videos.shape[2:])  # held-out clips one after another (cuts)
    drifts = []
    for prec in ("bf16", "int8"):
        log(f"precision accuracy: a {args.stream_frames}-frame stream in {prec} against fp32")
        drifts.append(stream_drift(model, frames, args.stream_frames, prec, options=options,
                                   every=max(args.stream_frames // 20, 1)))  # 20 marks
    targets = [target(f"demo: top-1 agreement with fp32, {a.precision}", a.top1_agreement, ">=", 0.99,
                      f"max |logit diff| {a.max_logit_diff:.3g}") for a in agreements]
    bf16 = drifts[0]  # the issue's bound is on the bf16 state; the int8 stream is reported beside it
    half = len(bf16.marks) // 2
    early, late = (sum(m["state_diff"] for m in part) / max(len(part), 1)
                   for part in (bf16.marks[:half], bf16.marks[half:]))
    targets += [target(f"demo: {bf16.frames}-frame bf16 stream, max |state diff| / max |fp32 state|",
                       bf16.relative_state_diff if bf16.finite else float("inf"), "<=", 0.1,
                       f"finite {bf16.finite}, max |prob diff| {bf16.max_prob_diff:.3g}"),
                target("demo: bf16 stream, mean |state diff| at its 2nd half's marks / its 1st half's "
                       "(no growth)", late / max(early, 1e-12), "<=", 2.0, applies=half >= 2)]
    targets += [target(f"demo: {d.frames}-frame {d.precision} stream, running top-1 agreement with fp32",
                       d.top1_agreement if d.finite else 0.0, ">=", 0.99,
                       f"relative state diff {d.relative_state_diff:.3g}") for d in drifts]
    table = [f"Accuracy on the demo's {size} held-out clips ({run / 'model'}): fp32 top-1 "
             f"{100 * agreements[0].fp32_top1:.2f}%", "",
             "| precision | top-1 agreement with fp32 | max abs logit diff | top-1 |", "|---|---:|---:|---:|"]
    table += [f"| {a.precision} | {100 * a.top1_agreement:.2f}% | {a.max_logit_diff:.4f} | "
              f"{100 * a.top1:.2f}% |" for a in agreements]
    table += ["", "| stream | frames | finite | max abs state diff | max abs fp32 state | relative | "
              "max prob diff | running top-1 agreement |", "|---|---:|---|---:|---:|---:|---:|---:|"]
    table += [f"| {d.precision} | {d.frames} | {d.finite} | {d.max_state_diff:.4g} | {d.max_state_abs:.4g} | "
              f"{d.relative_state_diff:.4f} | {d.max_prob_diff:.4g} | {100 * d.top1_agreement:.1f}% |"
              for d in drifts]
    return {"clips": size, "agreements": [asdict(a) for a in agreements],
            "streams": [{**asdict(d), "relative_state_diff": d.relative_state_diff} for d in drifts],
            "targets": targets, "table": table}


# --------------------------------------------------------------------------- main

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(BENCHMARKS),
                        help=f"comma-separated subset of {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="small shapes: a smoke test, not a measurement")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats after a warm-up (>= 3)")
    parser.add_argument("--no-compile", dest="compile", action="store_false",
                        help="skip the torch.compile rows")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"),
                        help="folder for the JSON results")
    parser.add_argument("--demo-run", default=None, metavar="DIR",
                        help="precision: a `trecvit demo` output folder, for the accuracy bounds on its "
                             "model and held-out clips (default: not measured)")
    parser.add_argument("--demo-clips", type=int, default=None,
                        help="precision: use only the first N held-out clips (default: all of them)")
    parser.add_argument("--stream-frames", type=int, default=10000,
                        help="precision: frames of the long bf16 / int8 stream (default 10000)")
    parser.add_argument("--max-row-seconds", type=float, default=30.0,
                        help="precision: skip a bf16 row whose clip would take longer than this at the "
                             "measured bf16 matmul rate (default 30)")
    args = parser.parse_args(argv)
    chosen = [b.strip() for b in args.only.split(",") if b.strip()]
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    if args.repeats < 3 and not args.quick:
        parser.error("--repeats must be at least 3")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(args.device)
    failed = []
    for name in chosen:
        log(f"== {name}: measuring this machine's ceilings")
        ceil = measure_ceilings(dev, bf16=name in ("training", "inference"), quick=args.quick)
        log(f"   fp32 matmul {ceil.matmul_gflops:.1f} GFLOP/s, copy {ceil.bandwidth_gbs:.1f} GB/s"
            + (f", bf16 matmul {ceil.matmul_gflops_bf16:.1f} GFLOP/s" if ceil.matmul_gflops_bf16 else ""))
        result = globals()[f"bench_{name}"](args, ceil)
        result.update(benchmark=name, quick=args.quick, ceilings=ceil.to_dict(),
                      environment={"torch": torch.__version__,
                                   "THP_MEM_ALLOC_ENABLE": os.environ.get("THP_MEM_ALLOC_ENABLE"),
                                   "python": platform.python_version(),
                                   "machine": platform.machine(), "threads": torch.get_num_threads(),
                                   "date": time.strftime("%Y-%m-%d %H:%M"),
                                   "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])])})
        path = out / f"{name}{'_quick' if args.quick else ''}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        os.replace(tmp, path)
        print(f"\n## {name} ({ceil.device}; fp32 matmul {ceil.matmul_gflops:.1f} GFLOP/s, "
              f"copy {ceil.bandwidth_gbs:.1f} GB/s)\n")
        print("\n".join(result["table"]))
        print()
        for tg in result["targets"]:
            mark = "N/A " if tg["met"] is None else "MET " if tg["met"] else "MISS"
            value = "-" if tg["value"] is None else f"{tg['value']:.4g}"
            print(f"  [{mark}] {tg['name']}: {value} (target {tg['op']} {tg['threshold']})"
                  + (f"  {tg['note']}" if tg["note"] else ""))
            if tg["met"] is False:
                failed.append(f"{name}: {tg['name']}")
        print(f"\n  -> {path}\n", flush=True)
    if failed:
        print("targets missed:\n  " + "\n  ".join(failed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
