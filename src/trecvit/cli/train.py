"""``trecvit train`` and ``trecvit evaluate``: training and evaluating video classifiers."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from trecvit.cli.common import device_type, image_size_arg

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------
# train
# ----------------------------------------------------------------------------
def run_config(args: argparse.Namespace, config_class: type, trainer_class: type):
    """Build ``config_class`` from the options (over ``--config``, or over the run's own saved
    ``config.yaml`` for ``--resume`` without ``--config``) and fit ``trainer_class`` on it.
    Returns ``(config, result)``, or ``(config, None)`` when the run stopped on an error it
    reported (the checkpoints are intact)."""
    from trecvit.data.workers import WorkerFailedError
    from trecvit.training import NonFiniteLossError
    from trecvit.training.checkpoint import latest_checkpoint
    from trecvit.training.config import config_from_args

    base = None
    if args.config is None and args.resume:
        # `trecvit train --resume --out-dir RUN`: the run's own resolved config
        out_dir = Path(getattr(args, "out_dir", config_class().out_dir))
        saved = out_dir / "config.yaml"
        if not saved.is_file():
            raise FileNotFoundError(f"--resume: {saved} does not exist; give --out-dir of an earlier "
                                    "run (or --config to start one)")
        base = config_class.from_yaml(saved)
    cfg = config_from_args(args, base, config_class)
    try:
        return cfg, trainer_class(cfg, resume=args.resume).fit()
    # a full disk while writing a checkpoint, a data-loader worker killed while decoding a video, ...
    except (NonFiniteLossError, WorkerFailedError, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        print(f"error: {err}", file=sys.stderr)
        last = latest_checkpoint(Path(cfg.out_dir) / "checkpoints")
        if last is not None:
            print(f"the checkpoints are intact (newest: {last}); continue with `trecvit {args.command} "
                  f"--resume --out-dir {cfg.out_dir}`", file=sys.stderr)
        return cfg, None


def cmd_train(args: argparse.Namespace) -> int:
    from trecvit.training import Trainer
    from trecvit.training.config import TrainConfig

    _, result = run_config(args, TrainConfig, Trainer)
    if result is None:
        return 1
    if result.final_eval is not None:
        ev = result.final_eval
        print(f"done: {result.steps} steps in {result.seconds / 60:.1f} min; held-out top-1 "
              f"{100 * ev.top1:.2f}%, top-5 {100 * ev.top5:.2f}% on {ev.num_videos} videos"
              + (f" ({ev.num_failed} unreadable, skipped)" if ev.num_failed else ""))
    if result.model_dir is not None:
        print(f"model: {result.model_dir}  (trecvit classify VIDEO --checkpoint {result.model_dir})")
    return 0


def add_run_options(p: argparse.ArgumentParser, command: str) -> None:
    """``--config`` and ``--resume``, the options of a run besides its config fields."""
    p.add_argument("--config", default=None, metavar="YAML",
                   help="a YAML file of run options, applied over the defaults and under the "
                        "command-line options (default: none)")
    p.add_argument("--resume", action="store_true",
                   help=f"continue the run in --out-dir from its newest complete checkpoint (with its "
                        f"saved config.yaml when no --config is given; `trecvit {command} --resume "
                        f"--out-dir RUN`)")


# ----------------------------------------------------------------------------
# evaluate
# ----------------------------------------------------------------------------
def cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from trecvit.checkpoints.auto import model_folder, resolve_checkpoint
    from trecvit.classification.inference import clip_settings, load_model
    from trecvit.classification.labels import CLASSES_NAME
    from trecvit.data.datasets import build_dataset
    from trecvit.training import evaluate
    from trecvit.training.data import read_class_names
    from trecvit.training.metrics import per_class_table
    from trecvit.tools.precision import format_precision, prepare_model

    checkpoint = resolve_checkpoint(args.checkpoint)
    image_size = image_size_arg(args.image_size, "--image-size")  # before the (slow) load
    if args.bf16 and args.precision not in ("auto", "bf16"):
        raise ValueError(f"--bf16 asks for bfloat16 but --precision is {args.precision}; give one of them")
    model = load_model(checkpoint, device=args.device)
    cfg = model.config
    try:  # --bf16 (older scripts): bfloat16 autocast, as before --precision
        runner = prepare_model(model, "bf16" if args.bf16 else args.precision, device=args.device,
                               compile=args.compile, bf16_mode="autocast" if args.bf16 else "weights",
                               int8_options={"progress": lambda msg: print(msg, file=sys.stderr, flush=True)})
    except ImportError as err:  # int8 without its extra
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_precision(runner.precision, runner.reason, runner.compiled), file=sys.stderr, flush=True)
    folder = model_folder(checkpoint)
    classes_file = folder / CLASSES_NAME if folder is not None else None
    classes = read_class_names(str(classes_file)) if classes_file and classes_file.is_file() else None
    labels = args.labels
    if args.data == "csv" and labels:
        classes, labels = read_class_names(labels), None
    # the clip settings the model was trained with (its preprocessor_config.json), unless given
    clips = clip_settings(model, checkpoint)
    dataset = build_dataset(args.data, args.val_data, video_root=args.video_root, labels=labels,
                            classes=classes, train=False, views=args.views,
                            num_frames=args.num_frames or clips.num_frames,
                            stride=args.stride or clips.stride, image_size=image_size or clips.image_size,
                            decode_threads=args.decode_threads)
    if dataset.num_classes != cfg.num_classes:
        raise ValueError(f"the data has {dataset.num_classes} classes but the model {cfg.num_classes}; "
                         "pass the class list the model was trained with (classes.txt in the "
                         "checkpoint folder, or --labels)")
    result = evaluate(runner, dataset, device=torch.device(args.device), batch_size=args.batch_size,
                      num_workers=args.num_workers, progress=True)
    names = list(dataset.classes)
    if args.json:
        print(json.dumps({"precision": runner.describe(), "top1": result.top1, "top5": result.top5,
                          "loss": result.loss, "videos": result.num_videos, "failed": result.num_failed,
                          "per_class": [{"class": names[c], "videos": n, "top1": a}
                                        for c, n, a in result.per_class]}))
    else:
        print(f"{result.num_videos} videos, {args.views} views: top-1 {100 * result.top1:.2f}%, "
              f"top-5 {100 * result.top5:.2f}%, loss {result.loss:.4f}"
              + (f"; {result.num_failed} unreadable, skipped" if result.num_failed else ""))
        print(per_class_table(result, names))
    return 0


# ----------------------------------------------------------------------------
# parsers
# ----------------------------------------------------------------------------
def add_parsers(sub) -> None:
    """Add ``train`` and ``evaluate`` to the ``trecvit`` sub-parsers."""
    from trecvit.tools.precision import add_precision_arguments
    from trecvit.training.config import DATA_FORMATS, add_config_arguments

    p = sub.add_parser(
        "train", help="train or fine-tune a video classifier",
        description="Train TRecViT (or the frame-average baseline) on video classification. Options "
                    "come from the defaults, then --config FILE.yaml, then the command line. Run "
                    "under torchrun for several processes (DDP). The run folder gets config.yaml, "
                    "metrics.csv, TensorBoard events, checkpoints/, curves.png, per_class.csv and the "
                    "final model/ (a save_pretrained folder).")
    add_run_options(p, "train")
    add_config_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "evaluate", help="video-level accuracy of a checkpoint, with multi-view testing",
        description="Evaluate a trained model on a labelled video set: each video is cut into "
                    "--views temporal clips x spatial crops whose scores are averaged.")
    p.add_argument("--checkpoint", required=True, metavar="DIR",
                   help="the model to evaluate: a save_pretrained folder (e.g. RUN/model) or an official "
                        ".npz (required)")
    p.add_argument("--data", choices=[f for f in DATA_FORMATS if f != "synthetic"], required=True,
                   help="the dataset format of --val-data (required)")
    p.add_argument("--val-data", required=True, metavar="PATH",
                   help="the folder (folder), CSV (csv, kinetics) or JSON (ssv2) of the videos to evaluate "
                        "(required)")
    p.add_argument("--video-root", default=None,
                   help="where the videos are, for csv, kinetics and ssv2 (default: none)")
    p.add_argument("--labels", default=None,
                   help="SSv2 labels JSON, or for csv a class-name file (default: the checkpoint's "
                        "classes.txt)")
    p.add_argument("--views", default="4x3",
                   help="temporal clips x spatial crops per video, whose scores are averaged (default 4x3)")
    p.add_argument("--num-frames", type=int, default=None,
                   help="frames per view (default: the frames per clip the model was trained with, from "
                        "its preprocessor_config.json, else its frames_per_clip)")
    p.add_argument("--stride", type=int, default=None,
                   help="take every N-th frame within a view (default: the stride the model was trained "
                        "with, from its preprocessor_config.json, else 1)")
    p.add_argument("--image-size", type=int, nargs="+", default=None, metavar="SIZE",
                   help="crop size fed to the model, one int (square) or H W (default: the size the "
                        "model was trained with, else its config's image_size)")
    p.add_argument("--batch-size", type=int, default=4, help="videos per evaluation batch (default 4)")
    p.add_argument("--num-workers", type=int, default=2,
                   help="DataLoader processes decoding the videos (default 2)")
    p.add_argument("--decode-threads", type=int, default=1,
                   help="FFmpeg threads per video decoder (default 1)")
    p.add_argument("--bf16", action="store_true",
                   help="evaluate under bfloat16 autocast, as before --precision (default: off; "
                        "--precision bf16 runs a bfloat16 copy of the weights instead)")
    p.add_argument("--device", type=device_type, default="cpu",
                   help="the torch device to evaluate on, cpu or cuda (default cpu)")
    add_precision_arguments(p, what="the model")
    p.add_argument("--json", action="store_true",
                   help="print the result as one JSON object instead of a table")
    p.set_defaults(func=cmd_evaluate)
