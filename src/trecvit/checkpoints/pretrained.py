"""``save_pretrained`` / ``from_pretrained``: ``config.json`` + ``model.safetensors``.

Files are written atomically (a temporary file in the same folder, then a
rename), so an interrupted save never leaves a half-written checkpoint in
place of a good one. The weights file carries a CRC-32 of every tensor in its
metadata; loading checks them, so a damaged file is refused with the name of the
tensor, not loaded as silently wrong weights. Loading reads safetensors only: it
cannot run code.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from trecvit.config import TRecViTConfig
from trecvit.checkpoints.integrity import atomic_write, tensor_checksums, verify_checksums
from trecvit.validation import check_names_and_shapes

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CHECKSUM_KEY = "trecvit.crc32"  # safetensors metadata: JSON {tensor name: CRC-32}
CONFIG_KEY = "trecvit.config"  # safetensors metadata: the config.json the weights were saved with


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
    metadata = {"format": "pt", "trecvit": __version__, CONFIG_KEY: config_text,
                CHECKSUM_KEY: json.dumps(tensor_checksums(state), sort_keys=True)}
    atomic_write(directory / WEIGHTS_NAME, lambda p: save_file(state, str(p), metadata=metadata))
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


def safetensors_metadata(path: Path) -> dict[str, str]:
    """The metadata of a safetensors file's header (no tensor is read)."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{path} is not a readable safetensors file (truncated or corrupt?): {err}"
                         ) from err


def check_saved_config(config_path: Path, weights: Path) -> None:
    """Refuse a ``config.json`` that differs from the config the weights were saved with (kept in the
    weights file by :func:`save_pretrained`), naming the fields; files without one are not checked."""
    saved_text = safetensors_metadata(weights).get(CONFIG_KEY)
    if saved_text is None:
        return
    try:
        saved = json.loads(saved_text)
        current = json.loads(Path(config_path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{weights}: the config stored with the weights is not valid JSON ({err})") from err
    changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if changed:
        listing = "; ".join(f"{k}: {current.get(k)!r} in {config_path.name}, {saved.get(k)!r} when saved"
                            for k in changed[:5])
        raise ValueError(f"{config_path} does not match the config {weights.name} was saved with "
                         f"({listing}); the file was edited or damaged. Restore it, or load the weights "
                         "into a model built from the intended config and save_pretrained it again")


def read_safetensors(path: Path, map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read a safetensors file, checking the per-tensor checksums that :func:`save_pretrained`
    writes (files from elsewhere have none and are read as they are)."""
    metadata = safetensors_metadata(path)
    try:
        state = load_file(str(path), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{path} is not a readable safetensors file (truncated or corrupt?): {err}"
                         ) from err
    if CHECKSUM_KEY in metadata:
        try:
            expected = json.loads(metadata[CHECKSUM_KEY])
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is corrupt: its checksum table is not valid JSON ({err})") from err
        verify_checksums(state, expected, source=path)
    return state


def check_weights(state: dict[str, torch.Tensor], source: str | Path) -> None:
    """Refuse non-float or non-finite weights, naming ``source`` and the tensor."""
    for key, tensor in state.items():
        if not tensor.is_floating_point():
            raise ValueError(f"{source}: tensor {key!r} has dtype {tensor.dtype}; weights must be "
                             "floating point")
        if not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise ValueError(f"{source}: tensor {key!r} holds {bad} NaN or infinite value(s)")


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
    state = read_safetensors(weights, map_location)
    if arch == "trecvit":
        model = TRecViT(config).to(map_location)
    else:
        from trecvit.baselines import FrameAverageViT

        model = FrameAverageViT(config).to(map_location)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    check_names_and_shapes({k: tuple(v.shape) for k, v in state.items()}, expected,
                           source=f"{weights} (config {directory / CONFIG_NAME})", what="tensor")
    check_weights(state, weights)
    check_saved_config(directory / CONFIG_NAME, weights)
    model.load_state_dict(state, strict=True)
    return model
