"""``trecvit profile`` and ``trecvit export``: cost of a model, and its streaming step exported."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from trecvit.cli.common import check_output, device_type, image_size_arg, positive_list


def cmd_export(args: argparse.Namespace) -> int:
    from trecvit.checkpoints.auto import load_model
    from trecvit.tools import export

    outputs = [(flag, path) for flag, path in (("--onnx", args.onnx), ("--torch-export", args.torch_export))
               if path is not None]
    if not outputs:
        raise ValueError("nothing to export: give --onnx FILE and/or --torch-export FILE")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.check_frames < 0:
        raise ValueError(f"--check-frames must be >= 0 (0: no check), got {args.check_frames}")
    image_size = image_size_arg(args.image_size, "--image-size")
    for flag, path in outputs:  # fail before the (slow) load and export
        if Path(path).exists() and not args.overwrite:
            raise ValueError(f"{flag} {path} already exists; pass --overwrite to replace it")
    dynamic = not args.static_batch
    batch_txt = "dynamic batch" if dynamic else f"fixed batch {args.batch_size}"

    model = load_model(args.checkpoint)
    model.require_streaming(f"exporting {args.checkpoint}")
    h, w = model.config.image_hw if image_size is None else image_size
    ok = True
    try:
        checks = []
        if args.onnx is not None:
            start = time.perf_counter()
            path = export.export_step_onnx(model, args.onnx, batch_size=args.batch_size,
                                           image_size=image_size,
                                           opset=args.opset, dynamic_batch=dynamic, overwrite=args.overwrite)
            import onnx

            opset = max(o.version for o in onnx.load(str(path), load_external_data=False).opset_import
                        if o.domain in ("", "ai.onnx"))
            print(f"exported {path} (ONNX opset {opset}, {batch_txt}, {h}x{w} frames, "
                  f"{path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - start:.1f} s")
            if args.check_frames:
                checks.append(("onnxruntime", lambda: export.compare_onnx_step(
                    model, path, num_frames=args.check_frames, batch_size=args.batch_size)))
        if args.torch_export is not None:
            start = time.perf_counter()
            program = export.export_step_torch(model, args.torch_export, batch_size=args.batch_size,
                                               image_size=image_size, dynamic_batch=dynamic,
                                               overwrite=args.overwrite)
            print(f"exported {args.torch_export} (torch.export, {batch_txt}, {h}x{w} frames) "
                  f"in {time.perf_counter() - start:.1f} s")
            if args.check_frames:
                checks.append(("torch.export", lambda: export.compare_exported_step(
                    model, program, num_frames=args.check_frames, batch_size=args.batch_size,
                    image_size=image_size)))
        for name, run in checks:
            diffs = run()
            worst = max(diffs.values())
            passed = worst <= args.tolerance  # a NaN output counts as inf
            ok &= passed
            detail = ", ".join(f"{k} {v:.1e}" for k, v in diffs.items())
            print(f"check: {'OK' if passed else 'FAILED'}: {name} vs PyTorch step on {args.check_frames} "
                  f"random frames (batch {args.batch_size}): max abs diff {worst:.1e} ({detail}; "
                  f"tolerance {args.tolerance:g})")
    except ImportError as err:  # onnx / onnxscript / onnxruntime missing
        if args.verbose:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0 if ok else 1


def cmd_profile(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from trecvit.tools.profiling import format_table, measure_ceilings, plot_rows, profile_model

    check_output(args.plot, "--plot", args.overwrite)
    check_output(args.json, "--json", args.overwrite)
    device = torch.device(args.device)
    ceilings = None
    if args.ceiling:
        print("measuring this machine's fp32 matmul rate ...", file=sys.stderr)
        ceilings = measure_ceilings(device, quick=True)
    mode = "stream (per frame)" if args.stream else "full clip"
    name = f"{args.arch}-{args.variant}" if args.arch != "trecvit" else f"TRecViT-{args.variant}"
    print(f"{name} at {args.size} x {args.size}, batch {args.batch}, {mode}, "
          f"{'bfloat16 autocast' if args.bf16 else 'float32'}{', compiled' if args.compile else ''}, "
          f"on {device} ({torch.get_num_threads()} threads)", flush=True)
    rows = profile_model(args.variant, args.frame_counts, size=args.size, batch=args.batch,
                         stream=args.stream, device=args.device, repeats=args.repeats,
                         memory=not args.no_memory, amp=args.bf16, compile=args.compile,
                         progress=lambda msg: print(f"  running {msg} ...", file=sys.stderr, flush=True),
                         arch=args.arch)
    if ceilings:
        print(f"fp32 matmul rate of this machine: {ceilings.matmul_gflops:.1f} GFLOP/s")
    print(format_table(rows, stream=args.stream, ceilings=ceilings))
    title = f"{name}, {args.size}x{args.size}, {mode}, {device}"
    if args.plot:
        plot_rows(rows, args.plot, title=title, stream=args.stream)
        print(f"plot: {args.plot}")
    if args.json:
        from trecvit.checkpoints.integrity import atomic_write

        payload = {"arch": args.arch, "variant": args.variant, "size": args.size, "batch": args.batch,
                   "stream": args.stream, "device": str(device), "rows": [asdict(r) for r in rows],
                   "ceilings": ceilings.to_dict() if ceilings else None}
        atomic_write(Path(args.json), lambda tmp: tmp.write_text(json.dumps(payload, indent=2) + "\n"))
        print(f"json: {args.json}")
    return 0


def add_parsers(sub) -> None:
    """Add ``profile`` and ``export``."""
    from trecvit.architectures import ARCH_NAMES
    from trecvit.config import VARIANTS

    p = sub.add_parser("profile", help="parameters, GFLOPs, peak memory, latency and frames/s",
                       description="Profile a randomly initialised TRecViT variant: parameters, "
                                   "GFLOPs (counted), peak memory (each run in a fresh process), "
                                   "latency (median of --repeats after a warm-up) and frames/s, "
                                   "for each clip length; --stream profiles model.step instead "
                                   "(per-frame figures for a stream of that many frames).")
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
    p.add_argument("--bf16", action="store_true", help="run under bfloat16 autocast (default: float32)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the model (or step) before timing it")
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
    p.add_argument("--tolerance", type=float, default=1e-4,
                   help="largest max abs difference the check accepts (default 1e-4)")
    p.set_defaults(func=cmd_export)
