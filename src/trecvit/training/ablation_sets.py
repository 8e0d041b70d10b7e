"""The variants of ``trecvit ablate``: what a variant is, the YAML file of a set, the built-in
sets, the paper's Tables 1 and 2 (section 5.1), and the runs a set plans (:class:`PlannedRun`)
with the state of their folders (:func:`run_state`: done, changed, partial or new).

A :class:`Variant` is a name and changes to a base :class:`~trecvit.training.TrainConfig`: any of
its fields, ``model`` merged into the base's ``model`` mapping (not replacing it), and an
``lr_scale`` multiplying the base's learning-rate schedule. A set file is a YAML list of them::

    - name: no-conv
      model: {temporal_conv: false}
    - name: low-lr
      lr: 3.0e-4

or a mapping with that list as ``variants`` and a ``base`` of TrainConfig fields.

The built-in sets:

* ``table1``, "Ablation on Gated LRU components and eigenvalue initialisation": TRecViT with
  the official eigenvalue range ``[0.5, 0.999]``, the paper's ``[0.6, 0.999]`` ("ours") and
  Griffin's ``[0.9, 0.999]``, without the skip connection around the temporal block (at a
  tenth of the learning rate, as the paper had to lower it), without the RG-LRU's input and
  recurrence gates, without the causal temporal convolution; and two switches the paper does
  not ablate: the spatial block before the temporal one in each layer, and classifying from
  the last frame instead of the average over frames.
* ``table2``, "Comparison of different temporal modules used in hybrid setups": the same
  factorisation with ViViT's factorised self-attention, an LSTM or a causal temporal
  convolution in place of the gated LRU block, and TRecViT.

Every variant trains from :data:`RECIPE`, a small run on the synthetic motion dataset
(:mod:`trecvit.data.synthetic`, where the class is how an object moves): the model of
``trecvit demo`` (width 96, 3 layers, 8 x 8 patches of 8 frames of 32 x 32) for 200 steps of 32
clips, about 3 minutes per variant on a 2-core CPU shared with other jobs (``table1`` in 26
minutes, ``table2`` in 12). That is where TRecViT's loss leaves its initial plateau (held-out
top-1 48, 23 and 48% at seeds 0, 1, 2; the demo's 1,800 steps reach 90%): the variants differ,
but a single seed's differences are mostly noise, so compare with ``--seeds 3`` and, for
conclusions, a longer ``--max-steps``. The paper's numbers (SSv2, TRecViT-B) are kept beside
each variant for the results table; they are not expected to be reproduced on this data.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trecvit.training.config import TrainConfig

VARIANT_KEYS = ("name", "note", "lr_scale", "paper")  # the keys of a variant besides TrainConfig fields
REFUSED_KEYS = ("out_dir", "seed")  # set by the ablation (the run folder, --seed / --seeds)
PAPER_KEYS = ("top1", "steps_per_s")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class Variant:
    """One row of an ablation table.

    Attributes:
        name: the row's name and folder name (letters, digits, ``.``, ``_``, ``-``).
        changes: :class:`TrainConfig` fields to change; ``model`` is merged into the base's.
        lr_scale: multiplies the base's ``lr`` and ``min_lr`` (1: unchanged).
        note: what the variant is, for the table's notes.
        paper: the paper's numbers for it, ``top1`` (%) and ``steps_per_s``, shown beside ours.
    """

    name: str
    changes: dict[str, Any] = field(default_factory=dict)
    lr_scale: float = 1.0
    note: str = ""
    paper: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The variant as a mapping of the YAML file format."""
        data: dict[str, Any] = {"name": self.name, **self.changes}
        if self.lr_scale != 1.0:
            data["lr_scale"] = self.lr_scale
        if self.note:
            data["note"] = self.note
        if self.paper:
            data["paper"] = dict(self.paper)
        return data


