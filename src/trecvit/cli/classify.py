"""``trecvit classify``: top-k classes of videos, whole or frame by frame."""

from __future__ import annotations

import argparse
import json
import sys
import time

from trecvit.cli.common import device_type


def cmd_classify(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from trecvit.checkpoints.auto import model_folder, resolve_checkpoint
    from trecvit.classification import classify_video, load_labels, load_model
    from trecvit.classification.inference import classify_stream, clip_settings, format_top
    from trecvit.classification.labels import CLASSES_NAME
    from trecvit.tools.precision import format_precision, prepare_model

    checkpoint = resolve_checkpoint(args.checkpoint)
    model = load_model(checkpoint, device=args.device)
    try:
        model = prepare_model(model, args.precision, device=args.device, compile=args.compile,
                              int8_options={"progress": lambda msg: print(msg, file=sys.stderr, flush=True)})
    except ImportError as err:  # int8 without its extra
        print(f"error: {err}", file=sys.stderr)
        return 2
    folder = model_folder(checkpoint)
    labels_file = args.labels
    if labels_file is None and folder is not None and (folder / CLASSES_NAME).is_file():
        labels_file = folder / CLASSES_NAME  # written by trecvit train
    labels = load_labels(model.config.num_classes, labels_file)
    # the clip settings the model was trained with (its preprocessor_config.json), unless given
    clips = clip_settings(model, checkpoint)
    stride = clips.stride if args.stride is None else args.stride
    num_frames = args.frames or clips.num_frames
    print(format_precision(model.precision, model.reason, model.compiled), file=sys.stderr, flush=True)
    if model.compiled or model.precision == "int8":  # compile / export now, not inside the timings
        start = time.perf_counter()
        if args.stream:
            model.require_streaming("classify --stream (classify it as a whole instead)")
        model.warmup(clips.image_size, num_frames, stream=args.stream)
        print(f"{'compiled' if model.compiled else 'int8 step ready'} in {time.perf_counter() - start:.1f} s",
              file=sys.stderr, flush=True)
    failures = 0
    if args.stream:
        for path in args.videos:
            try:
                classify_stream(model, path, labels, top=args.top_k, stride=stride, offset=args.offset,
                                max_frames=args.frames, image_size=clips.image_size,
                                print_every=args.print_every, json_lines=args.json)
            except (FileNotFoundError, ValueError) as err:
                failures += 1
                print(f"error: {err}", file=sys.stderr)
        return 1 if failures else 0

    videos = tqdm(args.videos, desc="videos", unit="video", disable=len(args.videos) < 2, leave=False)
    for path in videos:
        try:
            pred = classify_video(model, path, labels, num_frames=num_frames,
                                  top=args.top_k, image_size=clips.image_size, sampling=args.sampling,
                                  stride=stride, offset=args.offset)
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


def add_parsers(sub) -> None:
    """Add ``classify``."""
    from trecvit.classification.inference import CHECKPOINT_ENV
    from trecvit.tools.precision import add_precision_arguments

    p = sub.add_parser("classify", help="top-k classes of videos, whole or streamed frame by frame",
                       description="Classify video files with a TRecViT checkpoint. Without --stream, "
                                   "each video is sampled uniformly (--frames frames) and classified "
                                   "as a whole; with --stream, frames are decoded one at a time and "
                                   "run through model.step, printing the running top-1.")
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files (anything FFmpeg reads)")
    p.add_argument("--checkpoint", default=None, metavar="PATH",
                   help=f"folder from `trecvit convert` / save_pretrained, or an official .npz "
                        f"(default: ${CHECKPOINT_ENV})")
    p.add_argument("--top-k", type=int, default=5,
                   help="how many of the most probable classes to print (default 5)")
    p.add_argument("--labels", default=None, metavar="FILE",
                   help="class names, one per line in class order (default: the checkpoint folder's "
                        "classes.txt, written by trecvit train; else the bundled Kinetics-400 names "
                        "for 400-class models, else class indices)")
    p.add_argument("--frames", type=int, default=None,
                   help="frames to sample (default: the frames per clip the model was trained with, from "
                        "its preprocessor_config.json, else its frames_per_clip, 32 for the official "
                        "model); with --stream, the most frames to stream (default: all)")
    p.add_argument("--sampling", choices=["uniform", "stride"], default="uniform",
                   help="how a whole video is sampled: uniform spreads the frames over the video, stride "
                        "takes every --stride-th frame from --offset (default uniform)")
    p.add_argument("--stride", type=int, default=None,
                   help="take every N-th frame, for stride sampling and --stream (default: the stride the "
                        "model was trained with, from its preprocessor_config.json, else 1)")
    p.add_argument("--offset", type=int, default=0,
                   help="index of the first frame, for stride sampling and --stream (default 0)")
    p.add_argument("--stream", action="store_true",
                   help="run frame by frame through model.step and print the running top-1 and "
                        "frames per second")
    p.add_argument("--print-every", type=int, default=1, metavar="N",
                   help="with --stream, print the running top-1 every N frames (default 1)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object per result (per video, or per frame with --stream) "
                        "instead of text")
    p.add_argument("--device", type=device_type, default="cpu",
                   help="the torch device to run on, e.g. cpu or cuda (default cpu)")
    add_precision_arguments(p, what="the model (whole videos and --stream)")
    p.set_defaults(func=cmd_classify)
