"""``save_pretrained`` / ``from_pretrained``: ``config.json`` + ``model.safetensors``.

Files are written atomically (a temporary file in the same folder, then a
rename), so an interrupted save never leaves a half-written checkpoint in
place of a good one. Loading reads safetensors only: it cannot run code.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from trecvit.config import TRecViTConfig
from trecvit.validation import check_names_and_shapes

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it to ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_pretrained(model, directory: str | Path) -> Path:
    """Write ``model``'s config and weights to ``directory`` (created if needed)."""
    from trecvit import __version__

    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{directory} exists and is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    config_dict = model.config.to_dict()
    arch = getattr(model, "arch", "trecvit")
    if arch != "trecvit":  # a baseline sharing TRecViT's config (trecvit.baselines)
        config_dict = {"arch": arch, **config_dict}
    config_text = json.dumps(config_dict, indent=2) + "\n"
    atomic_write(directory / WEIGHTS_NAME,
                 lambda p: save_file(state, str(p), metadata={"format": "pt", "trecvit": __version__}))
    atomic_write(directory / CONFIG_NAME, lambda p: p.write_text(config_text, encoding="utf-8"))
    return directory


ARCHS = ("trecvit", "frame_average")


def read_config(path: Path) -> tuple[TRecViTConfig, str]:
    """Read a checkpoint folder's ``config.json``: ``(config, arch)``, where ``arch`` is
    ``"trecvit"`` or a baseline's name (``"frame_average"``)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object of TRecViTConfig fields")
    arch = data.pop("arch", "trecvit")
    if arch not in ARCHS:
        raise ValueError(f"{path}: unknown arch {arch!r}; known: {', '.join(ARCHS)}")
    try:
        return TRecViTConfig.from_dict(data), arch
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from err


def load_pretrained(directory: str | Path, map_location: str | torch.device = "cpu"):
    """Load a model saved by :func:`save_pretrained`.

    Raises:
        FileNotFoundError: the folder, its ``config.json`` or its
            ``model.safetensors`` is missing.
        ValueError: an unreadable config or weights file, or weights that do not
            match the config (every missing, unexpected or mis-shaped tensor is named).
    """
    from trecvit.model import TRecViT

    directory = Path(directory)
    if not directory.is_dir():
        if directory.is_file() and directory.suffix == ".npz":
            raise ValueError(f"{directory} is an official .npz checkpoint; load it with "
                             "trecvit.load_official_checkpoint or convert it with `trecvit convert`")
        raise FileNotFoundError(f"checkpoint folder {directory} does not exist")
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory} has no {name}; a TRecViT checkpoint folder holds "
                                    f"{CONFIG_NAME} and {WEIGHTS_NAME} (written by save_pretrained)")
    config, arch = read_config(directory / CONFIG_NAME)
    weights = directory / WEIGHTS_NAME
    try:
        state = load_file(str(weights), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{weights} is not a readable safetensors file: {err}") from err
    if arch == "trecvit":
        model = TRecViT(config).to(map_location)
    else:
        from trecvit.baselines import FrameAverageViT

        model = FrameAverageViT(config).to(map_location)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    check_names_and_shapes({k: tuple(v.shape) for k, v in state.items()}, expected,
                           source=f"{weights} (config {directory / CONFIG_NAME})", what="tensor")
    for key, tensor in state.items():
        if not tensor.is_floating_point():
            raise ValueError(f"{weights}: tensor {key!r} has dtype {tensor.dtype}; weights must be "
                             "floating point")
    model.load_state_dict(state, strict=True)
    return model