# ------------------------------------------------------------------------------------ variant sets
def parse_variants(items: Any, source: str = "variants") -> list[Variant]:
    """Variants from a list of mappings (the YAML file format), checked key by key.

    Raises:
        ValueError: naming the variant (index and name) and the bad key or value.
    """
    if not isinstance(items, list) or not items:
        raise ValueError(f"{source}: expected a non-empty list of variants (mappings with a name), got "
                         f"{type(items).__name__}")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    variants: list[Variant] = []
    for i, item in enumerate(items, start=1):
        where = f"{source}: variant #{i}"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: expected a mapping like {{name: no-conv, model: {{temporal_conv: "
                             f"false}}}}, got {item!r}")
        name = item.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"{where}: 'name' must be a folder-safe name (letters, digits, '.', '_', "
                             f"'-'), got {name!r}")
        where = f"{source}: variant #{i} ({name!r})"
        unknown = sorted(set(item) - fields - set(VARIANT_KEYS))
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}; a variant takes name, note, "
                             f"lr_scale, paper and TrainConfig fields: {', '.join(sorted(fields))}")
        refused = [k for k in REFUSED_KEYS if k in item]
        if refused:
            raise ValueError(f"{where}: {', '.join(refused)} cannot be set per variant (the ablation sets "
                             "the run folder, and the seeds with --seed / --seeds)")
        if "model" in item and not isinstance(item["model"], dict):
            raise ValueError(f"{where}: 'model' must be a mapping of model config fields, got "
                             f"{item['model']!r}")
        lr_scale = item.get("lr_scale", 1.0)
        if isinstance(lr_scale, bool) or not isinstance(lr_scale, (int, float)) or not lr_scale > 0:
            raise ValueError(f"{where}: 'lr_scale' must be a number > 0, got {lr_scale!r}")
        paper = item.get("paper", {})
        if not isinstance(paper, dict) or set(paper) - set(PAPER_KEYS) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in paper.values()):
            raise ValueError(f"{where}: 'paper' must map {' and/or '.join(PAPER_KEYS)} to numbers, got "
                             f"{paper!r}")
        if name in {v.name for v in variants}:
            raise ValueError(f"{where}: the name {name!r} is used twice; variant names must be unique")
        changes = {k: v for k, v in item.items() if k not in VARIANT_KEYS}
        variants.append(Variant(name, changes, float(lr_scale), str(item.get("note", "")), dict(paper)))
    return variants


def read_set_file(path: str | Path) -> tuple[list[Variant], dict[str, Any]]:
    """``(variants, base)`` of a YAML set file: a list of variants, or a mapping with
    ``variants`` (that list) and an optional ``base`` (TrainConfig fields applied over the recipe)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--set {path}: no such file (give table1, table2 or a YAML file)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"{path} is not valid YAML: {err}") from err
    base: Any = {}
    if isinstance(data, dict):
        extra = sorted(set(data) - {"variants", "base"})
        if extra or "variants" not in data:
            raise ValueError(f"{path}: a mapping must have 'variants' (a list) and optionally 'base'; got "
                             f"keys {', '.join(map(str, data))}")
        data, base = data["variants"], data.get("base") or {}
        if not isinstance(base, dict):
            raise ValueError(f"{path}: 'base' must be a mapping of TrainConfig fields, got {base!r}")
    return parse_variants(data, str(path)), base


def load_set(name: str) -> tuple[str, list[Variant], dict[str, Any]]:
    """``(set name, variants, base changes)`` of ``--set``: a built-in set or a YAML file (named
    after its stem)."""
    if name in BUILTIN_SETS:
        return name, [dataclasses.replace(v) for v in BUILTIN_SETS[name]], {}
    if not name.endswith((".yaml", ".yml")) and not Path(name).is_file():
        raise ValueError(f"--set {name!r}: not a built-in set ({', '.join(BUILTIN_SETS)}) nor a YAML file")
    variants, base = read_set_file(name)
    return Path(name).stem, variants, base


# ------------------------------------------------------------------------------------ built-in sets
# The model of `trecvit demo` (trecvit.classification.demo.DEMO_MODEL): TRecViT-mu's family at
# width 96, 3 layers, 8x8 patches of 32x32 frames, no pre-logits layer.
RECIPE_MODEL: dict[str, Any] = dict(width=96, depth=3, num_heads=4, mlp_dim=384, patch_size=8, rep_size=0)

# The model fields that give the ViT size; a --variant on the command line drops them from the recipe.
SIZE_FIELDS = ("width", "depth", "num_heads", "mlp_dim")

# The base run of the built-in sets (TrainConfig fields). `trecvit ablate` options override it.
RECIPE: dict[str, Any] = dict(
    data="synthetic", synthetic_train_size=4800, synthetic_val_size=1200, num_frames=8, image_size=32,
    arch="trecvit", variant="mu", model=RECIPE_MODEL, max_steps=200, batch_size=32, lr=2e-3, min_lr=1e-5,
    warmup_steps=30, weight_decay=0.05, clip_grad=1.0, log_every=10, eval_every=1000, save_every=50,
    keep_last=1, num_workers=0, tensorboard=False)

TABLE1: tuple[Variant, ...] = (
    Variant("official", note="the release's eigenvalue range [0.5, 0.999]"),
    Variant("paper-range", {"model": {"min_rad": 0.6}}, note="the paper's range [0.6, 0.999] (\"ours\")",
            paper={"top1": 66.7}),
    Variant("griffin-range", {"model": {"min_rad": 0.9}}, note="Griffin's range [0.9, 0.999]",
            paper={"top1": 66.2}),
    Variant("no-skip", {"model": {"temporal_skip": False}}, lr_scale=0.1,
            note="no skip connection around the temporal block; the paper had to lower the lr for it "
                 "to train at all", paper={"top1": 15.5}),
    Variant("no-gates", {"model": {"lru_gates": False}}, note="no input gate, no recurrence gate",
            paper={"top1": 66.0}),
    Variant("no-conv", {"model": {"temporal_conv": False}}, note="no causal temporal convolution",
            paper={"top1": 64.9}),
    Variant("space-time", {"model": {"block_order": "space_time"}},
            note="spatial block before the temporal block in each layer (not in the paper)"),
    Variant("last-frame", {"model": {"readout": "last"}},
            note="classify from the last frame's features, not the average over frames (not in the paper)"),
)

TABLE2: tuple[Variant, ...] = (
    Variant("vivit_fsa", {"arch": "vivit_fsa", "model": {"tubelet_frames": 1}},
            note="ViViT model 3, factorised self-attention (not causal), with 1-frame tubelets: the same "
                 "tokens as TRecViT", paper={"top1": 62.4, "steps_per_s": 8.3}),
    Variant("vit_lstm", {"arch": "vit_lstm"}, note="an LSTM as temporal block, with skip",
            paper={"top1": 63.7, "steps_per_s": 6.0}),
    Variant("vit_conv1d", {"arch": "vit_conv1d"}, note="a causal temporal convolution as temporal block, "
            "with skip", paper={"top1": 40.3, "steps_per_s": 10.5}),
    Variant("trecvit", note="the gated LRU block (TRecViT)", paper={"top1": 66.7, "steps_per_s": 8.9}),
)

BUILTIN_SETS: dict[str, tuple[Variant, ...]] = {"table1": TABLE1, "table2": TABLE2}

# What each set's table is, for the results' heading.
SET_TITLES: dict[str, str] = {
    "table1": "the paper's Table 1: gated LRU block components and eigenvalue initialisation",
    "table2": "the paper's Table 2: other temporal modules in the same factorisation",
}


def recipe(*, user_variant: bool = False) -> dict[str, Any]:
    """A copy of :data:`RECIPE`; ``user_variant``: the user chose the ViT size (``--variant``), so
    the recipe's size fields are dropped from its ``model``."""
    base = dict(RECIPE)
    base["model"] = {k: v for k, v in RECIPE_MODEL.items() if not (user_variant and k in SIZE_FIELDS)}
    return base



