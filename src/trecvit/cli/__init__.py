"""The ``trecvit`` command line: one module per command group, each a thin layer that parses
arguments and calls library functions (the library never imports this package).

* :mod:`trecvit.cli.checkpoints`: ``convert``, ``verify``
* :mod:`trecvit.cli.classify`: ``classify``
* :mod:`trecvit.cli.tools`: ``profile``, ``export``
* :mod:`trecvit.cli.efficiency`: ``compare-efficiency``
* :mod:`trecvit.cli.train`: ``train``, ``evaluate``
* :mod:`trecvit.cli.demo`: ``demo``, ``synthetic``
* :mod:`trecvit.cli.pretrain`: ``pretrain``, ``reconstruct``
* :mod:`trecvit.cli.probe`: ``probe``
* :mod:`trecvit.cli.tracking`: ``train-tracker``, ``eval-tracker``, ``track``, ``synthetic-tracks``
"""

from __future__ import annotations

import argparse
import logging
import sys

from trecvit.cli import (ablate, checkpoints, classify, demo, efficiency, memorise, pretrain, probe, tools,
                         tracking, train)

COMMAND_GROUPS = (checkpoints, classify, tools, efficiency, train, demo, ablate, pretrain, probe, tracking,
                  memorise)


def build_parser() -> argparse.ArgumentParser:
    from trecvit._version import __version__

    parser = argparse.ArgumentParser(
        prog="trecvit",
        description="TRecViT, a causal recurrent video transformer: convert the official checkpoint, "
                    "classify videos (whole or frame by frame), verify the installation, profile and "
                    "export the model, train and evaluate classifiers, run the training demo, pre-train "
                    "encoders by masked autoencoding, look at their reconstructions, probe their "
                    "frozen features, train, evaluate and run point trackers on them, and compare TRecViT's "
                    "efficiency with the paper's baselines.")
    parser.add_argument("--version", action="version", version=f"trecvit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log at debug level and show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for group in COMMAND_GROUPS:
        group.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    for name in ("top_k", "frames", "stride", "print_every", "frames_per_clip", "size", "batch",
                 "repeats", "max_videos", "max_frames", "num_videos", "grid", "grid_frames",
                 "stream_frames", "stream_size"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if isinstance(getattr(args, "image_size", None), list) and len(args.image_size) > 2:
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

