"""The training configuration: a documented dataclass, YAML files, command-line overrides.

Precedence: the defaults below, then a YAML file (``--config run.yaml``), then
command-line options (``--lr 3e-4``, ``--model patch_size=8``). Every field is
an option of ``trecvit train``: ``snake_case`` becomes ``--kebab-case``, booleans
also take ``--no-...``, and the ``model`` mapping takes repeated ``KEY=VALUE``.
The resolved configuration is saved as ``config.yaml`` in the run folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import textwrap
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from trecvit.validation import check_known_fields

DATA_FORMATS = ("synthetic", "folder", "csv", "kinetics", "ssv2")

# Fields that may change when a run is resumed: they do not change what is computed (a run folder
# may also be moved).
RUNTIME_FIELDS = frozenset({"out_dir", "num_workers", "decode_threads", "decode_timeout", "progress",
                            "log_every", "tensorboard", "device", "keep_last", "save_every"})


@dataclass
class TrainConfig:
    """Everything that defines a training run. Defaults: the synthetic motion demo's data.

    The field documentation below is generated from each field's ``metadata["help"]``, which
    is also the help of its ``trecvit train`` option.

    A task's own run configuration subclasses this one (``trecvit pretrain``'s
    :class:`trecvit.mae.PretrainConfig`): it may add fields, allow more ``data_formats`` and
    list the ``unused_fields`` it refuses unless left at their defaults (they get no
    command-line option; ``unused_by`` names the task in the error).
    """

    data_formats: ClassVar[tuple[str, ...]] = DATA_FORMATS
    unused_fields: ClassVar[tuple[str, ...]] = ()
    unused_by: ClassVar[str] = ""  # the task named when an unused field is set ("tracker training")

    # run
    out_dir: str = field(default="runs/trecvit", metadata={"help": (
        "the run folder, which gets config.yaml, metrics.csv, checkpoints/, tensorboard/, "
        "curves.png, per_class.csv and the final model/ (a save_pretrained folder)")})
    seed: int = field(default=0, metadata={"help": (
        "seeds the initialisation, the data order, augmentation and mixup; with the same seed and "
        "config, a CPU run is exactly reproducible")})
    device: str = field(default="cpu", metadata={"help": (
        "the torch device to train on: cpu, cuda or cuda:N; under torchrun, cuda means the "
        "process's LOCAL_RANK GPU")})
    # data
    data: str = field(default="synthetic", metadata={"help": (
        "the dataset format: synthetic (built in, no files), folder (root/<class>/<video>), csv "
        "(lines 'path,label' or 'path label'), kinetics (the official annotation CSV) or ssv2 "
        "(Something-Something v2 JSON)")})
    train_data: str | None = field(default=None, metadata={"help": (
        "the folder, CSV or JSON of the training split; required by every data format but "
        "synthetic, which does not use it")})
    val_data: str | None = field(default=None, metadata={"help": (
        "the folder, CSV or JSON of the validation split (not used by synthetic); without it "
        "there is no evaluation")})
    video_root: str | None = field(default=None, metadata={"help": (
        "where the videos are, for csv (whose paths are relative to it), kinetics and ssv2")})
    labels: str | None = field(default=None, metadata={"help": (
        "SSv2's labels JSON; for csv, an optional class-name file (one per line) fixing the "
        "class order")})
    num_frames: int = field(default=8, metadata={"help": "frames per training clip"})
    stride: int = field(default=1, metadata={"help": (
        "sample every stride-th frame of a video (from a random temporal offset in training)")})
    image_size: int = field(default=32, metadata={"help": (
        "side in pixels of the square frames fed to the model")})
    eval_views: str = field(default="1x1", metadata={"help": (
        "temporal clips x spatial crops per validation video, e.g. 4x3; the scores of the views "
        "are averaged")})
    hflip: bool = field(default=True, metadata={"help": (
        "random horizontal flips in training (turn off for direction-sensitive datasets such as "
        "SSv2)")})
    min_scale: float = field(default=0.08, metadata={"help": (
        "smallest area fraction of the random resized crop (1.0: no cropping)")})
    randaug_ops: int = field(default=0, metadata={"help": (
        "RandAugment-style colour operations per training clip (0: off)")})
    randaug_magnitude: int = field(default=9, metadata={"help": (
        "strength of the RandAugment-style colour operations, from 0 to 10")})
    mixup: float = field(default=0.0, metadata={"help": (
        "the alpha of mixup's Beta(alpha, alpha) mixing weights (0: off)")})
    cutmix: float = field(default=0.0, metadata={"help": (
        "the alpha of CutMix's Beta(alpha, alpha) box sizes (0: off)")})
    label_smoothing: float = field(default=0.0, metadata={"help": (
        "label smoothing applied to the one-hot targets (0: off)")})
    num_workers: int = field(default=0, metadata={"help": (
        "DataLoader worker processes (keep num_workers * decode_threads near the core count)")})
    decode_threads: int = field(default=1, metadata={"help": (
        "FFmpeg threads per video decoder (keep num_workers * decode_threads near the core "
        "count)")})
    decode_timeout: float | None = field(default=60.0, metadata={"help": (
        "seconds allowed to decode one video (none: no limit); a video that takes longer is "
        "skipped as a failed sample")})
    synthetic_train_size: int = field(default=4800, metadata={"help": (
        "clips in the synthetic training set (generated with seed)")})
    synthetic_val_size: int = field(default=600, metadata={"help": (
        "clips in the synthetic held-out set (generated with seed + 1000; 0: no evaluation)")})
    # model
    arch: str = field(default="trecvit", metadata={"help": (
        "the architecture to train, a name of the architecture table: trecvit, frame_average (the "
        "order-blind baseline: the same ViT with the temporal blocks removed, frames averaged), the "
        "paper's baselines vivit (full attention), vivit_fe (factorised encoder), vivit_fsa "
        "(factorised self-attention), cvivit (causal), the hybrids vit_lstm, vit_conv1d, vit_tsa, "
        "and pure_lru")})
    variant: str = field(default="S", metadata={"help": (
        "the ViT size: mu, Ti, S, M, B, L, H, g or G")})
    model: dict[str, Any] = field(default_factory=dict, metadata={"help": (
        "overrides of trecvit.TRecViTConfig fields: a mapping in YAML, e.g. {patch_size: 8, "
        "depth: 4}, or one KEY=VALUE per --model on the command line, e.g. --model patch_size=8 "
        "--model depth=4 (VALUE is read as YAML); num_classes comes from the data, image_size "
        "from image_size and frames_per_clip from num_frames unless given here")})
    init: str = field(default="scratch", metadata={"help": (
        "the starting weights: scratch (the official initialisation), or a path to an official "
        "TRecViT .npz, a save_pretrained folder or its model.safetensors (the head is "
        "re-initialised when the class count differs)")})
    vit_init: str | None = field(default=None, metadata={"help": (
        "ImageNet ViT weights for the patch embedding, position embedding and spatial blocks (a "
        "big_vision .npz or a timm / Hugging Face .safetensors), applied after init; the "
        "position embedding is resampled when the grid differs")})
    vit_input_norm: str = field(default="inception", metadata={"help": (
        "the pixel normalisation the vit_init ViT was trained with, folded into the patch "
        "embedding (TRecViT takes RGB in [0, 1]): inception ((x - 0.5) / 0.5: big_vision, timm "
        "augreg and Google's Hugging Face ViTs), imagenet (ImageNet mean / std) or none")})
    # optimisation
    epochs: int = field(default=10, metadata={"help": "passes over the training set"})
    max_steps: int | None = field(default=None, metadata={"help": (
        "stop after this many optimiser steps instead of epochs (the schedule then spans "
        "max_steps; none: train for epochs)")})
    batch_size: int = field(default=32, metadata={"help": (
        "clips per optimiser step, over all processes and accumulation steps (must divide by "
        "world_size * grad_accum)")})
    grad_accum: int = field(default=1, metadata={"help": "micro-batches per optimiser step"})
    lr: float = field(default=1e-3, metadata={"help": "peak learning rate of the cosine schedule"})
    min_lr: float = field(default=1e-5, metadata={"help": (
        "final learning rate of the cosine schedule (at most lr)")})
    warmup_steps: int = field(default=100, metadata={"help": (
        "optimiser steps of linear warm-up from 0 to lr")})
    weight_decay: float = field(default=0.05, metadata={"help": (
        "AdamW weight decay, applied to matrices only (not to biases, norms, a_param, the "
        "position embedding or the class token)")})
    beta1: float = field(default=0.9, metadata={"help": (
        "AdamW's beta1, the decay of the gradient's moving average")})
    beta2: float = field(default=0.999, metadata={"help": (
        "AdamW's beta2, the decay of the squared gradient's moving average")})
    clip_grad: float = field(default=1.0, metadata={"help": (
        "the global gradient norm is clipped to this value (0: off)")})
    ema_decay: float = field(default=0.0, metadata={"help": (
        "decay of an exponential moving average of the weights (0: off); when on, evaluation "
        "and the saved model use it")})
    bf16: bool = field(default=False, metadata={"help": "train under bfloat16 autocast"})
    grad_checkpointing: bool = field(default=False, metadata={"help": (
        "recompute activations in the backward pass (less memory, more time)")})
    compile: bool = field(default=False, metadata={"help": "torch.compile the model"})
    max_nonfinite: int = field(default=5, metadata={"help": (
        "a step whose loss or gradient is not finite is skipped and counted; this many in a row "
        "stop the run with an error")})
    # logging and checkpoints
    log_every: int = field(default=10, metadata={"help": (
        "optimiser steps between metric rows (console, metrics.csv, TensorBoard)")})
    eval_every: int = field(default=1, metadata={"help": (
        "epochs between evaluations (and one at the end)")})
    save_every: int = field(default=0, metadata={"help": (
        "optimiser steps between checkpoints (0: at the end of each epoch)")})
    keep_last: int = field(default=3, metadata={"help": (
        "how many of the newest checkpoints are kept (older ones are deleted)")})
    tensorboard: bool = field(default=True, metadata={"help": "also write TensorBoard events"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        kind = type(self).__name__
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not _matches(value, hints[f.name]):
                raise ValueError(f"{kind}.{f.name} must be {_type_name(hints[f.name])}, "
                                 f"got {value!r}")
        base = {f.name: f for f in dataclasses.fields(TrainConfig)}
        for name in self.unused_fields:  # a subclass's refused fields stay at TrainConfig's defaults
            f = base[name]
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            if name != "arch" and getattr(self, name) != default:
                raise ValueError(f"{kind}.{name} is not used by {self.unused_by}; leave it at {default!r}")
        if self.data not in self.data_formats:
            raise ValueError(f"{kind}.data must be one of {self.data_formats}, got {self.data!r}")
        from trecvit.architectures import ARCH_NAMES  # the architecture table

        if self.arch not in ARCH_NAMES:
            raise ValueError(f"{kind}.arch must be one of {ARCH_NAMES} (the architecture table), "
                             f"got {self.arch!r}")
        if self.vit_input_norm not in ("inception", "imagenet", "none"):
            raise ValueError(f"{kind}.vit_input_norm must be inception, imagenet or none, got "
                             f"{self.vit_input_norm!r}")
        if self.data != "synthetic" and not self.train_data:
            raise ValueError(f"{kind}.train_data is required for data={self.data!r}")
        for name in ("num_frames", "stride", "image_size", "batch_size", "grad_accum", "log_every",
                     "eval_every", "keep_last", "max_nonfinite", "synthetic_train_size", "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{kind}.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("num_workers", "decode_threads", "save_every", "warmup_steps", "randaug_ops",
                     "synthetic_val_size"):
            if getattr(self, name) < 0:
                raise ValueError(f"{kind}.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("lr", "min_lr", "weight_decay", "clip_grad", "mixup", "cutmix", "label_smoothing",
                     "ema_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{kind}.{name} must be >= 0, got {getattr(self, name)}")
        if self.decode_timeout is not None and not 0 < self.decode_timeout < float("inf"):
            raise ValueError(f"{kind}.decode_timeout must be > 0 or None, got {self.decode_timeout}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"{kind}.max_steps must be >= 1 or None, got {self.max_steps}")
        if not 0 < self.min_scale <= 1:
            raise ValueError(f"{kind}.min_scale must be in (0, 1], got {self.min_scale}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"{kind}.ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"{kind}.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.min_lr > self.lr:
            raise ValueError(f"{kind}.min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
        if self.batch_size % self.grad_accum:
            raise ValueError(f"{kind}.batch_size ({self.batch_size}) must be divisible by "
                             f"grad_accum ({self.grad_accum})")

    # ------------------------------------------------------------------- I/O
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "TrainConfig":
        """Build from a mapping, refusing unknown keys by name."""
        try:
            check_known_fields(data, cls, "training option(s)")
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None
        hints = typing.get_type_hints(cls)
        data = dict(data)
        for key, value in data.items():  # YAML 1.1 reads 3e-4 (no dot) as a string
            if isinstance(value, str) and hints[key] in (float, float | None):
                try:
                    data[key] = float(value)
                except ValueError:
                    pass
        try:
            return cls(**data)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}: {err}") from err

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> "TrainConfig":
        """Read a YAML mapping of fields (then apply ``overrides``)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"training config {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            raise ValueError(f"{path} is not valid YAML: {err}") from err
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a YAML mapping of training options")
        return cls.from_dict({**data, **overrides}, source=str(path))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def replace(self, **changes: Any) -> "TrainConfig":
        return self.from_dict({**self.to_dict(), **changes})

    def semantic_differences(self, other: "TrainConfig") -> list[str]:
        """Fields (other than runtime ones such as ``num_workers``) that differ."""
        a, b = self.to_dict(), other.to_dict()
        return [f"{k}: {a[k]!r} -> {b[k]!r}" for k in a if k not in RUNTIME_FIELDS and a[k] != b[k]]


