"""Initialise a TRecViT for training from existing weights.

Two starting points:

* :func:`load_vit_weights`: an ImageNet-pretrained image ViT (big_vision /
  vit_jax ``.npz``, timm or Hugging Face ``.safetensors``) initialises the
  patch embedding, position embedding, class token, the spatial (ViT) blocks
  and the final norm, as the paper does. The temporal blocks and the head are
  left as they are.
* :func:`init_from_trecvit`: a TRecViT checkpoint (official ``.npz``, a
  ``save_pretrained`` folder or a bare ``model.safetensors``) initialises every
  tensor, e.g. to fine-tune on a dataset with another number of classes (the
  classifier then keeps its fresh initialisation).

:func:`init_model_weights` picks one by :func:`detect_weights_format`. Each
returns a :class:`LoadReport` of what was loaded, kept, skipped and adapted.

The functions touch only the state-dict names ``encoder.tokenizer.*``,
``encoder.blocks.{i}.spatial.*``, ``encoder.blocks.{i}.temporal.*``, ``encoder.norm.*``
and ``head.*``
and read ``model.config`` (a :class:`~trecvit.config.TRecViTConfig`), so they
also serve models built from the same parts (e.g. a baseline without temporal
blocks). Every check runs before the model is modified: a failed load leaves it
untouched.

Only formats that cannot run code are read: ``.npz`` with
``allow_pickle=False`` and ``.safetensors``. Pickle-based files (``.pt``,
``.pth``, ``.bin``, ``.ckpt``, ``.pkl``) are refused without being opened.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from torch import nn
from torch.nn import functional as F

from trecvit.config import TRecViTConfig
from trecvit.checkpoints.official import (_as_float_array, convert_official_params, infer_config, open_npz,
                                          read_npz, read_npz_arrays)
from trecvit.base import upgrade_state_dict
from trecvit.checkpoints.auto import read_config
from trecvit.checkpoints.pretrained import CONFIG_NAME, WEIGHTS_NAME, read_safetensors
from trecvit.validation import check_names_and_shapes

logger = logging.getLogger(__name__)

__all__ = [
    "INPUT_NORMS",
    "TRECVIT_FORMATS",
    "VIT_FORMATS",
    "LoadReport",
    "checkpoint_config",
    "detect_weights_format",
    "fold_input_norm",
    "init_from_trecvit",
    "init_model_weights",
    "load_vit_weights",
    "resample_pos_embed",
    "resize_patch_kernel",
]

VIT_FORMATS = ("big_vision_npz", "timm_safetensors", "hf_safetensors")
TRECVIT_FORMATS = ("trecvit_npz", "trecvit_dir", "trecvit_safetensors")

_PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")

# Pixel normalisations a source ViT may have been trained with, as (mean, std) per RGB channel
# of [0, 1] pixels. "inception" maps [0, 1] to [-1, 1] (big_vision, vit_jax, google/vit-* on HF).
INPUT_NORMS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "inception": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}

InputNorm = str | tuple[Sequence[float], Sequence[float]] | None


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


# ----------------------------------------------------------------------------
# Tensor adaptations
# ----------------------------------------------------------------------------
def _check_mode(mode: str) -> None:
    if mode not in ("bilinear", "bicubic"):
        raise ValueError(f"pos_interpolation must be 'bilinear' or 'bicubic', got {mode!r}")


def resample_pos_embed(pos: torch.Tensor, src_grid: tuple[int, int], dst_grid: tuple[int, int],
                       mode: str = "bicubic") -> torch.Tensor:
    """Resample a position embedding ``[1, sh * sw, d]`` (row-major grid) to ``[1, gh * gw, d]``.

    Uses ``F.interpolate`` on the 2-D grid with ``align_corners=False``; ``mode``
    is ``"bilinear"`` or ``"bicubic"``. Constant embeddings stay constant.
    """
    _check_mode(mode)
    (sh, sw), (gh, gw) = tuple(src_grid), tuple(dst_grid)
    if pos.dim() != 3 or pos.shape[0] != 1 or pos.shape[1] != sh * sw:
        raise ValueError(f"position embedding of shape {tuple(pos.shape)} is not [1, {sh}*{sw}, d]")
    if (sh, sw) == (gh, gw):
        return pos.clone()
    d = pos.shape[-1]
    grid = pos.float().reshape(1, sh, sw, d).permute(0, 3, 1, 2)  # (1, d, sh, sw)
    grid = F.interpolate(grid, size=(gh, gw), mode=mode, align_corners=False)  # (1, d, gh, gw)
    return grid.permute(0, 2, 3, 1).reshape(1, gh * gw, d).to(pos.dtype)


def resize_patch_kernel(weight: torch.Tensor, patch_size: int, mode: str = "bilinear") -> torch.Tensor:
    """Resize a patch-embedding kernel ``[d, c, p, p]`` to ``[d, c, q, q]`` (``q = patch_size``).

    The pseudo-inverse resize of FlexiViT: the new kernel ``w'`` solves
    ``<resize(x), w'> = <x, w>`` for every ``p x p`` patch ``x`` in the least-squares
    sense, with ``resize`` = ``F.interpolate(mode, align_corners=False)``. For
    ``q >= p`` this is exact: the embedding of an image upsampled by ``q / p`` equals
    the original embedding of the original image, patch by patch.
    """
    d, c, p, p2 = weight.shape
    if p != p2:
        raise ValueError(f"patch kernel of shape {tuple(weight.shape)} is not square")
    q = int(patch_size)
    if q == p:
        return weight.clone()
    basis = torch.eye(p * p, dtype=torch.float64).reshape(p * p, 1, p, p)
    resized = F.interpolate(basis, size=(q, q), mode=mode, align_corners=False)  # row j: resize(e_j)
    resize_t = resized.reshape(p * p, q * q)  # resize(x) = resize_t.T @ x
    w = weight.double().reshape(d * c, p * p).T  # (p p, d c)
    new = torch.linalg.pinv(resize_t) @ w  # (q q, d c): resize_t @ new = w
    return new.T.reshape(d, c, q, q).to(weight.dtype)


def fold_input_norm(weight: torch.Tensor, bias: torch.Tensor, mean: Sequence[float],
                    std: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold a pixel normalisation ``(x - mean) / std`` into a patch embedding.

    ``weight [d, 3, p, p]``, ``bias [d]``; returns ``(weight', bias')`` with
    ``conv(x; weight', bias') == conv((x - mean) / std; weight, bias)``, so a ViT
    trained on normalised pixels reads TRecViT's ``[0, 1]`` RGB frames.
    """
    mean_t = torch.as_tensor(mean, dtype=weight.dtype)[None, :, None, None]
    std_t = torch.as_tensor(std, dtype=weight.dtype)[None, :, None, None]
    new_weight = weight / std_t
    new_bias = bias - (new_weight * mean_t).sum(dim=(1, 2, 3))
    return new_weight, new_bias


