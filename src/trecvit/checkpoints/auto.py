"""Load a model of any architecture from a folder or file: the architecture table decides the class.

:func:`from_pretrained` reads a ``save_pretrained`` folder whose ``config.json``
names its ``arch`` (a row of :mod:`trecvit.architectures`); :func:`load_model`
also takes an official ``.npz`` checkpoint or a folder's bare
``model.safetensors``, and is what every command uses to load a checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from trecvit.architectures import get_architecture
from trecvit.base import VideoClassifier
from trecvit.checkpoints.official import OFFICIAL_CHECKPOINT_URL, load_official_checkpoint
from trecvit.checkpoints.pretrained import CONFIG_NAME, read_config_json

CHECKPOINT_ENV = "TRECVIT_CHECKPOINT"
MAE_ARCH = "trecvit_mae"  # trecvit.mae.MaskedAutoencoder.arch: a model folder, but not a classifier
TRACKER_ARCH = "trecvit_tracker"  # trecvit.tracking.PointTracker.arch: likewise
# What to do with a task model's folder where a classifier is expected.
TASK_FOLDER_HINTS = {
    MAE_ARCH: ("; this folder is a masked autoencoder (the autoencoder/ folder of a `trecvit pretrain` "
               "run): pass the run's model/ folder, its encoder as a TRecViT, or load it with "
               "trecvit.mae.MaskedAutoencoder.from_pretrained"),
    TRACKER_ARCH: ("; this folder is a point tracker (the model/ folder of a `trecvit train-tracker` run): "
                   "use it with trecvit eval-tracker or trecvit track, or load it with "
                   "trecvit.tracking.PointTracker.from_pretrained"),
}


def from_pretrained(directory: str | Path, map_location: str | torch.device = "cpu") -> VideoClassifier:
    """Load a folder written by ``save_pretrained``, whatever its architecture.

    Raises:
        FileNotFoundError: the folder, its ``config.json`` or its ``model.safetensors``
            is missing.
        ValueError: an unknown ``arch``, an unreadable config or weights file, or
            weights that do not match the config (every missing, unexpected or
            mis-shaped tensor is named).
    """
    _, arch = read_config(directory)
    return get_architecture(arch).model_class.from_pretrained(directory, map_location=map_location)


def read_config(directory: str | Path) -> tuple[object, str]:
    """A model folder's config: ``(config, arch)``, the config an instance of the architecture's
    config class (``TRecViTConfig`` for ``"trecvit"``)."""
    arch, data = read_config_json(directory)
    path = Path(directory) / CONFIG_NAME
    try:
        row = get_architecture(arch)
    except ValueError as err:
        hint = TASK_FOLDER_HINTS.get(arch, "")
        raise ValueError(f"{path}: {err}{hint}") from None
    try:
        return row.config_class.from_dict(data), arch
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from err


def how_to_get_checkpoint() -> str:
    """Where the official checkpoint is published and how to prepare it."""
    return (f"The official TRecViT-B Kinetics-400 checkpoint is published at\n"
            f"  {OFFICIAL_CHECKPOINT_URL}\n"
            f"Download it, convert it once with\n"
            f"  trecvit convert trecvit_B_k400.npz checkpoints/trecvit_B_k400\n"
            f"then pass --checkpoint checkpoints/trecvit_B_k400 (or set {CHECKPOINT_ENV}).")


def resolve_checkpoint(checkpoint: str | Path | None) -> Path:
    """``checkpoint``, or ``$TRECVIT_CHECKPOINT`` when ``None``; ``FileNotFoundError`` saying how
    to get one when there is none."""
    if checkpoint is None:
        checkpoint = os.environ.get(CHECKPOINT_ENV) or None
    if checkpoint is None:
        raise FileNotFoundError("no checkpoint given (--checkpoint).\n" + how_to_get_checkpoint())
    path = Path(checkpoint)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} not found.\n" + how_to_get_checkpoint())
    return path


def model_folder(checkpoint: str | Path) -> Path | None:
    """The ``save_pretrained`` folder of a checkpoint path (the folder itself, or the folder of
    its ``model.safetensors``), or ``None`` for an official ``.npz``."""
    path = Path(checkpoint)
    if path.is_dir():
        return path
    if path.is_file() and path.suffix == ".safetensors":
        return path.parent
    return None


def load_model(checkpoint: str | Path | None, device: str | torch.device = "cpu") -> VideoClassifier:
    """Load a model, in eval mode on ``device``, from a ``save_pretrained`` folder (any
    architecture), its ``model.safetensors``, or an official ``.npz`` file.

    ``None`` falls back to the ``TRECVIT_CHECKPOINT`` environment variable. A
    missing checkpoint raises ``FileNotFoundError`` saying how to get one.
    """
    path = resolve_checkpoint(checkpoint)
    folder = model_folder(path)
    model = load_official_checkpoint(path) if folder is None else from_pretrained(folder)
    return model.to(device).eval()
