"""The ``trecvit`` command line: ``convert``, ``classify``, ``verify``, ``profile``, ``export``, and
(in :mod:`trecvit.cli_train`) ``train``, ``evaluate``, ``demo``, ``synthetic``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch


# ----------------------------------------------------------------------------
# convert
# ----------------------------------------------------------------------------
def cmd_convert(args: argparse.Namespace) -> int:
    from trecvit.config import TRecViTConfig
    from trecvit.convert import infer_config, model_from_official_params, read_npz
    from trecvit.model import TRecViT
    from trecvit.pretrained import CONFIG_NAME, WEIGHTS_NAME

    out_dir = Path(args.out_dir)
    if (out_dir / WEIGHTS_NAME).exists() and not args.overwrite:
        raise ValueError(f"{out_dir / WEIGHTS_NAME} already exists; pass --overwrite to replace it")
    params = read_npz(args.checkpoint)
    overrides = {}
    if args.frames_per_clip is not None:
        overrides["frames_per_clip"] = args.frames_per_clip
    if args.image_size is not None:
        overrides["image_size"] = tuple(args.image_size) if len(args.image_size) == 2 else args.image_size[0]
    config = infer_config({k: v.shape for k, v in params.items()}, **overrides)
    if args.variant is not None:
        # The variant fixes the trunk; the file still says how many classes etc.
        variant = TRecViTConfig.from_variant(args.variant)
        config = config.replace(width=variant.width, depth=variant.depth, mlp_dim=variant.mlp_dim,
                                num_heads=variant.num_heads, lru_width=2 * variant.width)
    model = model_from_official_params(params, config, source=args.checkpoint).eval()
    del params
    model.save_pretrained(out_dir)
    print(f"converted {args.checkpoint} -> {out_dir}/{{{CONFIG_NAME},{WEIGHTS_NAME}}}")
    print(f"parameters: {model.num_parameters():,} (width {config.width}, depth {config.depth}, "
          f"heads {config.num_heads}, {config.num_classes} classes, {config.image_hw[0]}x"
          f"{config.image_hw[1]}, {config.frames_per_clip} frames per clip)")
    # One-line check: the saved folder reloads and gives the same output on a test clip.
    reloaded = TRecViT.from_pretrained(out_dir).eval()
    torch.manual_seed(0)
    clip = torch.rand(1, 2, 3, *config.image_hw)
    with torch.inference_mode():
        a, b = model(clip).logits, reloaded(clip).logits
    diff = float((a - b).abs().max())
    ok = diff == 0.0 and bool(torch.isfinite(a).all())
    print(f"check: {'OK' if ok else 'FAILED'}: reloaded {out_dir} gives finite logits identical to "
          f"the converted model on a 2-frame test clip (max abs diff {diff:.1e})")
    return 0 if ok else 1


# ----------------------------------------------------------------------------
# classify
# ----------------------------------------------------------------------------
def _format_top(top: list[tuple[int, str, float]]) -> str:
    return "\n".join(f"  {rank:>2}. {name:<40s} {prob:7.2%}  (class {index})"
                     for rank, (index, name, prob) in enumerate(top, 1))


def cmd_classify(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from trecvit.inference import classify_video, load_labels, load_model

    model = load_model(args.checkpoint, device=args.device)
    labels_file = args.labels
    if labels_file is None and args.checkpoint and (Path(args.checkpoint) / "classes.txt").is_file():
        labels_file = Path(args.checkpoint) / "classes.txt"  # written by trecvit train
    labels = load_labels(model.config.num_classes, labels_file)
    failures = 0
    if args.stream:
        for path in args.videos:
            try:
                _classify_stream(model, path, labels, args)
            except (FileNotFoundError, ValueError) as err:
                failures += 1
                print(f"error: {err}", file=sys.stderr)
        return 1 if failures else 0

    videos = tqdm(args.videos, desc="videos", unit="video", disable=len(args.videos) < 2, leave=False)
    for path in videos:
        try:
            pred = classify_video(model, path, labels, num_frames=args.frames, top=args.top_k,
                                  sampling=args.sampling, stride=args.stride, offset=args.offset)
        except (FileNotFoundError, ValueError) as err:  # report, then go on with the others
            failures += 1
            tqdm.write(f"error: {err}", file=sys.stderr)
            continue
        if args.json:
            tqdm.write(json.dumps(pred.to_dict()))
        else:
            tqdm.write(f"{path} ({pred.num_frames} frames, {pred.num_frames / pred.seconds:.1f} "
                       f"frames/s)\n{_format_top(pred.top)}")
    return 1 if failures else 0


def _classify_stream(model, path: str, labels: list[str], args: argparse.Namespace) -> None:
    from trecvit.inference import stream_video

    start = time.perf_counter()
    step_seconds = 0.0
    update = None
    for update in stream_video(model, path, labels, top=args.top_k, stride=args.stride,
                               offset=args.offset, max_frames=args.frames):
        step_seconds += update.step_seconds
        n = update.frame + 1
        if args.json:
            print(json.dumps({"video": path, "frame": update.frame, "index": update.top[0][0],
                              "label": update.top[0][1], "prob": round(update.top[0][2], 6)}))
        elif n % args.print_every == 0:
            print(f"{path} frame {update.frame:5d}  top-1: {update.top[0][1]} "
                  f"({update.top[0][2]:.1%})  {n / step_seconds:6.1f} frames/s")
    if update is None:
        raise ValueError(f"{path}: no frames to stream (offset {args.offset} beyond the end?)")
    n = update.frame + 1
    wall = time.perf_counter() - start
    if not args.json:
        print(f"{path}: after {n} frames (streamed)\n{_format_top(update.top)}")
        print(f"{n} frames: {n / step_seconds:.1f} frames/s in model.step, "
              f"{n / wall:.1f} frames/s with decoding")


# ----------------------------------------------------------------------------
# verify
# ----------------------------------------------------------------------------
def cmd_verify(args: argparse.Namespace) -> int:
    from trecvit.inference import classify_video, load_labels, load_model
    from trecvit.verify import run_checks

    model = load_model(args.checkpoint) if args.checkpoint else None
    failed = 0
    print(f"trecvit verify (torch {torch.__version__}, {torch.get_num_threads()} threads)")
    for check in run_checks(model, variant=args.variant):
        failed += not check.passed
        print(f"  {'PASS' if check.passed else 'FAIL'}  {check.name:<34s} {check.detail}", flush=True)
    if model is not None:
        from trecvit.assets import example_video

        labels = load_labels(model.config.num_classes)
        pred = classify_video(model, example_video(), labels)
        print(f"demo clip with {args.checkpoint}:\n{_format_top(pred.top)}")
    else:
        print(f"  (demo clip timed with a randomly initialised TRecViT-{args.variant}; "
              "pass --checkpoint to classify it with real weights)")
    print("all checks passed" if not failed else f"{failed} check(s) FAILED")
    return 1 if failed else 0


# ----------------------------------------------------------------------------
# export
# ----------------------------------------------------------------------------
def cmd_export(args: argparse.Namespace) -> int:
    from trecvit import export
    from trecvit.inference import load_model

    outputs = [(flag, path) for flag, path in (("--onnx", args.onnx), ("--torch-export", args.torch_export))
               if path is not None]
    if not outputs:
        raise ValueError("nothing to export: give --onnx FILE and/or --torch-export FILE")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.check_frames < 0:
        raise ValueError(f"--check-frames must be >= 0 (0: no check), got {args.check_frames}")
    if args.image_size is not None and len(args.image_size) > 2:
        raise ValueError(f"--image-size takes one int or H W, got {len(args.image_size)} values")
    for flag, path in outputs:  # fail before the (slow) load and export
        if Path(path).exists() and not args.overwrite:
            raise ValueError(f"{flag} {path} already exists; pass --overwrite to replace it")
    image_size = None if args.image_size is None else (
        args.image_size[0] if len(args.image_size) == 1 else tuple(args.image_size))
    dynamic = not args.static_batch
    batch_txt = "dynamic batch" if dynamic else f"fixed batch {args.batch_size}"

    model = load_model(args.checkpoint)
    h, w = model.config.image_hw if image_size is None else (
        image_size if isinstance(image_size, tuple) else (image_size, image_size))
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


# ----------------------------------------------------------------------------
# profile
# ----------------------------------------------------------------------------
def _positive_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated frame counts like 8,16,32, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"frame counts must be >= 1, got {text!r}")
    return values


def _device(text: str) -> str:
    """``--device``: a torch device string this installation can use."""
    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"not a torch device: {text!r} (try cpu or cuda)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: this PyTorch has no usable CUDA GPU (use cpu)")
    return text


def _check_output(path: str | None, flag: str, overwrite: bool) -> None:
    """Refuse, before any work, an output file that cannot be written or would replace one."""
    if path is None:
        return
    target = Path(path)
    if not target.parent.is_dir():
        raise ValueError(f"{flag} {path}: folder {target.parent} does not exist")
    if target.exists() and not overwrite:
        raise ValueError(f"{flag} {path} exists; pass --overwrite to replace it")


def cmd_profile(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from trecvit.profiling import format_table, measure_ceilings, plot_rows, profile_model

    _check_output(args.plot, "--plot", args.overwrite)
    _check_output(args.json, "--json", args.overwrite)
    device = torch.device(args.device)
    ceilings = None
    if args.ceiling:
        print("measuring this machine's fp32 matmul rate ...", file=sys.stderr)
        ceilings = measure_ceilings(device, quick=True)
    mode = "stream (per frame)" if args.stream else "full clip"
    print(f"TRecViT-{args.variant} at {args.size} x {args.size}, batch {args.batch}, {mode}, "
          f"{'bfloat16 autocast' if args.bf16 else 'float32'}{', compiled' if args.compile else ''}, "
          f"on {device} ({torch.get_num_threads()} threads)", flush=True)
    rows = profile_model(args.variant, args.frame_counts, size=args.size, batch=args.batch,
                         stream=args.stream, device=args.device, repeats=args.repeats,
                         memory=not args.no_memory, amp=args.bf16, compile=args.compile,
                         progress=lambda msg: print(f"  running {msg} ...", file=sys.stderr, flush=True))
    if ceilings:
        print(f"fp32 matmul rate of this machine: {ceilings.matmul_gflops:.1f} GFLOP/s")
    print(format_table(rows, stream=args.stream, ceilings=ceilings))
    title = f"TRecViT-{args.variant}, {args.size}x{args.size}, {mode}, {device}"
    if args.plot:
        plot_rows(rows, args.plot, title=title, stream=args.stream)
        print(f"plot: {args.plot}")
    if args.json:
        from trecvit.integrity import atomic_write

        payload = {"variant": args.variant, "size": args.size, "batch": args.batch,
                   "stream": args.stream, "device": str(device), "rows": [asdict(r) for r in rows],
                   "ceilings": ceilings.to_dict() if ceilings else None}
        atomic_write(Path(args.json), lambda tmp: tmp.write_text(json.dumps(payload, indent=2) + "\n"))
        print(f"json: {args.json}")
    return 0


# ----------------------------------------------------------------------------
# parser
# ----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from trecvit import __version__
    from trecvit.config import VARIANTS
    from trecvit.inference import CHECKPOINT_ENV

    parser = argparse.ArgumentParser(
        prog="trecvit",
        description="TRecViT, a causal recurrent video transformer: convert the official checkpoint, "
                    "classify videos (whole or frame by frame), verify the installation, profile and "
                    "export the model, train and evaluate classifiers, and run the training demo.")
    parser.add_argument("--version", action="version", version=f"trecvit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("convert", help="official .npz checkpoint -> config.json + model.safetensors",
                       description="Convert an official TRecViT checkpoint (JAX .npz, e.g. "
                                   "trecvit_B_k400.npz) to a folder with config.json and "
                                   "model.safetensors. Every array is checked; nothing is unpickled.")
    p.add_argument("checkpoint", metavar="OFFICIAL.npz", help="the official checkpoint file")
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder to write (created if needed)")
    p.add_argument("--variant", choices=list(VARIANTS), default=None,
                   help="expected ViT size (e.g. B); refuse a checkpoint of another size "
                        "(default: read the size off the arrays)")
    p.add_argument("--frames-per-clip", type=int, default=None,
                   help="clip length the model splits videos into (not stored in the checkpoint; "
                        "default 32, the official value)")
    p.add_argument("--image-size", type=int, nargs="+", default=None, metavar="SIZE",
                   help="frame size: one int (square) or H W (default: read off the learnt "
                        "position embedding; 224 for the official model)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing model.safetensors in OUT_DIR")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("classify", help="top-k classes of videos, whole or streamed frame by frame",
                       description="Classify video files with a TRecViT checkpoint. Without --stream, "
                                   "each video is sampled uniformly (--frames frames) and classified "
                                   "as a whole; with --stream, frames are decoded one at a time and "
                                   "run through model.step, printing the running top-1.")
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files (anything FFmpeg reads)")
    p.add_argument("--checkpoint", default=None, metavar="PATH",
                   help=f"folder from `trecvit convert` / save_pretrained, or an official .npz "
                        f"(default: ${CHECKPOINT_ENV})")
    p.add_argument("--top-k", type=int, default=5, help="classes to print (default 5)")
    p.add_argument("--labels", default=None, metavar="FILE",
                   help="class names, one per line in class order (default: the checkpoint folder's "
                        "classes.txt, written by trecvit train; else the bundled Kinetics-400 names "
                        "for 400-class models, else class indices)")
    p.add_argument("--frames", type=int, default=None,
                   help="frames to sample (default: the model's frames_per_clip, 32); with --stream, "
                        "the most frames to stream (default: all)")
    p.add_argument("--sampling", choices=["uniform", "stride"], default="uniform",
                   help="whole-video sampling: spread over the video (uniform, default) or every "
                        "--stride-th frame from --offset")
    p.add_argument("--stride", type=int, default=1, help="frame stride (stride sampling and --stream)")
    p.add_argument("--offset", type=int, default=0, help="first frame (stride sampling and --stream)")
    p.add_argument("--stream", action="store_true",
                   help="run frame by frame through model.step and print the running top-1 and "
                        "frames per second")
    p.add_argument("--print-every", type=int, default=1, metavar="N",
                   help="with --stream, print the running top-1 every N frames (default 1)")
    p.add_argument("--json", action="store_true", help="print one JSON object per result")
    p.add_argument("--device", type=_device, default="cpu",
                   help="torch device, e.g. cpu or cuda (default cpu)")
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("verify", help="check this installation reproduces the official model",
                       description="Run the official model's reference outputs (shipped with the "
                                   "package) through this implementation, check streaming equals "
                                   "the full clip, decode and time the official demo clip. Exits "
                                   "non-zero if any check fails.")
    p.add_argument("--checkpoint", default=None, metavar="PATH",
                   help="also classify the demo clip with this checkpoint (folder or official .npz)")
    p.add_argument("--variant", choices=list(VARIANTS), default="S",
                   help="size of the randomly initialised model timed on the demo clip when no "
                        "--checkpoint is given (default S)")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("profile", help="parameters, GFLOPs, peak memory, latency and frames/s",
                       description="Profile a randomly initialised TRecViT variant: parameters, "
                                   "GFLOPs (counted), peak memory (each run in a fresh process), "
                                   "latency (median of --repeats after a warm-up) and frames/s, "
                                   "for each clip length; --stream profiles model.step instead "
                                   "(per-frame figures for a stream of that many frames).")
    p.add_argument("--variant", choices=list(VARIANTS), default="B", help="model size (default B)")
    p.add_argument("--frames", dest="frame_counts", type=_positive_list, default=[8, 16, 32, 64],
                   metavar="N,N,...", help="clip lengths, comma-separated (default 8,16,32,64)")
    p.add_argument("--size", type=int, default=224, help="frame height = width (default 224)")
    p.add_argument("--batch", type=int, default=1, help="videos or streams per call (default 1)")
    p.add_argument("--stream", action="store_true", help="profile model.step frame by frame")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats (default 3)")
    p.add_argument("--device", type=_device, default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (or step) first")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    p.add_argument("--ceiling", action="store_true",
                   help="also measure the fp32 matmul rate and print GFLOP/s as a fraction of it")
    p.add_argument("--plot", default=None, metavar="PNG", help="save a plot of cost against frames")
    p.add_argument("--json", default=None, metavar="FILE", help="save the table as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace existing --plot / --json files")
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
    p.add_argument("--onnx", default=None, metavar="FILE", help="ONNX file to write (e.g. step.onnx)")
    p.add_argument("--torch-export", default=None, metavar="FILE",
                   help="also (or instead) write a torch.export program (.pt2, torch.export.load)")
    p.add_argument("--batch-size", type=int, default=1,
                   help="streams per call for the example inputs and the check (default 1); the "
                        "exported batch axis is dynamic unless --static-batch")
    p.add_argument("--static-batch", action="store_true",
                   help="fix the batch axis to --batch-size instead of making it dynamic")
    p.add_argument("--image-size", type=int, nargs="+", default=None, metavar="SIZE",
                   help="frame size, one int (square) or H W (default: the model's); fixed in the export")
    p.add_argument("--opset", type=int, default=None,
                   help="ONNX opset (default: the exporter's, 20 with torch 2.13)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--check-frames", type=int, default=20, metavar="N",
                   help="random frames to run through the export and model.step for the check "
                        "(default 20; 0: no check)")
    p.add_argument("--tolerance", type=float, default=1e-4,
                   help="largest max abs difference the check accepts (default 1e-4)")
    p.set_defaults(func=cmd_export)

    from trecvit.cli_train import add_parsers

    add_parsers(sub, _device)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    for name in ("top_k", "frames", "stride", "print_every", "frames_per_clip", "size", "batch",
                 "repeats"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.command == "convert" and args.image_size is not None and len(args.image_size) > 2:
        parser.error(f"--image-size takes one int or H W, got {len(args.image_size)} values")
    if getattr(args, "offset", 0) < 0:
        parser.error(f"--offset must be >= 0, got {args.offset}")
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError) as err:
        if args.verbose:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
