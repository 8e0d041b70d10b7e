"""``trecvit memorise``: the long-video memorisation task (paper section 5.4, Table 6, Figures 8-9)."""

from __future__ import annotations

import argparse

from trecvit.cli.common import device_type, int_list, positive_list


def model_list(text: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values or any(v not in ("trecvit", "vivit") for v in values) or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"expected trecvit, vivit or trecvit,vivit, got {text!r}")
    return values


def distance_list(text: str) -> list[int]:
    return int_list(text, minimum=0, example="0,16,48", what="distances")


def field_value(text: str) -> tuple[str, object]:
    """``FIELD=VALUE`` (the value read as a number, true/false, none or text)."""
    from trecvit.training.config import key_value

    return key_value(text)


def cmd_memorise(args: argparse.Namespace) -> int:
    from trecvit.memorisation.run import run_memorisation
    from trecvit.memorisation.task import MemoriseConfig

    if args.data == "folder" and args.data_dir is None:
        raise ValueError("--data folder needs --data-dir DIR, a folder of long videos")
    if args.data_dir is not None and args.data != "folder":
        raise ValueError(f"--data-dir is only read with --data folder (got --data {args.data})")
    cfg = MemoriseConfig(
        models=tuple(args.models), train_frames=args.train_frames, test_frames=tuple(args.test_frames),
        target_frame=args.target_frame, image_size=args.image_size, patch_size=args.patch_size,
        trecvit_variant=args.trecvit_variant, vivit_variant=args.vivit_variant,
        trecvit_overrides=dict(args.trecvit_model), vivit_overrides=dict(args.vivit_model),
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay, grad_clip=args.grad_clip, seed=args.seed, data=args.data,
        data_dir=args.data_dir, data_stride=args.data_stride, val_videos=args.val_videos,
        sweep_lengths=tuple(args.sweep_lengths), sweep_distances=tuple(args.sweep_distances),
        device=args.device)
    _check_sizes(cfg)
    lengths = ", ".join(map(str, cfg.eval_lengths))
    print(f"memorisation: reconstruct frame {cfg.target_frame} after T frames; train "
          f"{', '.join(cfg.models)} on T = {cfg.train_frames} for {cfg.steps} steps of {cfg.batch_size} "
          f"videos ({cfg.image_size} x {cfg.image_size}, {cfg.data}); test on T = {lengths} with "
          f"{cfg.val_videos} held-out videos -> {args.out_dir}", flush=True)
    result = run_memorisation(cfg, args.out_dir, overwrite=args.overwrite, resume=args.resume,
                              show_progress=not args.no_progress)
    print(result.table)
    for kind, seconds in result.train_seconds.items():
        print(f"{kind}: trained in {seconds / 60:.1f} min")
    out = result.out_dir
    print(f"results: {out / 'results.md'} (also .csv, .json); figures: {out / 'sweep.png'}, "
          f"{out / 'reconstructions.png'}; models: " + ", ".join(str(out / k) for k in cfg.models))
    return 0


def _check_sizes(cfg) -> None:
    """Build each model's config once, so that a bad size or field fails before any training."""
    from trecvit.memorisation.models import build_config

    for kind in cfg.models:
        try:
            build_config(kind, getattr(cfg, f"{kind}_variant"), image_size=cfg.image_size,
                         patch_size=cfg.patch_size, train_frames=cfg.train_frames,
                         overrides=getattr(cfg, f"{kind}_overrides"))
        except (TypeError, ValueError) as err:
            raise ValueError(f"--{kind}-variant/--{kind}-model: {err}") from None


