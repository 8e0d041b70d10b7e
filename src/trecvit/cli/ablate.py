"""``trecvit ablate``: train a table of variants (the paper's Tables 1 and 2, or a YAML list) and
write the results as Markdown and CSV (:mod:`trecvit.training.ablation`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def name_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated variant names, got {text!r}")
    return names


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``changes``, their ``model`` mappings merged."""
    merged = {**base, **changes}
    if "model" in changes:
        merged["model"] = {**(base.get("model") or {}), **(changes["model"] or {})}
    return merged


def build_base(args: argparse.Namespace):
    """``(set name, variants, base TrainConfig, seeds)`` from the options: the built-in recipe, then
    the set file's ``base``, then ``--config``, then the command line; or, with ``--resume``, the
    ablation folder's saved settings, then the command line."""
    import yaml

    from trecvit.training.ablation import read_settings
    from trecvit.training.ablation_sets import load_set, parse_variants, recipe
    from trecvit.training.config import TrainConfig, config_from_args

    given = vars(args)
    if args.resume:
        if "out_dir" not in given:
            raise ValueError("--resume needs --out-dir, the folder of the ablation to continue")
        if args.config:
            raise ValueError("--resume continues with the ablation's saved settings; --config cannot be "
                             "combined with it (give single options on the command line instead)")
        saved = read_settings(args.out_dir)
        set_name = saved["set"]
        if args.set is not None and Path(args.set).stem != set_name:
            raise ValueError(f"--set {args.set}: {args.out_dir} holds the ablation of set {set_name!r}")
        variants = parse_variants(saved["variants"], f"{args.out_dir}/ablation.yaml")
        base = config_from_args(args, TrainConfig.from_dict(saved["base"], source="ablation.yaml"))
        seeds = list(saved["seeds"]) if args.seeds is None else [base.seed + i for i in range(args.seeds)]
        return set_name, variants, base, seeds

    set_name, variants, set_base = load_set(args.set or "table1")
    file_base: dict[str, Any] = {}
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise FileNotFoundError(f"--config {path} does not exist")
        file_base = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(file_base, dict):
            raise ValueError(f"--config {path} must hold a YAML mapping of training options")
    user_variant = "variant" in given or "variant" in set_base or "variant" in file_base
    data = _merge(_merge(recipe(user_variant=user_variant), set_base), file_base)
    data.setdefault("out_dir", f"ablations/{set_name}")
    base = config_from_args(args, TrainConfig.from_dict(data, source=args.config or "the ablation recipe"))
    seeds = [base.seed + i for i in range(args.seeds or 1)]
    return set_name, variants, base, seeds