def _input_norm_values(input_norm: InputNorm) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    if input_norm is None:
        return None
    if isinstance(input_norm, str):
        if input_norm not in INPUT_NORMS:
            raise ValueError(f"unknown input_norm {input_norm!r}; known: {', '.join(INPUT_NORMS)}, or "
                             "a (mean, std) pair of 3-channel sequences")
        return INPUT_NORMS[input_norm]
    mean, std = input_norm
    mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(f"input_norm must be (mean, std) with 3 values each and std > 0, got {input_norm!r}")
    return mean, std


# ----------------------------------------------------------------------------
# ViT layouts: source key -> target name tables
# ----------------------------------------------------------------------------
def _same(x: torch.Tensor) -> torch.Tensor:
    return x


@dataclass(frozen=True)
class _Entry:
    """One target tensor: ``dst = fn(*source tensors)``; each source key has an expected shape."""

    dst: str
    src: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    fn: Callable[..., torch.Tensor] = _same


def _norm_entries(weight: str, bias: str, dst: str, d: int) -> list[_Entry]:
    return [_Entry(f"{dst}.weight", (weight,), ((d,),)), _Entry(f"{dst}.bias", (bias,), ((d,),))]


def _linear_entries(prefix: str, dst: str, d_in: int, d_out: int, *, flax: bool) -> list[_Entry]:
    """A dense layer: Flax ``kernel [in, out]`` (transposed) or torch ``weight [out, in]``."""
    if flax:
        return [_Entry(f"{dst}.weight", (f"{prefix}/kernel",), ((d_in, d_out),), lambda k: k.T),
                _Entry(f"{dst}.bias", (f"{prefix}/bias",), ((d_out,),))]
    return [_Entry(f"{dst}.weight", (f"{prefix}.weight",), ((d_out, d_in),)),
            _Entry(f"{dst}.bias", (f"{prefix}.bias",), ((d_out,),))]


def _cat_rows(*xs: torch.Tensor) -> torch.Tensor:
    return torch.cat(xs, dim=0)


@dataclass
class _ViTLayout:
    """Where a ViT format keeps each part."""

    format: str
    patch_kernel: str
    patch_bias: str
    kernel_shape: Callable[[int, int], tuple[int, ...]]  # (patch, width) -> source kernel shape
    kernel_patch_axis: int  # an axis of the source kernel that holds the patch size
    kernel_to_conv: Callable[[torch.Tensor], torch.Tensor]  # source kernel -> Conv2d [d, 3, p, p]
    pos: str | None
    cls: str
    norm: tuple[str, str]
    block_re: re.Pattern
    block: Callable[[TRecViTConfig, int, _Source], list[_Entry]]
    notes: list[str]