# ------------------------------------------------------------ documentation
# The sections of the generated docstring; a field listed in none of them goes under "Other".
SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Run", ("out_dir", "seed", "device")),
    ("Data", ("data", "train_data", "val_data", "video_root", "labels", "num_frames", "stride",
              "image_size", "eval_views", "hflip", "min_scale", "randaug_ops", "randaug_magnitude",
              "mixup", "cutmix", "label_smoothing", "num_workers", "decode_threads", "decode_timeout",
              "synthetic_train_size", "synthetic_val_size")),
    ("Model", ("arch", "variant", "model", "init", "vit_init", "vit_input_norm")),
    ("Optimisation", ("epochs", "max_steps", "batch_size", "grad_accum", "lr", "min_lr",
                      "warmup_steps", "weight_decay", "beta1", "beta2", "clip_grad", "ema_decay",
                      "bf16", "grad_checkpointing", "compile", "max_nonfinite")),
    ("Logging and checkpoints", ("log_every", "eval_every", "save_every", "keep_last", "tensorboard",
                                 "progress")),
)


def field_help(name: str) -> str:
    """The documentation of field ``name`` (its ``metadata["help"]``)."""
    return {f.name: f for f in dataclasses.fields(TrainConfig)}[name].metadata["help"]


def default_text(f: dataclasses.Field) -> str:
    """A field's default as written in its documentation: ``on`` / ``off`` for booleans,
    ``none`` for None (also what the command line takes), ``no overrides`` for an empty mapping."""
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    if isinstance(default, bool):
        return "on" if default else "off"
    if default is None:
        return "none"
    if isinstance(default, dict):
        return yaml.safe_dump(default, default_flow_style=True).strip() if default else "no overrides"
    return str(default)


