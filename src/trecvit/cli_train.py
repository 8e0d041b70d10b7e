"""The training side of the ``trecvit`` command line: ``train``, ``evaluate``, ``demo``,
``synthetic``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------
# train
# ----------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    from trecvit.data.workers import WorkerFailedError
    from trecvit.training import NonFiniteLossError, Trainer
    from trecvit.training.checkpoint import latest_checkpoint
    from trecvit.training.config import TrainConfig, config_from_args

    base = None
    if args.config is None and args.resume:
        # `trecvit train --resume --out-dir RUN`: the run's own resolved config
        out_dir = Path(getattr(args, "out_dir", TrainConfig().out_dir))
        saved = out_dir / "config.yaml"
        if not saved.is_file():
            raise FileNotFoundError(f"--resume: {saved} does not exist; give --out-dir of an earlier "
                                    "run (or --config to start one)")
        base = TrainConfig.from_yaml(saved)
    cfg = config_from_args(args, base)
    try:
        result = Trainer(cfg, resume=args.resume).fit()
    # a full disk while writing a checkpoint, a data-loader worker killed while decoding a video, ...
    except (NonFiniteLossError, WorkerFailedError, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        print(f"error: {err}", file=sys.stderr)
        last = latest_checkpoint(Path(cfg.out_dir) / "checkpoints")
        if last is not None:
            print(f"the checkpoints are intact (newest: {last}); continue with `trecvit train --resume "
                  f"--out-dir {cfg.out_dir}`", file=sys.stderr)
        return 1
    if result.final_eval is not None:
        ev = result.final_eval
        print(f"done: {result.steps} steps in {result.seconds / 60:.1f} min; held-out top-1 "
              f"{100 * ev.top1:.2f}%, top-5 {100 * ev.top5:.2f}% on {ev.num_videos} videos"
              + (f" ({ev.num_failed} unreadable, skipped)" if ev.num_failed else ""))
    if result.model_dir is not None:
        print(f"model: {result.model_dir}  (trecvit classify VIDEO --checkpoint {result.model_dir})")
    return 0


# ----------------------------------------------------------------------------
# evaluate
# ----------------------------------------------------------------------------
def cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from trecvit.data.datasets import build_dataset
    from trecvit.inference import load_model
    from trecvit.training import evaluate
    from trecvit.training.data import read_class_names
    from trecvit.training.metrics import per_class_table

    model = load_model(args.checkpoint, device=args.device)
    cfg = model.config
    classes_file = Path(args.checkpoint) / "classes.txt"
    classes = read_class_names(str(classes_file)) if classes_file.is_file() else None
    labels = args.labels
    if args.data == "csv" and labels:
        classes, labels = read_class_names(labels), None
    num_frames = args.num_frames or cfg.frames_per_clip
    image_size = args.image_size or cfg.image_hw[0]
    dataset = build_dataset(args.data, args.val_data, video_root=args.video_root, labels=labels,
                            classes=classes, train=False, views=args.views, num_frames=num_frames,
                            stride=args.stride, image_size=image_size, decode_threads=args.decode_threads)
    if dataset.num_classes != cfg.num_classes:
        raise ValueError(f"the data has {dataset.num_classes} classes but the model {cfg.num_classes}; "
                         "pass the class list the model was trained with (classes.txt in the "
                         "checkpoint folder, or --labels)")
    result = evaluate(model, dataset, device=torch.device(args.device), batch_size=args.batch_size,
                      bf16=args.bf16, num_workers=args.num_workers, progress=True)
    names = list(dataset.classes)
    if args.json:
        print(json.dumps({"top1": result.top1, "top5": result.top5, "loss": result.loss,
                          "videos": result.num_videos, "failed": result.num_failed,
                          "per_class": [{"class": names[c], "videos": n, "top1": a}
                                        for c, n, a in result.per_class]}))
    else:
        print(f"{result.num_videos} videos, {args.views} views: top-1 {100 * result.top1:.2f}%, "
              f"top-5 {100 * result.top5:.2f}%, loss {result.loss:.4f}"
              + (f"; {result.num_failed} unreadable, skipped" if result.num_failed else ""))
        print(per_class_table(result, names))
    return 0


# ----------------------------------------------------------------------------
# demo and synthetic
# ----------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    from trecvit.demo import run_demo

    result = run_demo(args.out_dir, overwrite=args.overwrite, quick=args.quick, seed=args.seed)
    return 0 if result.passed or args.quick else 1


def cmd_synthetic(args: argparse.Namespace) -> int:
    from trecvit.data.synthetic import write_synthetic_videos

    try:
        out = write_synthetic_videos(args.out_dir, args.size, num_frames=args.frames,
                                     image_size=args.image_size, seed=args.seed, overwrite=args.overwrite,
                                     progress=True)
    except FileExistsError as err:
        raise ValueError(f"{args.out_dir} is not empty; pass --overwrite to replace its videos") from err
    print(f"wrote {args.size} clips to {out / 'videos'}, labels in {out / 'labels.csv'}, class names in "
          f"{out / 'classes.txt'}")
    return 0


# ----------------------------------------------------------------------------
# parsers
# ----------------------------------------------------------------------------
def add_parsers(sub, device_type) -> None:
    """Add ``train``, ``evaluate``, ``demo`` and ``synthetic`` to the ``trecvit`` sub-parsers."""
    from trecvit.training.config import DATA_FORMATS, add_config_arguments

    p = sub.add_parser(
        "train", help="train or fine-tune a video classifier",
        description="Train TRecViT (or the frame-average baseline) on video classification. Options "
                    "come from the defaults, then --config FILE.yaml, then the command line. Run "
                    "under torchrun for several processes (DDP). The run folder gets config.yaml, "
                    "metrics.csv, TensorBoard events, checkpoints/, curves.png, per_class.csv and the "
                    "final model/ (a save_pretrained folder).")
    p.add_argument("--config", default=None, metavar="YAML", help="training options file")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out-dir from its newest complete checkpoint (with its "
                        "saved config.yaml when no --config is given)")
    add_config_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "evaluate", help="video-level accuracy of a checkpoint, with multi-view testing",
        description="Evaluate a trained model on a labelled video set: each video is cut into "
                    "--views temporal clips x spatial crops whose scores are averaged.")
    p.add_argument("--checkpoint", required=True, metavar="DIR",
                   help="save_pretrained folder (e.g. RUN/model) or official .npz")
    p.add_argument("--data", choices=[f for f in DATA_FORMATS if f != "synthetic"], required=True,
                   help="dataset format")
    p.add_argument("--val-data", required=True, metavar="PATH",
                   help="folder (folder), CSV (csv, kinetics) or JSON (ssv2) of the videos to evaluate")
    p.add_argument("--video-root", default=None, help="where the videos are (csv, kinetics, ssv2)")
    p.add_argument("--labels", default=None,
                   help="SSv2 labels JSON, or for csv a class-name file (default: the checkpoint's "
                        "classes.txt)")
    p.add_argument("--views", default="4x3", help="temporal clips x spatial crops (default 4x3)")
    p.add_argument("--num-frames", type=int, default=None,
                   help="frames per view (default: the model's frames_per_clip)")
    p.add_argument("--stride", type=int, default=1, help="frame stride within a view (default 1)")
    p.add_argument("--image-size", type=int, default=None, help="crop size (default: the model's)")
    p.add_argument("--batch-size", type=int, default=4, help="videos per batch (default 4)")
    p.add_argument("--num-workers", type=int, default=2, help="decoding processes (default 2)")
    p.add_argument("--decode-threads", type=int, default=1, help="FFmpeg threads per decoder (default 1)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    p.add_argument("--device", type=device_type, default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "demo", help="train a small TRecViT on synthetic motion and compare it with an order-blind "
                     "baseline (about 10 minutes on 2 CPU cores)",
        description="Train a small TRecViT on the built-in synthetic motion dataset (classes defined "
                    "by how things move, half of them time-reversed pairs), train the same ViT without "
                    "its temporal blocks (frames averaged), evaluate both on held-out clips, print a "
                    "comparison table, save the model, the training curves and a held-out clip as "
                    ".mp4, and classify that clip frame by frame. Exits 1 if TRecViT misses 90% "
                    "top-1.")
    p.add_argument("--out-dir", default="trecvit-demo", help="output folder (default trecvit-demo)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier demo in --out-dir")
    p.add_argument("--quick", action="store_true",
                   help="a one-minute smoke run (tiny data and few steps; no accuracy target)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "synthetic", help="write the synthetic motion dataset as .mp4 files and a CSV",
        description="Render clips of the built-in synthetic motion dataset to OUT_DIR/videos/*.mp4 "
                    "with OUT_DIR/labels.csv (path,label) and OUT_DIR/classes.txt, e.g. to try "
                    "`trecvit train --data csv --train-data OUT_DIR/labels.csv`.")
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder to write")
    p.add_argument("--size", type=int, default=240, help="number of clips (default 240)")
    p.add_argument("--frames", type=int, default=8, help="frames per clip (default 8)")
    p.add_argument("--image-size", type=int, default=32, help="frame side in pixels (default 32)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty OUT_DIR")
    p.set_defaults(func=cmd_synthetic)
