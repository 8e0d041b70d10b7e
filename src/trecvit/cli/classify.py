"""``trecvit classify``: top-k classes of videos, whole or frame by frame."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


from trecvit.cli.common import device_type, format_top


def cmd_classify(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from trecvit.classification import classify_video, load_labels, load_model

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
                       f"frames/s)\n{format_top(pred.top)}")
    return 1 if failures else 0


def _classify_stream(model, path: str, labels: list[str], args: argparse.Namespace) -> None:
    from trecvit.classification.inference import stream_video

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
        print(f"{path}: after {n} frames (streamed)\n{format_top(update.top)}")
        print(f"{n} frames: {n / step_seconds:.1f} frames/s in model.step, "
              f"{n / wall:.1f} frames/s with decoding")



def add_parsers(sub) -> None:
    """Add ``classify``."""
    from trecvit.classification.inference import CHECKPOINT_ENV

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
    p.add_argument("--device", type=device_type, default="cpu",
                   help="torch device, e.g. cpu or cuda (default cpu)")
    p.set_defaults(func=cmd_classify)
