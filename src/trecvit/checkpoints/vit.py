"""Image ViT -> TRecViT: :func:`load_vit_weights` and the tensor adaptations it uses.

An ImageNet-pretrained image ViT (big_vision / vit_jax ``.npz``, timm or Hugging
Face ``.safetensors``) initialises the patch embedding, position embedding, class
token, the spatial (ViT) blocks and the final norm, as the paper does; the
temporal blocks and the head are left as they are. On the way a position
embedding on another patch grid is resampled (:func:`resample_pos_embed`), a
kernel of another patch size resized (:func:`resize_patch_kernel`) and the
source's pixel normalisation (:data:`INPUT_NORMS`) folded into the patch
embedding (:func:`fold_input_norm`). Every check runs before the model is
modified.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from trecvit.checkpoints.entries import _Entry, _norm_entries
from trecvit.checkpoints.formats import (VIT_FORMATS, LoadReport, _read_npz, _Source, _weights_file,
                                         detect_weights_format)
from trecvit.checkpoints.layouts import _LAYOUTS, _convert_entries, _model_desc, _ViTLayout
from trecvit.checkpoints.pretrained import read_safetensors
from trecvit.config import TRecViTConfig

logger = logging.getLogger(__name__)

# Pixel normalisations a source ViT may have been trained with, as (mean, std) per RGB channel
# of [0, 1] pixels. "inception" maps [0, 1] to [-1, 1] (big_vision, vit_jax, google/vit-* on HF).
INPUT_NORMS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "inception": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}

InputNorm = str | tuple[Sequence[float], Sequence[float]] | None


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
