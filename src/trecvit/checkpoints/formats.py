"""Weights files: what they are and how to read them, never unpickling.

:func:`detect_weights_format` names a file's or folder's format from its
extension and key names: one of :data:`VIT_FORMATS` (image ViTs: big_vision /
vit_jax ``.npz``, timm or Hugging Face ``.safetensors``) or
:data:`TRECVIT_FORMATS` (an official TRecViT ``.npz``, a ``save_pretrained``
folder, a bare ``model.safetensors``). Pickle-based files (``.pt``, ``.pth``,
``.bin``, ``.ckpt``, ``.pkl``) are refused without being opened; ``.npz`` is read
with ``allow_pickle=False``. :class:`_Source` hands out a file's arrays as float32
tensors and records which were used, and :class:`LoadReport` is what every
initialiser returns.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open

from trecvit.checkpoints.official import _as_float_array, open_npz, read_npz_arrays
from trecvit.checkpoints.pretrained import CONFIG_NAME, WEIGHTS_NAME

VIT_FORMATS = ("big_vision_npz", "timm_safetensors", "hf_safetensors")
TRECVIT_FORMATS = ("trecvit_npz", "trecvit_dir", "trecvit_safetensors")

_PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")


# ----------------------------------------------------------------------------
# The report
# ----------------------------------------------------------------------------
@dataclass
class LoadReport:
    """What an initialisation did.

    Attributes:
        source: the file or folder read.
        format: its format (see :func:`detect_weights_format`).
        loaded: the model's state-dict names set from the file.
        kept: the model's state-dict names left as they were (e.g. the temporal
            blocks and the head after :func:`load_vit_weights`).
        skipped: source keys that were not used (e.g. the ImageNet head).
        notes: adaptations and warnings, e.g. ``"resampled pos_embed 14x14 -> 2x2 (bicubic)"``.
    """

    source: str
    format: str
    loaded: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line: counts and notes."""
        text = (f"{self.format} {self.source}: loaded {len(self.loaded)} tensors, kept "
                f"{len(self.kept)} as they were, skipped {len(self.skipped)} source keys")
        return text + ("; " + "; ".join(self.notes) if self.notes else "")


# ----------------------------------------------------------------------------
# Reading files (never unpickling)
# ----------------------------------------------------------------------------
def _refuse_pickle(path: Path) -> None:
    raise ValueError(
        f"refusing to read {path}: {path.suffix} files are Python pickles, and loading a pickle can "
        "run arbitrary code. Convert it to safetensors in an environment you trust, e.g. "
        "`safetensors.torch.save_file(torch.load(path, weights_only=True), 'model.safetensors')` "
        "(for a training checkpoint, save its model state dict), and pass the .safetensors file")


def _open_npz(path: Path) -> np.lib.npyio.NpzFile:
    return open_npz(path, what="weights file")