# ------------------------------------------------------ the runs of a set and their folders
RESULT_FILE = "result.json"
FAILED_FILE = "failed.json"


@dataclass
class PlannedRun:
    """One training run of the ablation: a variant at a seed."""

    variant: Variant
    seed: int
    config: TrainConfig
    notes: list[str]
    changes: str

    @property
    def out_dir(self) -> Path:
        return Path(self.config.out_dir)


def read_result(run_dir: Path) -> dict[str, Any] | None:
    """The ``result.json`` of a finished run, or ``None``."""
    path = run_dir / RESULT_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); delete it to retrain that run") from err


def run_state(run: PlannedRun) -> tuple[str, str]:
    """``(state, detail)`` of a run's folder: ``done`` (a result of the same configuration),
    ``changed`` (a result or checkpoints of another configuration; detail: the differences),
    ``partial`` (checkpoints; detail: the newest step) or ``new``."""
    from trecvit.training.checkpoint import list_checkpoints

    out = run.out_dir
    result = read_result(out)
    checkpoints = list_checkpoints(out / "checkpoints")
    saved = None
    if result is not None:
        saved = TrainConfig.from_dict(result["config"], source=str(out / RESULT_FILE))
    elif checkpoints and (out / "config.yaml").is_file():
        saved = TrainConfig.from_yaml(out / "config.yaml")
    if saved is not None:
        changed = saved.semantic_differences(run.config)
        if changed:
            return "changed", "; ".join(changed)
    if result is not None:
        return "done", ""
    if checkpoints:
        return "partial", str(checkpoints[-1][0])
    return "new", ""

__all__ = ["BUILTIN_SETS", "RECIPE", "RECIPE_MODEL", "SET_TITLES", "SIZE_FIELDS", "TABLE1", "TABLE2",
           "FAILED_FILE", "PlannedRun", "RESULT_FILE", "Variant", "load_set", "parse_variants",
           "read_result", "read_set_file", "recipe", "run_state"]
