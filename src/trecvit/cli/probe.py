"""``trecvit probe``: attentive and linear probes on the frozen features of a checkpoint."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging

from trecvit.cli.common import device_type, image_size_arg

logger = logging.getLogger(__name__)


def _train_default(name: str):
    """The default of the ``TrainConfig`` field ``name`` (the random encoder is built as
    ``trecvit train`` builds one)."""
    from trecvit.training.config import TrainConfig

    return {f.name: f.default for f in dataclasses.fields(TrainConfig)}[name]


def cmd_probe(args: argparse.Namespace) -> int:
    import torch

    from trecvit.mae.probe import (RANDOM, build_probe_datasets, load_probe_encoder, probe_clip_settings,
                                   run_probe)

    for flag, value, least in (("--epochs", args.epochs, 1), ("--batch-size", args.batch_size, 1),
                               ("--num-queries", args.num_queries, 1), ("--num-frames", args.num_frames, 1),
                               ("--num-workers", args.num_workers, 0), ("--seed", args.seed, 0),
                               ("--synthetic-train-size", args.synthetic_train_size, 1),
                               ("--synthetic-val-size", args.synthetic_val_size, 1)):
        if value is not None and value < least:
            raise ValueError(f"{flag} must be >= {least}, got {value}")
    for flag, value in (("--lr", args.lr), ("--weight-decay", args.weight_decay)):
        if not value >= 0:
            raise ValueError(f"{flag} must be >= 0, got {value}")
    image_size = image_size_arg(args.image_size, "--image-size")
    overrides = dict(args.model or [])
    if args.checkpoint == RANDOM and image_size is None and "image_size" not in overrides:
        image_size = _train_default("image_size")
    model = load_probe_encoder(args.checkpoint, variant=args.variant, model_overrides=overrides,
                               image_size=image_size, num_frames=args.num_frames, seed=args.seed,
                               device=args.device)
    clips = probe_clip_settings(model, args.checkpoint, num_frames=args.num_frames, stride=args.stride,
                                image_size=image_size)
    train_set, val_set, classes = build_probe_datasets(
        args.data, clips, train_data=args.train_data, val_data=args.val_data, video_root=args.video_root,
        labels=args.labels, synthetic_train_size=args.synthetic_train_size,
        synthetic_val_size=args.synthetic_val_size, seed=args.seed)
    logger.info("probing %s on %d training and %d held-out clips of %d frames (stride %d) at %dx%d, "
                "%d classes", args.checkpoint, len(train_set), len(val_set), clips.num_frames,
                clips.stride, *clips.image_size, len(classes))
    probes = ("attentive", "linear") if args.probe == "both" else (args.probe,)
    report = run_probe(model, train_set, val_set, classes, probes=probes, tokens=args.tokens,
                       epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                       weight_decay=args.weight_decay, num_queries=args.num_queries, seed=args.seed,
                       device=torch.device(args.device), num_workers=args.num_workers,
                       progress=True)
    first = report.results[probes[0]]
    if args.json:
        print(json.dumps({
            "checkpoint": str(args.checkpoint), "tokens": args.tokens,
            "num_frames": clips.num_frames, "stride": clips.stride, "image_size": list(clips.image_size),
            "failed": {"train": report.num_failed_train, "val": report.num_failed_val},
            "probes": {kind: result.to_dict() for kind, result in report.results.items()},
            "top1": first.top1, "top5": first.top5}))
        return 0
    for kind, result in report.results.items():
        print(f"{kind} probe: top-1 {100 * result.top1:.2f}%, top-5 {100 * result.top5:.2f}% "
              f"({result.num_train} train / {result.num_val} val clips, frozen encoder: "
              f"{args.checkpoint})")
    if report.num_failed_train or report.num_failed_val:
        print(f"{report.num_failed_train} training and {report.num_failed_val} held-out videos could not "
              "be decoded and were left out")
    return 0


def add_parsers(sub) -> None:
    """Add ``probe`` to the ``trecvit`` sub-parsers."""
    from trecvit.training.config import DATA_FORMATS, key_value

    p = sub.add_parser(
        "probe", help="attentive and linear probes on a checkpoint's frozen features",
        description="Measure what a frozen encoder's features know: compute the features of every "
                    "training and held-out clip once (no augmentation; cached in memory as float32, "
                    "so memory grows with clips x tokens x width), train an attentive probe "
                    "(V-JEPA's: learnt queries cross-attend to the tokens) and/or a linear probe "
                    "(MAE's: mean of the tokens, BatchNorm, linear) on them, and report held-out "
                    "top-1 and top-5. Compare with --checkpoint random, the same architecture "
                    "untrained.")
    p.add_argument("--checkpoint", required=True, metavar="DIR",
                   help="the encoder to probe: a TRecViT save_pretrained folder (e.g. a pretrain run's "
                        "RUN/model, not RUN/autoencoder), its model.safetensors, an official .npz, or "
                        "random for a freshly initialised TRecViT of --variant and --model (required)")
    p.add_argument("--variant", default="S",
                   help="the ViT size of the random encoder: mu, Ti, S, M, B, L, H, g or G (default S)")
    p.add_argument("--model", type=key_value, action="append", metavar="KEY=VALUE",
                   help="a TRecViTConfig field of the random encoder, e.g. patch_size=8; repeat for "
                        "several (default: none, the variant's config at --image-size and "
                        "frames_per_clip = --num-frames)")
    p.add_argument("--data", choices=DATA_FORMATS, default="synthetic",
                   help="the dataset format, as in trecvit train: synthetic (built in, no files), "
                        "folder, csv, kinetics or ssv2 (default synthetic)")
    p.add_argument("--train-data", default=None, metavar="PATH",
                   help="the folder, CSV or JSON of the split the probes are trained on; required by "
                        "every format but synthetic (default: none)")
    p.add_argument("--val-data", default=None, metavar="PATH",
                   help="the folder, CSV or JSON of the held-out split the probes are scored on, "
                        "labelled in the training split's class order; required by every format but "
                        "synthetic (default: none)")
    p.add_argument("--video-root", default=None,
                   help="where the videos are, for csv (whose paths are relative to it), kinetics and "
                        "ssv2 (default: none)")
    p.add_argument("--labels", default=None,
                   help="SSv2's labels JSON; for csv, an optional class-name file (one per line) "
                        "fixing the class order (default: none)")
    p.add_argument("--synthetic-train-size", type=int, default=1200,
                   help="clips in the synthetic training set, generated with --seed (default 1200)")
    p.add_argument("--synthetic-val-size", type=int, default=600,
                   help="clips in the synthetic held-out set, generated with --seed + 1000 (default 600)")
    p.add_argument("--num-frames", type=int, default=None,
                   help="frames per clip (default: the checkpoint's preprocessor_config.json, else 8)")
    p.add_argument("--image-size", type=int, nargs="+", default=None, metavar="SIZE",
                   help="frame size fed to the encoder, one int (square) or H W (default: the "
                        "checkpoint's preprocessor_config.json, else its config's image_size; for "
                        "random, 32 as trecvit train, unless --model image_size=... is given)")
    p.add_argument("--stride", type=int, default=None,
                   help="take every N-th frame of a video (default: the checkpoint's "
                        "preprocessor_config.json, else 1)")
    p.add_argument("--tokens", choices=("all", "last"), default="all",
                   help="the features probed: all tokens of all frames, or the tokens of the last "
                        "frame only, the causal model's summary of the clip (default all)")
    p.add_argument("--probe", choices=("attentive", "linear", "both"), default="both",
                   help="which probes to train; with both, the attentive one is reported first "
                        "(default both)")
    p.add_argument("--epochs", type=int, default=20,
                   help="passes of each probe over the cached training features (default 20)")
    p.add_argument("--batch-size", type=int, default=64,
                   help="clips per batch, both when extracting the features and when training the "
                        "probes (default 64)")
    p.add_argument("--lr", type=float, default=1e-3,
                   help="peak AdamW learning rate of the probes, after a warm-up over the first tenth "
                        "of the steps and before a cosine decay to 0 (default 0.001)")
    p.add_argument("--weight-decay", type=float, default=0.05,
                   help="AdamW weight decay of the probes, on matrices only (default 0.05)")
    p.add_argument("--num-queries", type=int, default=1,
                   help="learnt query tokens of the attentive probe, whose outputs are averaged "
                        "(default 1)")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the random encoder, the synthetic data, the probes' initialisation and "
                        "their data order; a CPU run is exactly reproducible (default 0)")
    p.add_argument("--device", type=device_type, default="cpu",
                   help="the torch device to run the encoder and the probes on, cpu or cuda "
                        "(default cpu)")
    p.add_argument("--num-workers", type=int, default=0,
                   help="DataLoader processes decoding the videos while the features are extracted "
                        "(default 0)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object (top1 and top5 of the first probe as fractions, and "
                        "every probe's result under probes) instead of a line per probe")
    p.set_defaults(func=cmd_probe)
