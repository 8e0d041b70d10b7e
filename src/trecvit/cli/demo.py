"""``trecvit demo`` (the README's main command) and ``trecvit synthetic`` (the demo's data as files)."""

from __future__ import annotations

import argparse


def cmd_demo(args: argparse.Namespace) -> int:
    from trecvit.classification.demo import run_demo

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


def add_parsers(sub) -> None:
    """Add ``demo`` and ``synthetic``."""
    p = sub.add_parser(
        "demo", help="train a small TRecViT on synthetic motion and compare it with an order-blind "
                     "baseline (about 10 minutes on 2 CPU cores)",
        description="Train a small TRecViT on the built-in synthetic motion dataset (classes defined "
                    "by how things move, half of them time-reversed pairs), train the same ViT without "
                    "its temporal blocks (frames averaged), evaluate both on held-out clips, print a "
                    "comparison table, save the model, the training curves and a held-out clip as "
                    ".mp4, and classify that clip frame by frame. Exits 1 if TRecViT misses 90% "
                    "top-1.")
    p.add_argument("--out-dir", default="trecvit-demo",
                   help="the folder to write the models, curves and clip to (default trecvit-demo)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier demo in --out-dir (default: refuse to)")
    p.add_argument("--quick", action="store_true",
                   help="a one-minute smoke run (tiny data and few steps; no accuracy target)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the data and the training (default 0)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "synthetic", help="write the synthetic motion dataset as .mp4 files and a CSV",
        description="Render clips of the built-in synthetic motion dataset to OUT_DIR/videos/*.mp4 "
                    "with OUT_DIR/labels.csv (path,label) and OUT_DIR/classes.txt, e.g. to try "
                    "`trecvit train --data csv --train-data OUT_DIR/labels.csv`.")
    p.add_argument("out_dir", metavar="OUT_DIR",
                   help="the folder to write videos/, labels.csv and classes.txt to")
    p.add_argument("--size", type=int, default=240, help="number of clips to write (default 240)")
    p.add_argument("--frames", type=int, default=8, help="frames per rendered clip (default 8)")
    p.add_argument("--image-size", type=int, default=32,
                   help="side of the square frames in pixels (default 32)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the rendered clips (default 0)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty OUT_DIR, replacing its videos (default: refuse to)")
    p.set_defaults(func=cmd_synthetic)