def field_docs(config_class: type | None = None) -> str:
    """The documentation of every field of ``config_class`` (default :class:`TrainConfig`) but
    its ``unused_fields``, by section (a field in no section of :data:`SECTIONS` goes under
    "Other"), for its docstring."""
    config_class = config_class or TrainConfig
    fields = {f.name: f for f in dataclasses.fields(config_class) if f.name not in config_class.unused_fields}
    listed = {name for _, names in SECTIONS for name in names}
    sections = [(title, tuple(n for n in names if n in fields)) for title, names in SECTIONS]
    sections.append(("Other", tuple(n for n in fields if n not in listed)))
    lines = []
    for title, names in sections:
        if not names:
            continue
        lines.append(title)
        for name in names:
            f = fields[name]
            lines += textwrap.wrap(f"{name} (default: {default_text(f)}): {f.metadata['help']}", 88,
                                   initial_indent="    ", subsequent_indent="        ",
                                   break_long_words=False, break_on_hyphens=False)
        lines.append("")
    return "\n".join(lines)


TrainConfig.__doc__ = f"{inspect.cleandoc(TrainConfig.__doc__ or '')}\n\n{field_docs(TrainConfig)}"


# --------------------------------------------------------------- type checks
def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is dict:
        return isinstance(value, dict)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    args = typing.get_args(hint)
    if args:
        return " or ".join(_type_name(a) for a in args)
    return "None" if hint is type(None) else getattr(hint, "__name__", str(hint))