def _big_vision_layout(src: _Source) -> _ViTLayout:
    prefixes = sorted({m.group(1) for k in src.keys
                       if (m := re.match(r"(.*?)Transformer/encoderblock(?:_\d+)?/", k))})
    if len(prefixes) != 1:
        raise ValueError(f"{src.path}: found ViT encoders under several prefixes {prefixes}; "
                         "expected one image tower")
    pre = prefixes[0]
    notes = []
    scanned = f"{pre}Transformer/encoderblock/"
    for key in [k for k in src.keys if k.startswith(scanned)]:  # layers stacked on axis 0 (scan)
        arr = src.arrays.pop(key)
        for i in range(arr.shape[0]):
            src.arrays[f"{pre}Transformer/encoderblock_{i}/{key[len(scanned):]}"] = arr[i]
        if not notes:
            notes.append("unstacked the scanned encoder layers (Transformer/encoderblock/*)")
    mlp = ("MlpBlock_3" if any(k.startswith(f"{pre}Transformer/encoderblock_0/MlpBlock_3/") for k in src.keys)
           else "MlpBlock_0")
    pos = next((k for k in (f"{pre}pos_embedding", f"{pre}Transformer/posembed_input/pos_embedding")
                if k in src), None)

    def block(cfg: TRecViTConfig, i: int, _: _Source) -> list[_Entry]:
        d, h, m = cfg.width, cfg.num_heads, cfg.mlp_dim
        b, t = f"{pre}Transformer/encoderblock_{i}", f"encoder.blocks.{i}.spatial"
        a = f"{b}/MultiHeadDotProductAttention_0"
        qkv = ("query", "key", "value")
        return [
            *_norm_entries(f"{b}/LayerNorm_0/scale", f"{b}/LayerNorm_0/bias", f"{t}.norm1", d),
            # query/key/value kernels [d, h, d/h] -> fused qkv weight [3d, d] (rows q, k, v)
            _Entry(f"{t}.attn.qkv.weight", tuple(f"{a}/{n}/kernel" for n in qkv), ((d, h, d // h),) * 3,
                   lambda *ks: torch.cat([k.reshape(d, d).T for k in ks], dim=0)),
            _Entry(f"{t}.attn.qkv.bias", tuple(f"{a}/{n}/bias" for n in qkv), ((h, d // h),) * 3,
                   lambda *bs: torch.cat([x.reshape(-1) for x in bs], dim=0)),
            # out kernel [h, d/h, d] -> proj weight [d, h d/h]
            _Entry(f"{t}.attn.proj.weight", (f"{a}/out/kernel",), ((h, d // h, d),),
                   lambda k: k.reshape(d, d).T),
            _Entry(f"{t}.attn.proj.bias", (f"{a}/out/bias",), ((d,),)),
            *_norm_entries(f"{b}/LayerNorm_1/scale", f"{b}/LayerNorm_1/bias", f"{t}.norm2", d),
            *_linear_entries(f"{b}/{mlp}/Dense_0", f"{t}.mlp.fc1", d, m, flax=True),
            *_linear_entries(f"{b}/{mlp}/Dense_1", f"{t}.mlp.fc2", m, d, flax=True),
        ]

    return _ViTLayout(
        format="big_vision_npz",
        patch_kernel=f"{pre}embedding/kernel", patch_bias=f"{pre}embedding/bias",
        kernel_shape=lambda p, d: (p, p, 3, d), kernel_patch_axis=0,
        kernel_to_conv=lambda k: k.permute(3, 2, 0, 1),  # (p, p, 3, d) -> (d, 3, p, p)
        pos=pos, cls=f"{pre}cls",
        norm=(f"{pre}Transformer/encoder_norm/scale", f"{pre}Transformer/encoder_norm/bias"),
        block_re=re.compile(re.escape(pre) + r"Transformer/encoderblock_(\d+)/"),
        block=block, notes=notes,
    )


def _timm_layout(src: _Source) -> _ViTLayout:
    if any(k.startswith("norm_pre.") for k in src.keys):
        raise ValueError(f"{src.path}: key 'norm_pre.weight': this ViT normalises the tokens before the "
                         "first block (CLIP style), which TRecViT's tokenizer has no place for")

    def block(cfg: TRecViTConfig, i: int, src: _Source) -> list[_Entry]:
        d, m = cfg.width, cfg.mlp_dim
        b, t = f"blocks.{i}", f"encoder.blocks.{i}.spatial"
        entries = [
            *_norm_entries(f"{b}.norm1.weight", f"{b}.norm1.bias", f"{t}.norm1", d),
            *_linear_entries(f"{b}.attn.qkv", f"{t}.attn.qkv", d, 3 * d, flax=False),
            *_linear_entries(f"{b}.attn.proj", f"{t}.attn.proj", d, d, flax=False),
            *_norm_entries(f"{b}.norm2.weight", f"{b}.norm2.bias", f"{t}.norm2", d),
            *_linear_entries(f"{b}.mlp.fc1", f"{t}.mlp.fc1", d, m, flax=False),
            *_linear_entries(f"{b}.mlp.fc2", f"{t}.mlp.fc2", m, d, flax=False),
        ]
        # LayerScale (DeiT III): x + gamma * f(x); folded exactly into the layer's output projection.
        for gamma, layer in ((f"{b}.ls1.gamma", f"{t}.attn.proj"), (f"{b}.ls2.gamma", f"{t}.mlp.fc2")):
            if gamma in src:
                entries = [_Entry(e.dst, e.src + (gamma,), e.shapes + ((d,),),
                                  (lambda w, g: w * g[:, None]) if e.dst.endswith(".weight")
                                  else (lambda w, g: w * g))
                           if e.dst.startswith(layer + ".") else e for e in entries]
        return entries

    notes = ["timm ViTs use the exact GELU, TRecViT the tanh form (outputs differ slightly)"]
    if any(k.endswith(".ls1.gamma") for k in src.keys):
        notes.append("folded LayerScale (ls1/ls2.gamma) into attn.proj and mlp.fc2")
    return _ViTLayout(
        format="timm_safetensors",
        patch_kernel="patch_embed.proj.weight", patch_bias="patch_embed.proj.bias",
        kernel_shape=lambda p, d: (d, 3, p, p), kernel_patch_axis=3, kernel_to_conv=_same,
        pos="pos_embed" if "pos_embed" in src else None, cls="cls_token",
        norm=("norm.weight", "norm.bias"), block_re=re.compile(r"blocks\.(\d+)\."),
        block=block, notes=notes,
    )


def _hf_layout(src: _Source) -> _ViTLayout:
    suffix = "embeddings.patch_embeddings.projection.weight"
    pre = next(k for k in src.keys if k.endswith(suffix))[: -len(suffix)]  # "vit." or ""

    def block(cfg: TRecViTConfig, i: int, _: _Source) -> list[_Entry]:
        d, m = cfg.width, cfg.mlp_dim
        b, t = f"{pre}encoder.layer.{i}", f"encoder.blocks.{i}.spatial"
        a = f"{b}.attention.attention"
        return [
            *_norm_entries(f"{b}.layernorm_before.weight", f"{b}.layernorm_before.bias", f"{t}.norm1", d),
            _Entry(f"{t}.attn.qkv.weight", tuple(f"{a}.{n}.weight" for n in ("query", "key", "value")),
                   ((d, d),) * 3, _cat_rows),
            _Entry(f"{t}.attn.qkv.bias", tuple(f"{a}.{n}.bias" for n in ("query", "key", "value")),
                   ((d,),) * 3, _cat_rows),
            *_linear_entries(f"{b}.attention.output.dense", f"{t}.attn.proj", d, d, flax=False),
            *_norm_entries(f"{b}.layernorm_after.weight", f"{b}.layernorm_after.bias", f"{t}.norm2", d),
            *_linear_entries(f"{b}.intermediate.dense", f"{t}.mlp.fc1", d, m, flax=False),
            *_linear_entries(f"{b}.output.dense", f"{t}.mlp.fc2", m, d, flax=False),
        ]

    e = f"{pre}embeddings"
    return _ViTLayout(
        format="hf_safetensors",
        patch_kernel=f"{e}.patch_embeddings.projection.weight",
        patch_bias=f"{e}.patch_embeddings.projection.bias",
        kernel_shape=lambda p, d: (d, 3, p, p), kernel_patch_axis=3, kernel_to_conv=_same,
        pos=f"{e}.position_embeddings" if f"{e}.position_embeddings" in src else None,
        cls=f"{e}.cls_token", norm=(f"{pre}layernorm.weight", f"{pre}layernorm.bias"),
        block_re=re.compile(re.escape(pre) + r"encoder\.layer\.(\d+)\."),
        block=block,
        notes=["Hugging Face ViTs use the exact GELU and LayerNorm eps 1e-12, TRecViT the tanh GELU and "
               "eps 1e-6 (outputs differ slightly)"],
    )


_LAYOUTS: dict[str, Callable[[_Source], _ViTLayout]] = {
    "big_vision_npz": _big_vision_layout, "timm_safetensors": _timm_layout, "hf_safetensors": _hf_layout,
}


def _model_desc(cfg: TRecViTConfig) -> str:
    return (f"model width {cfg.width}, num_heads {cfg.num_heads}, mlp_dim {cfg.mlp_dim}, "
            f"patch_size {cfg.patch_size}")


def _convert_entries(src: _Source, entries: Sequence[_Entry], cfg: TRecViTConfig) -> dict[str, torch.Tensor]:
    """Check every source key of ``entries`` for presence and shape, then convert."""
    for entry in entries:
        for key, expected in zip(entry.src, entry.shapes):
            if key not in src:
                raise ValueError(f"{src.path}: missing key {key!r} (needed for {entry.dst})")
            if src.shape(key) != expected:
                raise ValueError(f"{src.path}: key {key!r} has shape {src.shape(key)}, but this model needs "
                                 f"{expected} ({_model_desc(cfg)})")
    return {e.dst: e.fn(*(src.tensor(k) for k in e.src)) for e in entries}


def _source_grid(n: int, model_grid: tuple[int, int], source_grid: tuple[int, int] | None,
                 key: str, path: Path) -> tuple[tuple[int, int], int]:
    """``(grid, prefix)`` of a ``[1, n, d]`` source position embedding: its patch grid and
    whether its first row belongs to the class token (``prefix`` 1) or not (0)."""
    if source_grid is not None:
        gh, gw = source_grid
        if n - gh * gw not in (0, 1):
            raise ValueError(f"{path}: key {key!r} has {n} rows, which does not fit source_grid "
                             f"{gh}x{gw} (with or without a class-token row)")
        return (gh, gw), n - gh * gw
    for prefix in (0, 1):
        if n - prefix == model_grid[0] * model_grid[1]:
            return tuple(model_grid), prefix
    for prefix in (0, 1):
        side = math.isqrt(max(n - prefix, 0))
        if side > 0 and side * side == n - prefix:
            return (side, side), prefix
    raise ValueError(f"{path}: key {key!r} has {n} rows, which is neither a square patch grid nor one "
                     "plus a square grid; pass source_grid=(rows, columns)")


# ----------------------------------------------------------------------------
# Image ViT -> TRecViT
# ----------------------------------------------------------------------------
def _open_vit(path: Path, fmt: str) -> _Source:
    if fmt == "big_vision_npz":
        return _Source(path, dict(_read_npz(path)))
    weights = _weights_file(path)
    return _Source(weights, dict(read_safetensors(weights)))


def _patch_embedding(src: _Source, layout: _ViTLayout, cfg: TRecViTConfig, resize_patch: bool,
                     input_norm: InputNorm, report: LoadReport) -> dict[str, torch.Tensor]:
    d, p = cfg.width, cfg.patch_size
    key = layout.patch_kernel
    if key not in src:
        raise ValueError(f"{src.path}: missing key {key!r} (the patch embedding)")
    shape, expected = src.shape(key), layout.kernel_shape(p, d)
    src_p = p
    if shape != expected:
        src_p = shape[layout.kernel_patch_axis] if len(shape) == 4 else -1
        if len(shape) != 4 or layout.kernel_shape(src_p, d) != shape:
            raise ValueError(f"{src.path}: key {key!r} has shape {shape}, but this model needs "
                             f"{expected} ({_model_desc(cfg)})")
        if not resize_patch:
            raise ValueError(f"{src.path}: key {key!r} has shape {shape} (patch size {src_p}), but this "
                             f"model has patch_size {p} and needs {expected}; build the model with "
                             f"patch_size={src_p}, or pass resize_patch=True to resample the kernel")
    weight = layout.kernel_to_conv(src.tensor(key))  # (d, 3, p', p')
    if src_p != p:
        weight = resize_patch_kernel(weight, p)
        report.notes.append(f"resized the patch-embedding kernel {src_p}x{src_p} -> {p}x{p} (pseudo-inverse)")
    bias = _convert_entries(src, [_Entry("bias", (layout.patch_bias,), ((d,),))], cfg)["bias"]
    norm = _input_norm_values(input_norm)
    if norm is None:
        report.notes.append("no input normalisation folded (TRecViT takes RGB in [0, 1]; pass input_norm "
                            "if the source ViT was trained on normalised pixels)")
    else:
        weight, bias = fold_input_norm(weight, bias, *norm)
        report.notes.append(f"folded input normalisation mean={norm[0]} std={norm[1]} into the patch "
                            "embedding")
    return {"encoder.tokenizer.patch_embed.weight": weight, "encoder.tokenizer.patch_embed.bias": bias}


def _pos_and_cls(src: _Source, layout: _ViTLayout, cfg: TRecViTConfig, target: Mapping[str, tuple],
                 mode: str, source_grid: tuple[int, int] | None,
                 report: LoadReport) -> dict[str, torch.Tensor]:
    d = cfg.width
    out: dict[str, torch.Tensor] = {}
    learn = "encoder.tokenizer.pos_embed" in target
    has_cls = "encoder.tokenizer.cls_token" in target
    pos_cls = None
    pos_prefix = 0
    if layout.pos is not None:
        key = layout.pos
        shape = src.shape(key)
        if len(shape) != 3 or shape[0] != 1 or shape[2] != d or shape[1] < 1:
            raise ValueError(f"{src.path}: key {key!r} has shape {shape}, but this model needs "
                             f"(1, N, {d}) or (1, 1 + N, {d}) ({_model_desc(cfg)})")
        grid, prefix = _source_grid(shape[1], cfg.grid_hw, source_grid, key, src.path)
        pos_prefix = prefix
        if learn or (prefix and has_cls):
            pos = src.tensor(key)
            pos_cls = pos[:, :1] if prefix else None
            if learn:
                patches = pos[:, prefix:]
                if grid != tuple(cfg.grid_hw):
                    patches = resample_pos_embed(patches, grid, cfg.grid_hw, mode)
                    report.notes.append(f"resampled pos_embed {grid[0]}x{grid[1]} -> "
                                        f"{cfg.grid_hw[0]}x{cfg.grid_hw[1]} ({mode})")
                out["encoder.tokenizer.pos_embed"] = patches
        if not learn:
            row = " (its class-token row was)" if pos_cls is not None else ""
            report.notes.append(f"the model's position embedding is the fixed {cfg.posemb}: the file's "
                                f"{key!r} was not loaded{row}")
    elif learn:
        report.notes.append("no position embedding in the file: tokenizer.pos_embed kept as it was")

    cls_key = layout.cls if layout.cls in src else None
    if has_cls and cls_key is not None:
        cls_entry = _Entry("encoder.tokenizer.cls_token", (cls_key,), ((1, 1, d),))
        out.update(_convert_entries(src, [cls_entry], cfg))
        if pos_cls is not None:
            out["encoder.tokenizer.cls_token"] = out["encoder.tokenizer.cls_token"] + pos_cls
            report.notes.append("folded the class token's position embedding into cls_token (TRecViT adds "
                                "none to the class token)")
    elif has_cls:
        report.notes.append("no class token in the file: tokenizer.cls_token kept as it was")
    elif cls_key is not None or pos_prefix:
        report.notes.append("the model has no class token (pool_type='gap'): dropped the file's class "
                            "token" + (" and its position-embedding row" if pos_prefix else ""))
    return out


def load_vit_weights(model: nn.Module, path: str | Path, *, strict_depth: bool = True,
                     pos_interpolation: str = "bicubic", resize_patch: bool = False,
                     input_norm: InputNorm = None,
                     source_grid: tuple[int, int] | None = None) -> LoadReport:
    """Initialise the ViT parts of ``model`` from an image ViT's weights.

    Sets the trunk's patch embedding (``encoder.tokenizer.patch_embed``, ``[d, 3, p, p]``),
    learnt position embedding (``encoder.tokenizer.pos_embed``, ``[1, gh * gw, d]``),
    class token (``encoder.tokenizer.cls_token``, ``[1, 1, d]``, if the model has one),
    every spatial block (``encoder.blocks.{i}.spatial``) and the final ``encoder.norm``. The
    temporal blocks and the head are left as they are.

    Args:
        model: a :class:`trecvit.TRecViT` (or a model with its attribute names).
        path: a big_vision / vit_jax ``.npz``, a timm ``.safetensors`` or a Hugging
            Face ViT ``.safetensors`` (or its folder).
        strict_depth: a source with another number of blocks raises; with
            ``False`` the first ``min(depths)`` blocks are loaded.
        pos_interpolation: ``"bicubic"`` or ``"bilinear"``, for a source position
            embedding on another patch grid than ``config.grid_hw``.
        resize_patch: accept a source of another patch size, resampling its kernel
            with :func:`resize_patch_kernel`; otherwise that raises.
        input_norm: the pixel normalisation the source was trained with, folded into
            the patch embedding (:func:`fold_input_norm`): ``"inception"`` (``[-1, 1]``,
            big_vision / vit_jax), ``"imagenet"``, or ``(mean, std)``. ``None`` folds nothing.
        source_grid: the source position embedding's patch grid, when it is not
            square (it is read off the number of rows otherwise).

    A source position embedding with a class-token row (``[1, 1 + N, d]``) has that
    row added to the class token (TRecViT adds no position embedding to it, so the
    class token's input is unchanged), or dropped for a model without a class token.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a pickle file, an unknown layout, a TRecViT checkpoint (use
            :func:`init_from_trecvit`), a missing key, a width / heads / MLP / patch
            mismatch (naming the key and both shapes), another depth with
            ``strict_depth``, or a block key TRecViT's spatial block has no place for.
    """
    _check_mode(pos_interpolation)
    path = Path(path)
    fmt = detect_weights_format(path)
    if fmt not in VIT_FORMATS:
        raise ValueError(f"{path} is a TRecViT checkpoint ({fmt}), not an image ViT; load it with "
                         "init_from_trecvit (or init_model_weights)")
    src = _open_vit(path, fmt)
    layout = _LAYOUTS[fmt](src)
    cfg: TRecViTConfig = model.config
    report = LoadReport(source=str(path), format=fmt, notes=list(layout.notes))
    target = {k: tuple(v.shape) for k, v in model.state_dict().items()}

    state = _patch_embedding(src, layout, cfg, resize_patch, input_norm, report)
    state.update(_pos_and_cls(src, layout, cfg, target, pos_interpolation, source_grid, report))

    indices = sorted({int(m.group(1)) for k in src.keys if (m := layout.block_re.match(k))})
    if not indices:
        raise ValueError(f"{path}: no transformer blocks found (keys like {layout.block_re.pattern!r})")
    if indices != list(range(len(indices))):
        raise ValueError(f"{path}: transformer blocks are numbered {indices}, expected 0..{len(indices) - 1}")
    src_depth, depth = len(indices), len(model.encoder.blocks)
    if src_depth != depth:
        if strict_depth:
            raise ValueError(f"{path}: the file has {src_depth} transformer blocks but the model has depth "
                             f"{depth}; pass strict_depth=False to load the first {min(src_depth, depth)}")
        report.notes.append(f"depth: loaded the first {min(src_depth, depth)} of the file's {src_depth} "
                            f"blocks into the model's {depth}")
    num_blocks = min(src_depth, depth)
    entries = [e for i in range(num_blocks) for e in layout.block(cfg, i, src)]
    if layout.norm[0] in src:  # the final norm (absent in timm models pooled through fc_norm)
        entries += _norm_entries(*layout.norm, "encoder.norm", cfg.width)
    else:
        report.notes.append("no final norm in the file: norm kept as it was")
    if fmt != "big_vision_npz":
        report.notes.append(f"num_heads is not stored in {fmt} files: assumed the source had "
                            f"{cfg.num_heads} heads")
    state.update(_convert_entries(src, entries, cfg))

    for key in src.unused():
        m = layout.block_re.match(key)
        if m and int(m.group(1)) < num_blocks:
            raise ValueError(f"{path}: key {key!r} of a loaded block has no counterpart in TRecViT's "
                             "spatial block (norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2); "
                             "refusing to load a block that would compute something else")
    for name, value in state.items():
        if name not in target:
            raise ValueError(f"the model has no tensor {name!r} to load from {path}")
        if tuple(value.shape) != target[name]:  # the per-key checks above should make this unreachable
            raise ValueError(f"{path}: converted {name!r} has shape {tuple(value.shape)}, the model's is "
                             f"{target[name]}")
    model.load_state_dict(state, strict=False)
    report.loaded = sorted(state)
    report.kept = sorted(set(target) - set(state))
    report.skipped = src.unused()
    logger.info(report.summary())
    return report


# ----------------------------------------------------------------------------
# TRecViT checkpoint -> TRecViT
# ----------------------------------------------------------------------------
def _read_trecvit(path: Path, fmt: str, cfg: TRecViTConfig, report: LoadReport
                  ) -> tuple[dict[str, torch.Tensor], TRecViTConfig | None]:
    """The checkpoint's state dict (our names) and its config when known."""
    if fmt == "trecvit_npz":
        raw = _read_npz(path)
        prefix = _strip_params(list(raw))
        params = {k[len(prefix):]: _as_float_array(v, k, path)
                  for k, v in raw.items() if k.startswith(prefix)}
        others = sorted(k for k in raw if not k.startswith(prefix))
        if others:
            report.skipped.extend(others)
            report.notes.append(f"read the arrays under {prefix!r}; ignored {len(others)} others")
        shapes = {k: tuple(v.shape) for k, v in params.items()}
        pos = shapes.get("tokenizer/pos_embedding")
        overrides = {}
        if pos is None or (len(pos) == 3 and pos[1] == cfg.grid_hw[0] * cfg.grid_hw[1]):
            overrides["image_size"] = cfg.image_size
        try:
            src_cfg = infer_config(shapes, **overrides)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from err
        return convert_official_params(params, src_cfg, source=str(path)), src_cfg
    weights = _weights_file(path)
    src_cfg = read_config(path)[0] if fmt == "trecvit_dir" else None
    state = upgrade_state_dict(read_safetensors(weights))
    for key, tensor in state.items():
        if not tensor.is_floating_point():
            raise ValueError(f"{weights}: tensor {key!r} has dtype {tensor.dtype}; weights must be "
                             "floating point")
    return state, src_cfg


def init_from_trecvit(model: nn.Module, path: str | Path, *,
                      pos_interpolation: str = "bicubic") -> LoadReport:
    """Initialise every tensor of ``model`` from a TRecViT checkpoint, to fine-tune it.

    Args:
        model: a :class:`trecvit.TRecViT`, or a model with its attribute names
            (a model without temporal blocks loads the rest; the checkpoint's
            ``encoder.blocks.*.temporal.*`` tensors are then skipped and reported).
        path: an official TRecViT ``.npz`` (also the reference-output files, whose
            weights are under ``params/``), a ``save_pretrained`` folder
            (``config.json`` + ``model.safetensors``) or a bare ``model.safetensors``.
        pos_interpolation: ``"bicubic"`` or ``"bilinear"``, for a learnt position
            embedding on another patch grid (resampled to ``config.grid_hw``).

    When the checkpoint has another number of classes, the classifier
    (``head.classifier.*``) keeps its fresh initialisation (see the report's notes).

    Raises:
        FileNotFoundError: no such file or folder.
        ValueError: a pickle file, an image-ViT file (use :func:`load_vit_weights`),
            or any other missing, unexpected or mis-shaped tensor, named in the message.
    """
    _check_mode(pos_interpolation)
    path = Path(path)
    fmt = detect_weights_format(path)
    if fmt not in TRECVIT_FORMATS:
        raise ValueError(f"{path} is an image ViT ({fmt}), not a TRecViT checkpoint; load it with "
                         "load_vit_weights (or init_model_weights)")
    cfg: TRecViTConfig = model.config
    report = LoadReport(source=str(path), format=fmt)
    state, src_cfg = _read_trecvit(path, fmt, cfg, report)
    target = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = dict(target)

    if not any(".temporal." in k for k in target):
        temporal = sorted(k for k in state if re.match(r"encoder\.blocks\.\d+\.temporal\.", k))
        if temporal:
            for k in temporal:
                del state[k]
            report.skipped.extend(temporal)
            report.notes.append(f"the model has no temporal blocks: skipped the checkpoint's "
                                f"{len(temporal)} temporal-block tensors")

    weight = "head.classifier.weight"
    if (weight in state and weight in target and tuple(state[weight].shape) != target[weight]
            and tuple(state[weight].shape[1:]) == target[weight][1:]):
        num_src = state[weight].shape[0]
        head = [k for k in ("head.classifier.weight", "head.classifier.bias") if k in state]
        for k in head:
            del state[k]
            expected.pop(k, None)
        report.skipped.extend(head)
        report.notes.append(f"the checkpoint has {num_src} classes, the model "
                            f"{target[weight][0]}: head.classifier kept at its fresh initialisation")

    pos = "encoder.tokenizer.pos_embed"
    if pos in state and pos in target and tuple(state[pos].shape) != target[pos]:
        shape, want = tuple(state[pos].shape), target[pos]
        if len(shape) == 3 and shape[0] == 1 and shape[2] == want[2]:
            src_grid = (src_cfg.grid_hw if src_cfg is not None and src_cfg.posemb == "learn"
                        and src_cfg.grid_hw[0] * src_cfg.grid_hw[1] == shape[1] else None)
            grid, prefix = _source_grid(shape[1], cfg.grid_hw, src_grid, pos, path)
            if prefix == 0:
                state[pos] = resample_pos_embed(state[pos].float(), grid, cfg.grid_hw, pos_interpolation)
                report.notes.append(f"resampled pos_embed {grid[0]}x{grid[1]} -> "
                                    f"{cfg.grid_hw[0]}x{cfg.grid_hw[1]} ({pos_interpolation})")

    check_names_and_shapes({k: tuple(v.shape) for k, v in state.items()}, expected,
                           source=str(path), what="tensor")
    model.load_state_dict(state, strict=False)
    report.loaded = sorted(state)
    report.kept = sorted(set(target) - set(state))
    report.skipped = sorted(report.skipped)
    logger.info(report.summary())
    return report


def checkpoint_config(path: str | Path):
    """The config of a TRecViT checkpoint (official ``.npz``, ``save_pretrained`` folder or its
    ``model.safetensors``), e.g. to build the model to fine-tune from it; ``None`` for an image
    ViT's weights (they fix only the ViT part)."""
    path = Path(path)
    fmt = detect_weights_format(path)
    if fmt == "trecvit_dir":
        return read_config(path)[0]
    if fmt == "trecvit_safetensors":
        if not (path.parent / CONFIG_NAME).is_file():
            raise ValueError(f"{path}: a bare model.safetensors needs its {CONFIG_NAME} beside it")
        return read_config(path.parent)[0]
    if fmt == "trecvit_npz":
        return infer_config({k: tuple(v.shape) for k, v in read_npz(path).items()})
    return None


def init_model_weights(model: nn.Module, path: str | Path, *, strict_depth: bool = True,
                       pos_interpolation: str = "bicubic", resize_patch: bool = False,
                       input_norm: InputNorm = None,
                       source_grid: tuple[int, int] | None = None) -> LoadReport:
    """Initialise ``model`` from ``path``, whatever its format.

    TRecViT checkpoints (``trecvit_npz``, ``trecvit_dir``, ``trecvit_safetensors``) go
    to :func:`init_from_trecvit` (which uses only ``pos_interpolation``), image ViTs
    (``big_vision_npz``, ``timm_safetensors``, ``hf_safetensors``) to
    :func:`load_vit_weights` with the other options.
    """
    fmt = detect_weights_format(path)
    if fmt in TRECVIT_FORMATS:
        return init_from_trecvit(model, path, pos_interpolation=pos_interpolation)
    return load_vit_weights(model, path, strict_depth=strict_depth, pos_interpolation=pos_interpolation,
                            resize_patch=resize_patch, input_norm=input_norm, source_grid=source_grid)