def add_parsers(sub) -> None:
    """Add ``memorise``."""
    from trecvit.memorisation.task import MemoriseConfig

    d = MemoriseConfig()
    p = sub.add_parser(
        "memorise", help="the long-video memorisation task: TRecViT against ViViT (the paper's Table 6)",
        description="The paper's long-video memorisation task (section 5.4, Table 6, Figures 8-9): "
                    "after T frames, reconstruct the k-th frame from the model's output. TRecViT reads the "
                    "last frame's tokens only (its recurrent state must hold frame k); ViViT model 1 "
                    "averages its outputs over all frames. Both are trained on T = --train-frames and "
                    "tested on each of --test-frames (ViViT's learnt temporal position embedding resampled "
                    "by nearest neighbour and, beside it, linearly) and on a sweep of lengths. Videos are "
                    "synthetic walking tours made on the fly (or windows of a folder of real videos). "
                    "Writes results.md (the table), results.csv, results.json, sweep.png, "
                    "reconstructions.png and one folder per trained model into --out-dir.")
    p.add_argument("--out-dir", required=True, metavar="DIR",
                   help="folder for the results, figures and trained models (required; a folder holding an "
                        "earlier run needs --resume or --overwrite)")
    p.add_argument("--models", type=model_list, default=list(d.models), metavar="trecvit,vivit",
                   help="the models to train and compare, comma-separated (default trecvit,vivit)")
    p.add_argument("--train-frames", type=int, default=d.train_frames, metavar="T",
                   help=f"frames of each training video (default {d.train_frames}, as the paper)")
    p.add_argument("--test-frames", type=positive_list, default=list(d.test_frames), metavar="T,T,...",
                   help="test lengths of the table, comma-separated (default "
                        f"{','.join(map(str, d.test_frames))}, as the paper)")
    p.add_argument("--target-frame", type=int, default=d.target_frame, metavar="K",
                   help=f"the 1-based index k of the frame to reconstruct, below --train-frames (default "
                        f"{d.target_frame}, as the paper)")
    p.add_argument("--image-size", type=int, default=d.image_size, metavar="PIXELS",
                   help=f"side of the square frames in pixels (default {d.image_size})")
    p.add_argument("--patch-size", type=int, default=d.patch_size, metavar="PIXELS",
                   help=f"side of the square patches; divides --image-size (default {d.patch_size})")
    for kind, name in (("trecvit", "TRecViT"), ("vivit", "ViViT")):
        p.add_argument(f"--{kind}-variant", default=getattr(d, f"{kind}_variant"), metavar="SIZE",
                       help=f"size of the {name} model: mem (this task's CPU size) or a ViT size mu, Ti, "
                            f"S, B, L, ... (default {getattr(d, f'{kind}_variant')})")
        example = "min_rad=0.5" if kind == "trecvit" else "depth=4"
        p.add_argument(f"--{kind}-model", type=field_value, action="append", default=[],
                       metavar="FIELD=VALUE",
                       help=f"set a field of the {name} config on top of the variant, e.g. {example}; "
                            "repeatable (default: none)")
    p.add_argument("--steps", type=int, default=d.steps,
                   help=f"optimiser steps per model (default {d.steps})")
    p.add_argument("--batch-size", type=int, default=d.batch_size,
                   help=f"videos per training step and per evaluation batch (default {d.batch_size})")
    p.add_argument("--lr", type=float, default=d.lr,
                   help=f"peak learning rate of AdamW's warm-up + cosine schedule (default {d.lr:g})")
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps,
                   help=f"steps of linear learning-rate warm-up (default {d.warmup_steps})")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay,
                   help=f"AdamW weight decay of the weight matrices (default {d.weight_decay:g})")
    p.add_argument("--grad-clip", type=float, default=d.grad_clip,
                   help=f"largest gradient norm, 0 for no clipping (default {d.grad_clip:g})")
    p.add_argument("--seed", type=int, default=d.seed,
                   help=f"seed of the model initialisation and of the videos (default {d.seed})")
    p.add_argument("--data", choices=("synthetic", "folder"), default=d.data,
                   help="synthetic walking tours made on the fly, or windows of consecutive frames of the "
                        f"videos in --data-dir (default {d.data})")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="folder of long videos for --data folder, e.g. Walking Tours; the last fifth of the "
                        "files is held out (default: none)")
    p.add_argument("--data-stride", type=int, default=d.data_stride, metavar="N",
                   help=f"keep every N-th frame of the --data-dir videos (default {d.data_stride})")
    p.add_argument("--val-videos", type=int, default=d.val_videos, metavar="N",
                   help=f"held-out videos of every evaluation (default {d.val_videos})")
    p.add_argument("--sweep-lengths", type=positive_list, default=list(d.sweep_lengths), metavar="T,T,...",
                   help="test lengths of the sweep figure's right panel (default "
                        f"{','.join(map(str, d.sweep_lengths))}: up to 4 x the training length)")
    p.add_argument("--sweep-distances", type=distance_list, default=list(d.sweep_distances),
                   metavar="D,D,...",
                   help="distances T - k of the sweep figure's left panel, tested at T = k + D (default "
                        f"{','.join(map(str, d.sweep_distances))})")
    p.add_argument("--device", type=device_type, default=d.device,
                   help=f"where to train and evaluate: cpu or cuda (default {d.device})")
    p.add_argument("--resume", action="store_true",
                   help="reuse the models already trained in --out-dir with the same settings, train the "
                        "others and write the results again (default: off)")
    p.add_argument("--overwrite", action="store_true",
                   help="delete an earlier run's results and models in --out-dir first; other files are kept "
                        "(default: off)")
    p.add_argument("--no-progress", action="store_true", help="show no progress bars (default: shown)")
    p.set_defaults(func=cmd_memorise)
