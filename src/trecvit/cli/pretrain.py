"""``trecvit pretrain`` and ``trecvit reconstruct``: masked-autoencoder pre-training, reconstructions."""

from __future__ import annotations

import argparse
import json
import sys

from trecvit.cli.common import check_output, device_type, image_size_arg
from trecvit.cli.train import add_run_options, run_config


def cmd_pretrain(args: argparse.Namespace) -> int:
    from trecvit.mae.pretrain import PretrainConfig, Pretrainer

    cfg, result = run_config(args, PretrainConfig, Pretrainer)
    if result is None:
        return 1
    ev = result.final_eval
    if ev is not None:
        print(f"done: {result.steps} steps in {result.seconds / 60:.1f} min; held-out reconstruction PSNR "
              f"{ev.psnr:.2f} dB against {ev.baseline_psnr:.2f} dB for the mean-colour baseline "
              f"({ev.psnr - ev.baseline_psnr:+.2f} dB) on {ev.num_videos} videos"
              + (f" ({ev.num_failed} unreadable, skipped)" if ev.num_failed else ""))
    print(f"encoder: {result.model_dir}  (trecvit probe --checkpoint {result.model_dir}; trecvit train "
          f"--init {result.model_dir})")
    print(f"autoencoder: {result.out_dir / 'autoencoder'}  (trecvit reconstruct --checkpoint "
          f"{result.out_dir / 'autoencoder'} VIDEO --out grid.png)")
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from trecvit.checkpoints.auto import model_folder
    from trecvit.checkpoints.pretrained import read_preprocessor
    from trecvit.mae.masking import check_mask_ratio
    from trecvit.mae.reconstruct import load_autoencoder, reconstruct_videos, save_grid

    check_output(args.out, "--out", args.overwrite)
    if args.mask_ratio is not None:
        check_mask_ratio(args.mask_ratio, "--mask-ratio")
    image_size = image_size_arg(args.image_size, "--image-size")
    model = load_autoencoder(args.checkpoint, device=args.device)
    folder = model_folder(args.checkpoint)
    saved = read_preprocessor(folder) if folder is not None else None
    cfg = model.config.encoder
    num_frames = args.frames or (saved.num_frames if saved else cfg.frames_per_clip)
    stride = args.stride or (saved.stride if saved else 1)
    image_size = image_size or (saved.image_size if saved else cfg.image_hw)
    results, failures = [], 0
    for item in reconstruct_videos(model, args.videos, num_frames=num_frames, image_size=image_size,
                                   mask_ratio=args.mask_ratio, seed=args.seed, stride=stride):
        if isinstance(item, Exception):
            failures += 1
            print(f"error: {item}", file=sys.stderr)
            continue
        results.append(item)
        if args.json:
            print(json.dumps(item.to_dict()))
        else:
            print(f"{item.path}: PSNR {item.psnr:.2f} dB, mean-colour baseline {item.baseline_psnr:.2f} dB "
                  f"({item.psnr - item.baseline_psnr:+.2f} dB; {item.video.shape[0]} frames, "
                  f"{item.mask_ratio:.0%} of the patch tubes hidden)")
    if results and args.out:
        save_grid(results[:args.max_videos], args.out, num_frames=args.grid_frames)
        if not args.json:
            print(f"wrote {args.out} (original, masked input, reconstruction of "
                  f"{min(len(results), args.max_videos)} video(s))")
    return 1 if failures else 0


def add_parsers(sub) -> None:
    """Add ``pretrain`` and ``reconstruct`` to the ``trecvit`` sub-parsers."""
    from trecvit.mae.pretrain import PretrainConfig
    from trecvit.training.config import add_config_arguments

    p = sub.add_parser(
        "pretrain", help="self-supervised masked-autoencoder pre-training of a TRecViT encoder",
        description="Pre-train TRecViT on unlabelled video by masked autoencoding (VideoMAE's recipe: tube "
                    "masking, 90% of the patch tubes hidden, L2 reconstruction of the entire frames): the "
                    "encoder runs on the visible tubes only, a small causal TRecViT decoder predicts every "
                    "patch. Labels of the data, if any, are ignored. Options come from the defaults, then "
                    "--config FILE.yaml, then the command line, as for trecvit train; run under torchrun for "
                    "DDP. The run folder ends with model/ (the encoder as a TRecViT save_pretrained folder, "
                    "for trecvit probe and trecvit train --init) and autoencoder/ (for trecvit reconstruct).")
    add_run_options(p, "pretrain")
    add_config_arguments(p, PretrainConfig)
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser(
        "reconstruct", help="masked-autoencoder reconstructions of videos, their PSNR, and a PNG grid",
        description="Mask videos with a seeded tube mask, reconstruct them with a pre-trained masked "
                    "autoencoder, and print each one's PSNR (pixels in [0, 1], whole frames) next to the "
                    "trivial baseline that predicts every pixel as the mean colour of its frame's visible "
                    "pixels; --out draws original, masked input and reconstruction.")
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files to reconstruct")
    p.add_argument("--checkpoint", required=True, metavar="DIR",
                   help="the autoencoder/ folder of a trecvit pretrain run (required)")
    p.add_argument("--out", default=None, metavar="PNG",
                   help="write a PNG grid of the first --max-videos videos (default: no picture)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object per video (keys video, psnr, baseline_psnr, frames, "
                        "mask_ratio) instead of a line of text")
    p.add_argument("--mask-ratio", type=float, default=None,
                   help="fraction of the patch tubes hidden, in [0, 1) (default: the ratio the model was "
                        "pre-trained with)")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the masks; video i of the list gets the mask of (seed, i) (default 0)")
    p.add_argument("--frames", type=int, default=None,
                   help="frames read per video (default: the pre-training clip length, from the folder's "
                        "preprocessor_config.json)")
    p.add_argument("--stride", type=int, default=None,
                   help="take every N-th frame (default: the pre-training stride, else 1)")
    p.add_argument("--image-size", type=int, nargs="+", default=None, metavar="SIZE",
                   help="frame size fed to the model, one int (square) or H W (default: the pre-training "
                        "size)")
    p.add_argument("--grid-frames", type=int, default=4,
                   help="frames per video drawn in the grid, evenly spaced (default 4)")
    p.add_argument("--max-videos", type=int, default=4,
                   help="videos drawn in the grid, the first ones given (default 4)")
    p.add_argument("--device", type=device_type, default="cpu",
                   help="the torch device to run on, cpu or cuda (default cpu)")
    p.set_defaults(func=cmd_reconstruct)