# ------------------------------------------------------------- command line
def _parse_value(text: str) -> Any:
    """A command-line value: a number (``3e-4``), ``none`` -> None, else YAML (``[1, 2]``, ``true``)."""
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    value = yaml.safe_load(text)
    if isinstance(value, str) and value.lower() == "none":
        return None
    return value


def _scalar_parser(hint: Any, name: str):
    def parse(text: str) -> Any:
        value = _parse_value(text)
        if hint is str or (typing.get_origin(hint) is not None and str in typing.get_args(hint)):
            if value is not None:
                value = text  # keep strings verbatim ("1x1", paths with colons)
        if not _matches(value, hint):
            raise argparse.ArgumentTypeError(f"--{name} takes {_type_name(hint)}, got {text!r}")
        return value
    return parse


def key_value(text: str) -> tuple[str, Any]:
    """A ``--model KEY=VALUE`` argument as ``(key, value)``, the value read as :func:`_parse_value`
    does (``--model patch_size=8`` -> ``("patch_size", 8)``)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), _parse_value(value)


def add_config_arguments(parser: argparse.ArgumentParser, config_class: type | None = None) -> None:
    """Add one option per field of ``config_class`` (default :class:`TrainConfig`; its
    ``unused_fields`` get none), documented by the field's metadata (defaults suppressed, so only
    the options given on the command line override the YAML file)."""
    config_class = config_class or TrainConfig
    hints = typing.get_type_hints(config_class)
    group = parser.add_argument_group(
        "training options (override the --config file)",
        f"Each option sets the {config_class.__name__} field of the same name, which is spelt in "
        "snake_case in the --config YAML file (--train-data: train_data). Booleans also take "
        "--no-..., and an optional value takes none.")
    for f in dataclasses.fields(config_class):
        if f.name in config_class.unused_fields:
            continue
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        text = f"{f.metadata['help']} (default: {default_text(f)})".replace("%", "%%")
        if hint is bool:
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=text)
        elif typing.get_origin(hint) is dict:
            group.add_argument(flag, dest=f.name, type=key_value, action="append", metavar="KEY=VALUE",
                               default=argparse.SUPPRESS, help=text)
        else:
            group.add_argument(flag, dest=f.name, type=_scalar_parser(hint, f.name),
                               default=argparse.SUPPRESS, metavar=f.name.split("_")[-1].upper(),
                               help=text)


def config_from_args(args: argparse.Namespace, base: TrainConfig | None = None,
                     config_class: type | None = None) -> TrainConfig:
    """Apply the options present in ``args`` over ``base`` (or the YAML in ``args.config``); the
    result is a ``config_class`` (default :class:`TrainConfig`)."""
    config_class = config_class or TrainConfig
    if base is None:
        base = config_class.from_yaml(args.config) if getattr(args, "config", None) else config_class()
    hints = typing.get_type_hints(config_class)
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(config_class):
        if f.name in vars(args):
            value = getattr(args, f.name)
            if typing.get_origin(hints[f.name]) is dict:
                value = {**base.model, **dict(value)}
            changes[f.name] = value
    return base.replace(**changes)