def cmd_ablate(args: argparse.Namespace) -> int:
    from trecvit.data.workers import WorkerFailedError
    from trecvit.training.ablation import plan, run_ablation
    from trecvit.training.ablation_report import describe_base

    set_name, variants, base, seeds = build_base(args)
    if args.list:
        runs = plan(base, variants, seeds[:1])
        print(f"set {set_name}: {len(variants)} variant(s), {len(seeds)} seed(s) each, into {base.out_dir}\n")
        print(describe_base(base, seeds) + "\n")
        for r in runs:
            print(f"{r.variant.name}: {r.changes}")
            for line in ([r.variant.note] if r.variant.note else []) + r.notes:
                print(f"    {line}")
            if r.variant.paper:
                print("    paper: " + ", ".join(f"{k} {v:g}" for k, v in r.variant.paper.items()))
        return 0
    print(f"trecvit ablate: set {set_name}, {len(variants)} variant(s) x {len(seeds)} seed(s) into "
          f"{base.out_dir}", flush=True)
    try:
        outcome = run_ablation(base, variants, set_name=set_name, seeds=seeds, only=args.only,
                               overwrite=args.overwrite, report=lambda line: print(line, flush=True))
    except (WorkerFailedError, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        print(f"error: {err}\nfinished runs and checkpoints are kept; rerun the same command (or "
              f"`trecvit ablate --resume --out-dir {base.out_dir}`) to continue", file=sys.stderr)
        return 1
    print("\n" + outcome.markdown)
    print(f"results: {outcome.out_dir / 'results.md'}, {outcome.out_dir / 'results.csv'}, "
          f"{outcome.out_dir / 'curves.png'}")
    if outcome.failed:
        print(f"{len(outcome.failed)} run(s) failed ({', '.join(outcome.failed)}); a rerun retries them from "
              "their last checkpoint", file=sys.stderr)
        return 1
    return 0


def _recipe_help(p: argparse.ArgumentParser) -> None:
    """State the ablation recipe's defaults in the help of the training options it sets."""
    from trecvit.training.ablation_sets import RECIPE, SIZE_FIELDS

    for action in p._actions:
        if action.dest == "out_dir":
            action.help = ("the ablation folder: ablation.yaml, runs/<variant>/seed-<s>/ (a trecvit train "
                           "run folder each, with result.json), results.md, results.csv, curves.png "
                           "(default: ablations/<set>, e.g. ablations/table1)")
        elif action.dest == "seed":
            action.help = ("the first seed: --seeds N runs every variant at seeds seed, seed+1, ..., "
                           "seed+N-1; each seeds the initialisation, the data order and the synthetic data "
                           "(default: 0)")
        elif action.dest in RECIPE:
            text = action.help.rsplit(" (default: ", 1)[0]
            value = RECIPE[action.dest]
            if isinstance(value, dict):
                value = ", ".join(f"{k}={v}" for k, v in value.items())
            elif isinstance(value, bool):
                value = "on" if value else "off"
            extra = ""
            if action.dest == "variant":
                extra = (f"; giving --variant drops the recipe's model {', '.join(SIZE_FIELDS)}, so that the "
                         "size is the variant's")
            value = str(value).replace("%", "%%")  # the help text is already escaped
            action.help = f"{text} (default: {value} in the ablation recipe{extra})"


def add_parsers(sub) -> None:
    """Add ``ablate`` to the ``trecvit`` sub-parsers."""
    from trecvit.training.config import add_config_arguments

    p = sub.add_parser(
        "ablate", help="train a table of variants (the paper's Tables 1 and 2) and tabulate the results",
        description="Train a set of variants of one base run, each at --seeds seeds, and write a Markdown "
                    "and a CSV table: held-out top-1 (mean, std and variance over seeds), training steps "
                    "per second and parameters per variant, beside the paper's numbers. The built-in sets "
                    "are the paper's Table 1 (gated LRU block ablations: table1) and Table 2 (other "
                    "temporal modules: table2), on a small recipe on the synthetic motion data (a few "
                    "minutes per variant on a 2-core CPU); a YAML file gives your own list, e.g. "
                    "'- name: no-conv' / '  model: {temporal_conv: false}'. The training options below "
                    "change the base run (e.g. --data folder --train-data DIR --val-data DIR for your "
                    "data); each variant's own changes apply over them. Finished runs are kept: rerunning "
                    "the command (or --resume) skips them and continues at the first unfinished run.")
    p.add_argument("--set", default=None, metavar="table1|table2|FILE.yaml",
                   help="the variants: table1, table2, or a YAML file holding a list of variants (name, "
                        "note, lr_scale, TrainConfig fields, model: {field: value} merged into the base's) "
                        "or a mapping with variants and base (default: table1; with --resume, the saved set)")
    p.add_argument("--seeds", type=positive_int, default=None, metavar="N",
                   help="train every variant at N seeds, --seed to --seed + N - 1 (default: 1; with "
                        "--resume, the saved seeds)")
    p.add_argument("--only", type=name_list, default=None, metavar="NAME,...",
                   help="train only these variants of the set; the table still lists every finished one "
                        "(default: all)")
    p.add_argument("--list", action="store_true",
                   help="print the variants of the set with what each changes, and exit")
    p.add_argument("--overwrite", action="store_true",
                   help="delete and retrain runs whose configuration differs from the one asked for "
                        "(default: such runs are refused, and every finished run is kept)")
    p.add_argument("--config", default=None, metavar="YAML",
                   help="a YAML file of training options applied over the ablation recipe and under the "
                        "command-line options (default: none)")
    p.add_argument("--resume", action="store_true",
                   help="continue the ablation in --out-dir with its saved set, base run and seeds "
                        "(rerunning the original command does the same)")
    add_config_arguments(p)
    _recipe_help(p)
    p.set_defaults(func=cmd_ablate)
