"""``trecvit compare-efficiency``: the paper's efficiency study (Figures 3 and 5), on this machine."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from trecvit.cli.common import check_output, positive_list


def attention_list(text: str) -> list[str]:
    from trecvit.layers.attention import ATTENTION_MODES

    values = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in values if v not in ATTENTION_MODES]
    if not values or bad:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(ATTENTION_MODES)}, "
                                         f"got {text!r}")
    return values


def cmd_compare_efficiency(args: argparse.Namespace) -> int:
    from trecvit.checkpoints.integrity import atomic_write
    from trecvit.tools import efficiency as eff

    for path, flag in ((args.csv, "--csv"), (args.json, "--json"), (args.plot, "--plot"),
                       (args.stream_plot, "--stream-plot")):
        check_output(path, flag, args.overwrite)
    specs = eff.parse_arch_specs(args.archs)
    stream_specs = eff.parse_arch_specs(args.stream_archs) if args.stream_plot else []
    print(f"{len(specs)} architectures x {len(args.frame_counts)} clip lengths x {len(args.attention)} "
          f"attention implementations at {args.size} x {args.size}, batch 1 (FLOPs and memory traced on "
          "fake tensors; latency on this CPU where a forward is at most "
          f"{args.latency_gflops:g} GFLOPs)", flush=True)
    rows = eff.compare_efficiency(specs, args.frame_counts, size=args.size, attentions=args.attention,
                                  latency_gflops=args.latency_gflops, repeats=args.repeats,
                                  progress=lambda m: print(f"  measuring {m} ...", file=sys.stderr,
                                                           flush=True))
    print(eff.format_rows(rows))
    if any(r.label == args.reference for r in rows):
        print(f"\nratios (baseline / {args.reference}):")
        print(eff.format_ratios(rows, args.reference))
    for r in rows:
        if r.note and not r.note.startswith("latency not measured"):
            print(f"note: {r.label} {r.frames} frames {r.attention}: {r.note}")
    if args.csv:
        atomic_write(Path(args.csv), lambda tmp: tmp.write_text(eff.rows_to_csv(rows)))
        print(f"csv: {args.csv}")
    if args.json:
        payload = [r.to_dict() for r in rows]
        atomic_write(Path(args.json), lambda tmp: tmp.write_text(json.dumps(payload, indent=2) + "\n"))
        print(f"json: {args.json}")
    if args.plot:
        eff.plot_efficiency(rows, args.plot, attention=args.attention[0], size=args.size)
        print(f"plot: {args.plot}")
    if args.stream_plot:
        print(f"\nstreaming {args.stream_frames} frames of {args.stream_size} x {args.stream_size} through "
              f"step: {', '.join(s.label for s in stream_specs)}", flush=True)
        costs = eff.stream_costs(stream_specs, args.stream_frames, size=args.stream_size, show_progress=True)
        print(eff.summarise_stream(costs))
        eff.plot_stream_costs(costs, args.stream_plot, size=args.stream_size)
        print(f"stream plot: {args.stream_plot}")
    return 0


def add_parsers(sub) -> None:
    """Add ``compare-efficiency``."""
    from trecvit.tools.efficiency import DEFAULT_ARCHS, DEFAULT_FRAMES, REFERENCE

    p = sub.add_parser(
        "compare-efficiency", help="TRecViT against ViViT and the hybrids: parameters, FLOPs, peak memory",
        description="The paper's efficiency study (Figures 3 and 5): for each architecture, clip length "
                    "and attention implementation, the parameters, the forward FLOPs (counted), the peak "
                    "tensor memory of inference and of a training step's forward and backward (both "
                    "measured by running the model on fake tensors: every operator as on this CPU, no "
                    "values, no memory), and the latency of a real forward where it is affordable; then "
                    "the ratios of each baseline to TRecViT-B. --stream-plot adds the streaming study: "
                    "per-frame step latency and state size against the frame index.")
    p.add_argument("--frames", dest="frame_counts", type=positive_list, default=list(DEFAULT_FRAMES),
                   metavar="N,N,...", help="clip lengths, comma-separated (default "
                   f"{','.join(map(str, DEFAULT_FRAMES))})")
    p.add_argument("--size", type=int, default=224, help="side of the square frames in pixels (default 224)")
    p.add_argument("--archs", default=",".join(DEFAULT_ARCHS), metavar="ARCH:VARIANT[:FIELD=VALUE],...",
                   help="the models to compare: architecture-table names with a ViT size and optional config "
                        "fields, comma-separated (default: TRecViT-B, ViViT-L with 2- and 1-frame tubelets, "
                        f"ViViT-B, ViViT-L factorised encoder and self-attention, the B hybrids: "
                        f"{','.join(DEFAULT_ARCHS)})")
    p.add_argument("--attention", type=attention_list, default=["naive", "fused"], metavar="naive,fused",
                   help="attention implementations to measure: naive (the n x n scores held in memory, what "
                        "the paper's JAX analysis counts) and/or fused (PyTorch's "
                        "scaled_dot_product_attention); the first is plotted (default naive,fused)")
    p.add_argument("--reference", default=REFERENCE, metavar="ARCH:VARIANT",
                   help=f"the model the ratios are taken against (default {REFERENCE})")
    p.add_argument("--latency-gflops", type=float, default=400.0, metavar="G",
                   help="measure the latency of a real forward only for clips of at most G GFLOPs (0: never; "
                        "default 400, a few seconds each on a laptop CPU)")
    p.add_argument("--repeats", type=int, default=1,
                   help="timed forwards per latency, of which the median is reported (default 1)")
    p.add_argument("--csv", default=None, metavar="FILE",
                   help="write the table as CSV (default: not written)")
    p.add_argument("--json", default=None, metavar="FILE",
                   help="write the table as a JSON list of rows (default: not written)")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="write a two-panel plot, peak memory and FLOPs against frames, log scale (Figure 3)")
    p.add_argument("--stream-plot", default=None, metavar="PNG",
                   help="also run the streaming study and plot per-frame step latency and state size against "
                        "the frame index (default: not run)")
    p.add_argument("--stream-archs", default="trecvit:S,cvivit:S,vit_lstm:S", metavar="ARCH:VARIANT,...",
                   help="models of the streaming study, each with a step "
                        "(default trecvit:S,cvivit:S,vit_lstm:S)")
    p.add_argument("--stream-frames", type=int, default=1000,
                   help="frames streamed in the streaming study (default 1000)")
    p.add_argument("--stream-size", type=int, default=112,
                   help="frame side of the streaming study in pixels (default 112: cViViT's growing cache "
                        "makes 1,000 frames of 224 x 224 take an hour on 2 cores)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing output files (default: refuse to)")
    p.set_defaults(func=cmd_compare_efficiency)
