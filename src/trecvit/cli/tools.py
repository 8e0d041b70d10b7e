"""``trecvit profile`` and ``trecvit export``: cost of a model, and its streaming step exported."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from trecvit.cli.common import check_output, device_type, image_size_arg, positive_list


def _aot_compile(export, model, path: str, *, batch_size: int, image_size, dynamic: bool, overwrite: bool):
    """``--torch-export FILE --compile``: the exported step compiled ahead of time by AOTInductor
    into a ``.pt2`` package (written atomically); returns the loaded package, a callable."""
    import os
    import tempfile
    import warnings

    from torch._inductor import aoti_compile_and_package, aoti_load_package

    program = export.export_step_torch(model, None, batch_size=batch_size, image_size=image_size,
                                       dynamic_batch=dynamic)
    out = Path(path)
    if out.exists() and not overwrite:
        raise ValueError(f"{out} already exists; pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp:
        with warnings.catch_warnings():  # torch's own pytree deprecation, raised while packaging
            warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
            built = aoti_compile_and_package(program, package_path=str(Path(tmp) / "step.pt2"))
        os.replace(built, out)
    return aoti_load_package(str(out))


def cmd_export(args: argparse.Namespace) -> int:
    from trecvit.checkpoints.auto import load_model
    from trecvit.tools import export
    from trecvit.tools.precision import bf16_weights, format_precision, resolve_precision

    outputs = [(flag, path) for flag, path in (("--onnx", args.onnx), ("--torch-export", args.torch_export))
               if path is not None]
    if not outputs:
        raise ValueError("nothing to export: give --onnx FILE and/or --torch-export FILE")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.check_frames < 0:
        raise ValueError(f"--check-frames must be >= 0 (0: no check), got {args.check_frames}")
    precision, reason = resolve_precision(args.precision, "cpu")
    if precision == "bf16" and args.onnx is not None:
        raise ValueError("--precision bf16 exports --torch-export only: ONNX Runtime's CPU provider has no "
                         "bfloat16 kernels for most operators (export --onnx in fp32 or int8)")
    if precision == "int8" and args.torch_export is not None:
        raise ValueError("--precision int8 is ONNX Runtime's quantisation: give --onnx FILE (and "
                         "--torch-export in fp32 or bf16)")
    if args.compile and args.torch_export is None:
        raise ValueError("--compile compiles the --torch-export program ahead of time (AOTInductor); "
                         "give --torch-export FILE (ONNX Runtime optimises an ONNX file when it loads it)")
    tolerance = args.tolerance if args.tolerance is not None else (1e-4 if precision == "fp32" else 0.05)
    image_size = image_size_arg(args.image_size, "--image-size")
    for flag, path in outputs:  # fail before the (slow) load and export
        if Path(path).exists() and not args.overwrite:
            raise ValueError(f"{flag} {path} already exists; pass --overwrite to replace it")
    dynamic = not args.static_batch
    batch_txt = "dynamic batch" if dynamic else f"fixed batch {args.batch_size}"

    model = load_model(args.checkpoint)
    model.require_streaming(f"exporting {args.checkpoint}")
    print(format_precision(precision, reason, args.compile), flush=True)
    exported = bf16_weights(model) if precision == "bf16" else model  # checked against the fp32 model
    h, w = model.config.image_hw if image_size is None else image_size
    ok = True
    try:
        checks = []
        if args.onnx is not None:
            start = time.perf_counter()
            onnx_export = export.export_step_onnx_int8 if precision == "int8" else export.export_step_onnx
            path = onnx_export(model, args.onnx, batch_size=args.batch_size, image_size=image_size,
                               opset=args.opset, dynamic_batch=dynamic, overwrite=args.overwrite)
            import onnx

            opset = max(o.version for o in onnx.load(str(path), load_external_data=False).opset_import
                        if o.domain in ("", "ai.onnx"))
            what = ", int8 matmuls (ONNX Runtime dynamic quantisation)" if precision == "int8" else ""
            print(f"exported {path} (ONNX opset {opset}, {batch_txt}, {h}x{w} frames{what}, "
                  f"{path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - start:.1f} s")
            if args.check_frames:
                checks.append(("onnxruntime", lambda: export.compare_onnx_step(
                    model, path, num_frames=args.check_frames, batch_size=args.batch_size)))
        if args.torch_export is not None:
            start = time.perf_counter()
            if args.compile:
                package = _aot_compile(export, exported, args.torch_export, batch_size=args.batch_size,
                                       image_size=image_size, dynamic=dynamic, overwrite=args.overwrite)
                kind = "AOTInductor package, torch._inductor.aoti_load_package"
                compare = lambda: export.compare_step(  # noqa: E731
                    model, package, num_frames=args.check_frames, batch_size=args.batch_size,
                    image_size=image_size)
            else:
                program = export.export_step_torch(exported, args.torch_export, batch_size=args.batch_size,
                                                   image_size=image_size, dynamic_batch=dynamic,
                                                   overwrite=args.overwrite)
                kind = "torch.export"
                compare = lambda: export.compare_exported_step(  # noqa: E731
                    model, program, num_frames=args.check_frames, batch_size=args.batch_size,
                    image_size=image_size)
            print(f"exported {args.torch_export} ({kind}, {batch_txt}, {h}x{w} frames, {precision}) "
                  f"in {time.perf_counter() - start:.1f} s")
            if args.check_frames:
                checks.append(("AOTInductor" if args.compile else "torch.export", compare))
        for name, run in checks:
            diffs = run()
            # fp32: every output; bf16 and int8 approximate the fp32 step, checked on the probabilities
            worst = max(diffs.values()) if precision == "fp32" else diffs["probs"]
            passed = worst <= tolerance  # a NaN output counts as inf
            ok &= passed
            detail = ", ".join(f"{k} {v:.1e}" for k, v in diffs.items())
            checked = "max abs diff" if precision == "fp32" else "max abs diff of probs"
            print(f"check: {'OK' if passed else 'FAILED'}: {name} vs PyTorch step on {args.check_frames} "
                  f"random frames (batch {args.batch_size}): {checked} {worst:.1e} ({detail}; "
                  f"tolerance {tolerance:g})")
    except ImportError as err:  # onnx / onnxscript / onnxruntime missing
        if args.verbose:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0 if ok else 1


def precision_list(text: str) -> list[str]:
    """``--precision`` of ``profile``: one or more of auto, fp32, bf16, int8 (or ``all``)."""
    from trecvit.tools.precision import PRECISIONS

    names = []
    for name in (v.strip() for v in text.split(",") if v.strip()):
        names += ["fp32", "bf16", "int8"] if name == "all" else [name]
    bad = [n for n in names if n not in PRECISIONS]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"expected comma-separated precisions out of "
                                         f"{', '.join(PRECISIONS)} (or all), got {text!r}")
    return names


def cmd_profile(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from trecvit.tools.machine import format_machine, machine_info, measure_matmul_rates
    from trecvit.tools.precision import format_precision, resolve_precision
    from trecvit.tools.profiling import (format_precision_table, format_table, measure_ceilings, plot_rows,
                                         precision_summary, profile_model)

    check_output(args.plot, "--plot", args.overwrite)
    check_output(args.json, "--json", args.overwrite)
    device = torch.device(args.device)
    chosen = []  # (precision, reason), each precision once, in the order asked
    for asked in (["bf16"] if args.bf16 else args.precision):
        precision, reason = resolve_precision(asked, device)
        if precision not in [p for p, _ in chosen]:
            chosen.append((precision, reason))
    bf16_mode = "autocast" if args.bf16 else "weights"
    info = machine_info(device)
    print("measuring this machine's fp32, bf16 and int8 matmul rates ...", file=sys.stderr, flush=True)
    rates = measure_matmul_rates(device)
    print(format_machine(info, rates), flush=True)
    ceilings = None
    if args.ceiling:
        print("measuring this machine's fp32 matmul rate (large) and copy bandwidth ...", file=sys.stderr)
        ceilings = measure_ceilings(device, quick=True)
    mode = "stream (per frame)" if args.stream else "full clip"
    name = f"{args.arch}-{args.variant}" if args.arch != "trecvit" else f"TRecViT-{args.variant}"
    progress = lambda msg: print(f"  running {msg} ...", file=sys.stderr, flush=True)  # noqa: E731
    int8_options = {"progress": lambda msg: print(f"  {msg}", file=sys.stderr, flush=True)}
    by_precision = {}
    try:
        for precision, reason in chosen:
            print(f"\n{format_precision(precision, reason, args.compile and precision != 'int8')}")
            rows = profile_model(args.variant, args.frame_counts, size=args.size, batch=args.batch,
                                 stream=args.stream, device=args.device, repeats=args.repeats,
                                 memory=not args.no_memory, compile=args.compile, progress=progress,
                                 arch=args.arch, precision=precision, bf16_mode=bf16_mode,
                                 int8_options=int8_options)
            print(f"{name} at {args.size} x {args.size}, batch {args.batch}, {mode}, {rows[0].precision}, "
                  f"on {device} ({torch.get_num_threads()} threads)", flush=True)
            if ceilings:
                print(f"fp32 matmul rate of this machine: {ceilings.matmul_gflops:.1f} GFLOP/s")
            print(format_table(rows, stream=args.stream, ceilings=ceilings))
            by_precision[precision] = rows
        summary = precision_summary(args.variant, chosen, frames=args.frame_counts[0], size=args.size,
                                    batch=args.batch, device=args.device, repeats=args.repeats,
                                    compile=args.compile, arch=args.arch, bf16_mode=bf16_mode,
                                    progress=progress, int8_options=int8_options)
    except ImportError as err:  # int8 without its extra
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"\nper precision: {name} at {args.size} x {args.size}, batch {args.batch}")
    print(format_precision_table(summary))
    rows = by_precision[chosen[0][0]]
    title = f"{name}, {args.size}x{args.size}, {mode}, {rows[0].precision}, {device}"
    if args.plot:
        plot_rows(rows, args.plot, title=title, stream=args.stream)
        print(f"plot: {args.plot}")
    if args.json:
        from trecvit.checkpoints.integrity import atomic_write

        payload = {"arch": args.arch, "variant": args.variant, "size": args.size, "batch": args.batch,
                   "stream": args.stream, "device": str(device), "rows": [asdict(r) for r in rows],
                   "ceilings": ceilings.to_dict() if ceilings else None,
                   "machine": info.to_dict(), "matmul_rates": rates.to_dict(),
                   "by_precision": {p: [asdict(r) for r in rs] for p, rs in by_precision.items()},
                   "precisions": [asdict(r) for r in summary]}
        atomic_write(Path(args.json), lambda tmp: tmp.write_text(json.dumps(payload, indent=2) + "\n"))
        print(f"json: {args.json}")
    return 0


def add_parsers(sub) -> None:
    """Add ``profile`` and ``export``."""
    from trecvit.architectures import ARCH_NAMES
    from trecvit.config import VARIANTS

    p = sub.add_parser("profile", help="parameters, GFLOPs, peak memory, latency and frames/s",
                       description="Profile a randomly initialised TRecViT variant: first the machine "
                                   "(CPU model, the ISA features found: AVX-512, VNNI, AVX-512 BF16, "
                                   "AMX; measured fp32, bf16 and int8 matmul rates), then for each "
                                   "--precision the parameters, GFLOPs (counted), peak memory (each "
                                   "run in a fresh process), latency (median of --repeats after a "
                                   "warm-up) and frames/s, for each clip length (--stream: of "
                                   "model.step, per frame), and last a table of every precision's "
                                   "latency and frames/s for the full clip and for step.")
    p.add_argument("--arch", choices=ARCH_NAMES, default="trecvit",
                   help="the architecture to profile, a name of the architecture table (default trecvit)")
    p.add_argument("--variant", choices=list(VARIANTS), default="B",
                   help="the model size to profile (default B)")
    p.add_argument("--frames", dest="frame_counts", type=positive_list, default=[8, 16, 32, 64],
                   metavar="N,N,...", help="clip lengths to profile, comma-separated (default 8,16,32,64)")
    p.add_argument("--size", type=int, default=224, help="side of the square frames in pixels (default 224)")
    p.add_argument("--batch", type=int, default=1, help="number of videos (or streams) per call (default 1)")
    p.add_argument("--stream", action="store_true",
                   help="profile model.step frame by frame instead of the full clip")
    p.add_argument("--repeats", type=int, default=3,
                   help="timed runs after the warm-up, of which the median is reported (default 3)")
    p.add_argument("--device", type=device_type, default="cpu",
                   help="the torch device to profile on, cpu or cuda (default cpu)")
    p.add_argument("--precision", type=precision_list, default=["auto"], metavar="P[,P...]",
                   help="the precisions to profile, comma-separated out of auto, fp32, bf16, int8, or "
                        "all (= fp32,bf16,int8); auto takes bf16 where the CPU has AMX or AVX-512 BF16 "
                        "(or the GPU supports it), else fp32, and says why; int8 needs "
                        'pip install "trecvit[int8]" (default auto)')
    p.add_argument("--bf16", action="store_true",
                   help="profile bfloat16 autocast only, as before --precision (default: off)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the model (or step) before timing it, once per input shape; "
                        "int8 is never compiled (default: eager)")
    p.add_argument("--no-memory", action="store_true",
                   help="skip the peak-memory runs (one fresh process each)")
    p.add_argument("--ceiling", action="store_true",
                   help="also measure the fp32 matmul rate and print GFLOP/s as a fraction of it")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="save a plot of cost against frames to this PNG file (default: no plot)")
    p.add_argument("--json", default=None, metavar="FILE",
                   help="save the table to this JSON file (default: not saved)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing --plot / --json files (default: refuse to)")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("export", help="export the streaming step (model.step) to ONNX / torch.export",
                       description="Export one streaming step of a TRecViT checkpoint (a frame and the "
                                   "state in, logits, probabilities and the new state out) to ONNX "
                                   "and/or a torch.export .pt2 program, then run the export on random "
                                   "frames and compare it with PyTorch's model.step (exit 1 if the "
                                   "outputs differ by more than --tolerance). ONNX needs the export "
                                   'extra: pip install "trecvit[export]".')
    p.add_argument("checkpoint", metavar="DIR",
                   help="folder from `trecvit convert` / save_pretrained, or an official .npz")
    p.add_argument("--onnx", default=None, metavar="FILE",
                   help="the ONNX file to write, e.g. step.onnx (default: none; give it and/or "
                        "--torch-export)")
    p.add_argument("--torch-export", default=None, metavar="FILE",
                   help="also (or instead) write a torch.export program to this .pt2 file, read back by "
                        "torch.export.load (default: none)")
    p.add_argument("--batch-size", type=int, default=1,
                   help="streams per call for the example inputs and the check (default 1); the "
                        "exported batch axis is dynamic unless --static-batch")
    p.add_argument("--static-batch", action="store_true",
                   help="fix the batch axis to --batch-size instead of making it dynamic")
    p.add_argument("--image-size", type=int, nargs="+", default=None, metavar="SIZE",
                   help="frame size, one int (square) or H W (default: the model's); fixed in the export")
    p.add_argument("--opset", type=int, default=None,
                   help="the ONNX opset to export to (default: the exporter's, 20 with torch 2.13)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing output files (default: refuse to)")
    p.add_argument("--check-frames", type=int, default=20, metavar="N",
                   help="random frames to run through the export and model.step for the check "
                        "(default 20; 0: no check)")
    p.add_argument("--tolerance", type=float, default=None,
                   help="largest max abs difference the check accepts: of every output in fp32, of the "
                        "probabilities in bf16 and int8, which approximate the fp32 step (default 1e-4 "
                        "in fp32, 0.05 in bf16 and int8)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "int8"], default="fp32",
                   help="number format of the export: fp32; int8 (--onnx only: the matmuls quantised to "
                        'int8 by ONNX Runtime, needs pip install "trecvit[int8]"); bf16 (--torch-export '
                        "only: bfloat16 weights, float32 state); auto: bf16 where this CPU has AMX or "
                        "AVX-512 BF16, else fp32 (default fp32: the file is meant to run anywhere)")
    p.add_argument("--compile", action="store_true",
                   help="with --torch-export, compile the step ahead of time with AOTInductor into the "
                        ".pt2 package, loaded with torch._inductor.aoti_load_package (default: a "
                        "torch.export program)")
    p.set_defaults(func=cmd_export)
