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

The pieces live in :mod:`~trecvit.checkpoints.formats` (reading and detecting
files), :mod:`~trecvit.checkpoints.entries` and :mod:`~trecvit.checkpoints.layouts`
(the conversion tables), and :mod:`~trecvit.checkpoints.vit` (image ViTs);
this module holds the TRecViT initialiser and the dispatcher, and re-exports
the public names of the others.

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
import re
from pathlib import Path

import torch
from torch import nn

from trecvit.base import upgrade_state_dict
from trecvit.checkpoints.auto import read_config
from trecvit.checkpoints.formats import (TRECVIT_FORMATS, VIT_FORMATS, LoadReport, _read_npz, _strip_params,
                                         _weights_file, detect_weights_format)
from trecvit.checkpoints.official import _as_float_array, convert_official_params, infer_config, read_npz
from trecvit.checkpoints.pretrained import CONFIG_NAME, read_safetensors
from trecvit.checkpoints.vit import (INPUT_NORMS, InputNorm, _check_mode, _source_grid, fold_input_norm,
                                     load_vit_weights, resample_pos_embed, resize_patch_kernel)
from trecvit.config import TRecViTConfig
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
