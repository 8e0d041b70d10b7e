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
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DATA_FORMATS = ("synthetic", "folder", "csv", "kinetics", "ssv2")
ARCHS = ("trecvit", "frame_average")

# Fields that may change when a run is resumed: they do not change what is computed (a run folder
# may also be moved).
RUNTIME_FIELDS = frozenset({"out_dir", "num_workers", "decode_threads", "decode_timeout", "progress",
                            "log_every", "tensorboard", "device", "keep_last", "save_every"})


@dataclass
class TrainConfig:
    """Everything that defines a training run. Defaults: the synthetic motion demo's data.

    Run
        out_dir: run folder: ``config.yaml``, ``metrics.csv``, ``checkpoints/``,
            ``tensorboard/``, ``curves.png``, ``per_class.csv`` and the final
            ``model/`` (a ``save_pretrained`` folder).
        seed: seeds the initialisation, the data order, augmentation and mixup.
            With the same seed and config, a CPU run is exactly reproducible.
        device: ``cpu``, ``cuda`` or ``cuda:N``. Under ``torchrun``, ``cuda``
            means the process's ``LOCAL_RANK`` GPU.

    Data
        data: ``synthetic`` (built in, no files), ``folder`` (``root/<class>/<video>``),
            ``csv`` (lines ``path,label`` or ``path label``), ``kinetics``
            (the official annotation CSV) or ``ssv2`` (Something-Something v2 JSON).
        train_data / val_data: the folder, CSV or JSON of each split (not used
            by ``synthetic``). Without ``val_data`` there is no evaluation.
        video_root: where the videos are, for ``csv`` (relative paths),
            ``kinetics`` and ``ssv2``.
        labels: SSv2's labels JSON; for ``csv``, an optional class-name file
            (one per line) fixing the class order.
        num_frames: frames per training clip. stride: sample every ``stride``-th
            frame (random temporal offset in training).
        image_size: side of the square frames fed to the model.
        eval_views: temporal clips x spatial crops per validation video, e.g.
            ``4x3``; the scores of the views are averaged.
        hflip: random horizontal flips (turn off for direction-sensitive
            datasets such as SSv2). min_scale: smallest area fraction of the
            random resized crop (1.0: no cropping). randaug_ops /
            randaug_magnitude: RandAugment-style colour operations per clip
            (0: off) and their strength (0-10).
        mixup / cutmix: Beta(alpha, alpha) parameters (0: off).
        label_smoothing: on the one-hot targets.
        num_workers: DataLoader processes; decode_threads: FFmpeg threads per
            decoder (keep ``num_workers * decode_threads`` near the core count).
            decode_timeout: seconds allowed to decode one video (``none``: no
            limit); a video that takes longer is skipped as a failed sample.
        synthetic_train_size / synthetic_val_size: clips of the synthetic
            dataset (training seed ``seed``, held-out seed ``seed + 1000``).

    Model
        arch: ``trecvit``, or ``frame_average`` (the order-blind baseline: the
            same ViT with the temporal blocks removed, frames averaged).
        variant: ViT size (``mu, Ti, S, M, B, L, H, g, G``).
        model: overrides of :class:`trecvit.TRecViTConfig` fields, e.g.
            ``{patch_size: 8, depth: 4}``. ``num_classes`` comes from the data,
            ``image_size`` from ``image_size`` and ``frames_per_clip`` from
            ``num_frames`` unless given here.
        init: ``scratch`` (the official initialisation), or a path to an
            official TRecViT ``.npz``, a ``save_pretrained`` folder or its
            ``model.safetensors`` (the head is re-initialised when the class
            count differs).
        vit_init: ImageNet ViT weights for the patch embedding, position
            embedding and spatial blocks (a big_vision ``.npz`` or a timm / Hugging
            Face ``.safetensors``), applied after ``init``; the position
            embedding is resampled when the grid differs.
        vit_input_norm: the pixel normalisation the ViT was trained with, folded
            into the patch embedding (TRecViT takes RGB in [0, 1]):
            ``inception`` (``(x - 0.5) / 0.5``, big_vision, timm augreg and
            Google's Hugging Face ViTs), ``imagenet`` (ImageNet mean / std) or ``none``.

    Optimisation
        epochs: passes over the training set. max_steps: stop after this many
            optimiser steps instead (the schedule then spans ``max_steps``).
        batch_size: clips per optimiser step, over all processes and
            accumulation steps (must divide by ``world_size * grad_accum``).
        grad_accum: micro-batches per optimiser step.
        lr / min_lr: peak and final learning rate of the cosine schedule.
        warmup_steps: linear warm-up from 0 to ``lr``.
        weight_decay: AdamW decay, applied to matrices only (not to biases,
            norms, ``a_param``, the position embedding or the class token).
        beta1 / beta2: AdamW betas. clip_grad: global gradient-norm clipping
            (0: off).
        ema_decay: keep an exponential moving average of the weights (0: off);
            when on, evaluation and the saved model use it.
        bf16: bfloat16 autocast. grad_checkpointing: recompute activations in
            the backward pass. compile: ``torch.compile`` the model.
        max_nonfinite: a step whose loss or gradient is not finite is skipped
            and counted; this many in a row stop the run with an error.

    Logging and checkpoints
        log_every: steps between metric rows (console, ``metrics.csv``,
            TensorBoard). eval_every: epochs between evaluations (and at the end).
        save_every: steps between checkpoints (0: at the end of each epoch).
        keep_last: checkpoints kept. tensorboard: also write TensorBoard
            events. progress: show a progress bar.
    """

    # run
    out_dir: str = "runs/trecvit"
    seed: int = 0
    device: str = "cpu"
    # data
    data: str = "synthetic"
    train_data: str | None = None
    val_data: str | None = None
    video_root: str | None = None
    labels: str | None = None
    num_frames: int = 8
    stride: int = 1
    image_size: int = 32
    eval_views: str = "1x1"
    hflip: bool = True
    min_scale: float = 0.08
    randaug_ops: int = 0
    randaug_magnitude: int = 9
    mixup: float = 0.0
    cutmix: float = 0.0
    label_smoothing: float = 0.0
    num_workers: int = 0
    decode_threads: int = 1
    decode_timeout: float | None = 60.0
    synthetic_train_size: int = 4800
    synthetic_val_size: int = 600
    # model
    arch: str = "trecvit"
    variant: str = "S"
    model: dict[str, Any] = field(default_factory=dict)
    init: str = "scratch"
    vit_init: str | None = None
    vit_input_norm: str = "inception"
    # optimisation
    epochs: int = 10
    max_steps: int | None = None
    batch_size: int = 32
    grad_accum: int = 1
    lr: float = 1e-3
    min_lr: float = 1e-5
    warmup_steps: int = 100
    weight_decay: float = 0.05
    beta1: float = 0.9
    beta2: float = 0.999
    clip_grad: float = 1.0
    ema_decay: float = 0.0
    bf16: bool = False
    grad_checkpointing: bool = False
    compile: bool = False
    max_nonfinite: int = 5
    # logging and checkpoints
    log_every: int = 10
    eval_every: int = 1
    save_every: int = 0
    keep_last: int = 3
    tensorboard: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        hints = typing.get_type_hints(TrainConfig)
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not _matches(value, hints[f.name]):
                raise ValueError(f"TrainConfig.{f.name} must be {_type_name(hints[f.name])}, "
                                 f"got {value!r}")
        if self.data not in DATA_FORMATS:
            raise ValueError(f"TrainConfig.data must be one of {DATA_FORMATS}, got {self.data!r}")
        if self.arch not in ARCHS:
            raise ValueError(f"TrainConfig.arch must be one of {ARCHS}, got {self.arch!r}")
        if self.vit_input_norm not in ("inception", "imagenet", "none"):
            raise ValueError(f"TrainConfig.vit_input_norm must be inception, imagenet or none, got "
                             f"{self.vit_input_norm!r}")
        if self.data != "synthetic" and not self.train_data:
            raise ValueError(f"TrainConfig.train_data is required for data={self.data!r}")
        for name in ("num_frames", "stride", "image_size", "batch_size", "grad_accum", "log_every",
                     "eval_every", "keep_last", "max_nonfinite", "synthetic_train_size", "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("num_workers", "decode_threads", "save_every", "warmup_steps", "randaug_ops",
                     "synthetic_val_size"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("lr", "min_lr", "weight_decay", "clip_grad", "mixup", "cutmix", "label_smoothing",
                     "ema_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.decode_timeout is not None and not 0 < self.decode_timeout < float("inf"):
            raise ValueError(f"TrainConfig.decode_timeout must be > 0 or None, got {self.decode_timeout}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"TrainConfig.max_steps must be >= 1 or None, got {self.max_steps}")
        if not 0 < self.min_scale <= 1:
            raise ValueError(f"TrainConfig.min_scale must be in (0, 1], got {self.min_scale}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"TrainConfig.ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"TrainConfig.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.min_lr > self.lr:
            raise ValueError(f"TrainConfig.min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
        if self.batch_size % self.grad_accum:
            raise ValueError(f"TrainConfig.batch_size ({self.batch_size}) must be divisible by "
                             f"grad_accum ({self.grad_accum})")

    # ------------------------------------------------------------------- I/O
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "TrainConfig":
        """Build from a mapping, refusing unknown keys by name."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown training option(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(known))}")
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


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), _parse_value(value)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one option per :class:`TrainConfig` field (defaults suppressed, so only the
    options given on the command line override the YAML file)."""
    hints = typing.get_type_hints(TrainConfig)
    group = parser.add_argument_group(
        "training options (override the --config file)",
        "Each option is a field of trecvit.training.TrainConfig, whose docstring documents them all "
        "(python -c 'import trecvit.training as t; help(t.TrainConfig)').")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if hint is bool:
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=f"(default: {default})")
        elif typing.get_origin(hint) is dict:
            group.add_argument(flag, dest=f.name, type=_key_value, action="append", metavar="KEY=VALUE",
                               default=argparse.SUPPRESS,
                               help="TRecViTConfig override, repeatable (e.g. patch_size=8)")
        else:
            group.add_argument(flag, dest=f.name, type=_scalar_parser(hint, f.name),
                               default=argparse.SUPPRESS, metavar=f.name.split("_")[-1].upper(),
                               help=f"(default: {default})")


def config_from_args(args: argparse.Namespace, base: TrainConfig | None = None) -> TrainConfig:
    """Apply the options present in ``args`` over ``base`` (or the YAML in ``args.config``)."""
    if base is None:
        base = TrainConfig.from_yaml(args.config) if getattr(args, "config", None) else TrainConfig()
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(TrainConfig):
        if f.name in vars(args):
            value = getattr(args, f.name)
            if typing.get_origin(typing.get_type_hints(TrainConfig)[f.name]) is dict:
                value = {**base.model, **dict(value)}
            changes[f.name] = value
    return base.replace(**changes)