def _npz_keys(path: Path) -> list[str]:
    with _open_npz(path) as archive:
        return list(archive.files)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` as stored (dtype unchanged; bfloat16 arrays stay ``V2``)."""
    return read_npz_arrays(path, what="weights file")


def _safetensors_keys(path: Path) -> list[str]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{path} is not a readable safetensors file: {err}") from err


class _Source:
    """A weights file's arrays by key. Hands out float32 tensors and records the keys used."""

    def __init__(self, path: Path, arrays: dict[str, np.ndarray | torch.Tensor]):
        self.path = path
        self.arrays = arrays
        self.used: set[str] = set()

    def __contains__(self, key: str) -> bool:
        return key in self.arrays

    @property
    def keys(self) -> list[str]:
        return list(self.arrays)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self.arrays[key].shape)

    def tensor(self, key: str) -> torch.Tensor:
        arr = self.arrays[key]
        if isinstance(arr, np.ndarray):
            t = torch.from_numpy(np.ascontiguousarray(_as_float_array(arr, key, self.path)))
        else:
            if not arr.is_floating_point():
                raise ValueError(f"{self.path}: tensor {key!r} has dtype {arr.dtype}; weights must be "
                                 "floating point")
            t = arr
        self.used.add(key)
        return t.float()

    def unused(self) -> list[str]:
        return sorted(set(self.arrays) - self.used)


# ----------------------------------------------------------------------------
# Format detection
# ----------------------------------------------------------------------------
def _strip_params(keys: Sequence[str]) -> str:
    """``"params/"`` when the TRecViT arrays sit under it (the reference-output files)."""
    return "params/" if "params/tokenizer/embedding/kernel" in keys else ""


def _npz_format(path: Path, keys: Sequence[str]) -> str:
    prefix = _strip_params(keys)
    if f"{prefix}tokenizer/embedding/kernel" in keys:
        return "trecvit_npz"
    if any(re.search(r"(^|/)Transformer/encoderblock(_0)?/", k) for k in keys):
        return "big_vision_npz"
    raise ValueError(f"{path}: not a known .npz weights layout (neither an official TRecViT checkpoint "
                     "with 'tokenizer/embedding/kernel' nor a big_vision / vit_jax ViT with "
                     f"'Transformer/encoderblock_0/...'); its first keys: {sorted(keys)[:5]}")


def _safetensors_format(path: Path, keys: Sequence[str]) -> str:
    if "encoder.tokenizer.patch_embed.weight" in keys or "tokenizer.patch_embed.weight" in keys:
        return "trecvit_safetensors"
    if any(k.endswith("embeddings.patch_embeddings.projection.weight") for k in keys):
        return "hf_safetensors"
    if "patch_embed.proj.weight" in keys:
        return "timm_safetensors"
    raise ValueError(f"{path}: not a known safetensors weights layout (TRecViT 'tokenizer.patch_embed."
                     "weight', timm ViT 'patch_embed.proj.weight' or Hugging Face ViT 'embeddings."
                     f"patch_embeddings.projection.weight'); its first keys: {sorted(keys)[:5]}")


def _weights_file(path: Path) -> Path:
    """``path`` itself, or the ``model.safetensors`` of a folder."""
    return path / WEIGHTS_NAME if path.is_dir() else path


def detect_weights_format(path: str | Path) -> str:
    """The format of a weights file or folder, from its extension and key names.

    Returns one of ``"trecvit_npz"`` (official TRecViT checkpoint),
    ``"big_vision_npz"`` (big_vision / vit_jax ViT), ``"timm_safetensors"``,
    ``"hf_safetensors"`` (Hugging Face ``ViTModel`` / ``ViTForImageClassification``;
    also a Hugging Face model folder), ``"trecvit_dir"`` (a ``save_pretrained``
    folder) or ``"trecvit_safetensors"`` (a bare TRecViT ``model.safetensors``).

    Raises:
        FileNotFoundError: no such file or folder.
        ValueError: a pickle-based file (``.pt``, ``.pth``, ``.bin``, ...; refused
            unread, since unpickling can run code), or an unknown layout.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"weights {path} do not exist")
    if path.is_dir():
        weights = path / WEIGHTS_NAME
        if not weights.is_file():
            pickles = sorted(p.name for p in path.iterdir() if p.suffix in _PICKLE_SUFFIXES)
            hint = (f" ({', '.join(pickles)} are pickles, refused because they can run code; convert "
                    "them to safetensors)") if pickles else ""
            raise ValueError(f"folder {path} has no {WEIGHTS_NAME}{hint}")
        fmt = _safetensors_format(weights, _safetensors_keys(weights))
        if fmt == "trecvit_safetensors" and (path / CONFIG_NAME).is_file():
            return "trecvit_dir"
        return fmt
    suffix = path.suffix.lower()
    if suffix in _PICKLE_SUFFIXES:
        _refuse_pickle(path)
    if suffix == ".npz":
        return _npz_format(path, _npz_keys(path))
    if suffix == ".safetensors":
        return _safetensors_format(path, _safetensors_keys(path))
    raise ValueError(f"{path}: unsupported weights file type {path.suffix!r}; expected an .npz "
                     "(official TRecViT or big_vision / vit_jax ViT), a .safetensors (TRecViT, timm "
                     "or Hugging Face ViT) or a save_pretrained folder")
