"""``trecvit convert`` and ``trecvit verify``: the official checkpoint and this installation."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from trecvit.cli.common import image_size_arg


def cmd_convert(args: argparse.Namespace) -> int:
    from trecvit.config import TRecViTConfig
    from trecvit.checkpoints.official import infer_config, model_from_official_params, read_npz
    from trecvit.model import TRecViT
    from trecvit.checkpoints.pretrained import CONFIG_NAME, WEIGHTS_NAME

    out_dir = Path(args.out_dir)
    if (out_dir / WEIGHTS_NAME).exists() and not args.overwrite:
        raise ValueError(f"{out_dir / WEIGHTS_NAME} already exists; pass --overwrite to replace it")
    params = read_npz(args.checkpoint)
    overrides = {}
    if args.frames_per_clip is not None:
        overrides["frames_per_clip"] = args.frames_per_clip
    if args.image_size is not None:
        overrides["image_size"] = image_size_arg(args.image_size, "--image-size")
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



def cmd_verify(args: argparse.Namespace) -> int:
    from trecvit.classification import classify_video, load_labels, load_model
    from trecvit.classification.inference import format_top
    from trecvit.tools.verify import run_checks

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
        print(f"demo clip with {args.checkpoint}:\n{format_top(pred.top)}")
    else:
        print(f"  (demo clip timed with a randomly initialised TRecViT-{args.variant}; "
              "pass --checkpoint to classify it with real weights)")
    print("all checks passed" if not failed else f"{failed} check(s) FAILED")
    return 1 if failed else 0



def add_parsers(sub) -> None:
    """Add ``convert`` and ``verify``."""
    from trecvit.config import VARIANTS

    p = sub.add_parser("convert", help="official .npz checkpoint -> config.json + model.safetensors",
                       description="Convert an official TRecViT checkpoint (JAX .npz, e.g. "
                                   "trecvit_B_k400.npz) to a folder with config.json and "
                                   "model.safetensors. Every array is checked; nothing is unpickled.")
    p.add_argument("checkpoint", metavar="OFFICIAL.npz", help="the official checkpoint file to convert")
    p.add_argument("out_dir", metavar="OUT_DIR",
                   help="the folder to write config.json and model.safetensors to (created if needed)")
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
                   help="replace an existing model.safetensors in OUT_DIR (default: refuse to)")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("verify", help="check this installation reproduces the official model",
                       description="Run the official model's reference outputs (shipped with the "
                                   "package) through this implementation, check streaming equals "
                                   "the full clip, decode and time the official demo clip. Exits "
                                   "non-zero if any check fails.")
    p.add_argument("--checkpoint", default=None, metavar="PATH",
                   help="also classify the demo clip with this checkpoint, a folder or an official .npz "
                        "(default: none; the clip is timed with a randomly initialised model)")
    p.add_argument("--variant", choices=list(VARIANTS), default="S",
                   help="size of the randomly initialised model timed on the demo clip when no "
                        "--checkpoint is given (default S)")
    p.set_defaults(func=cmd_verify)
