"""Official JAX/Flax TRecViT checkpoints (``.npz``) to PyTorch.

The official checkpoint is a flat ``.npz`` with ``/``-joined Flax names
(``tokenizer/...``, ``encoder/...``, ``decoder/...``). Conversion is a table:
one pure function per layer kind returns ``{our name: tensor}`` for the
official names it reads, with the layout change written out (Flax ``Dense``
kernels are ``[in, out]``, PyTorch ``Linear`` weights ``[out, in]``). Every
official array is checked for presence and shape before anything is copied,
and the result is loaded with ``strict=True``. Nothing is ever unpickled.
"""

from __future__ import annotations

import logging
import math
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from trecvit.checkpoints.entries import flax_vit_block_entries
from trecvit.config import TRecViTConfig
from trecvit.validation import check_names_and_shapes

logger = logging.getLogger(__name__)

OFFICIAL_CHECKPOINT_URL = "https://storage.googleapis.com/trecvit/model_checkpoints/trecvit_B_k400.npz"

Shapes = dict[str, tuple[int, ...]]


def _temporal(i: int) -> str:
    return f"encoder/residualblock_{i:02d}"


def _spatial(i: int) -> str:
    return f"encoder/encoderblock_{i}"


# ----------------------------------------------------------------------------
# The official layout for a config
# ----------------------------------------------------------------------------
def official_param_shapes(config: TRecViTConfig) -> Shapes:
    """Every array of an official checkpoint for ``config``, with its shape."""
    d, l, h, k, p = config.width, config.lru_width, config.num_heads, config.conv1d_width, config.patch_size
    gh, gw = config.grid_hw
    shapes: Shapes = {
        "tokenizer/embedding/kernel": (1, p, p, 3, d),
        "tokenizer/embedding/bias": (d,),
    }
    if config.posemb == "learn":
        shapes["tokenizer/pos_embedding"] = (1, gh * gw, d)
    if config.pool_type == "tok":
        shapes["tokenizer/cls"] = (1, 1, d)
    for i in range(config.depth):
        t, s = _temporal(i), _spatial(i)
        rb = f"{t}/recurrent_block"
        shapes.update({
            f"{t}/temporal_pre_norm/scale": (d,),
            f"{rb}/linear_y/kernel": (d, l), f"{rb}/linear_y/bias": (l,),
            f"{rb}/linear_x/kernel": (d, l), f"{rb}/linear_x/bias": (l,),
            f"{rb}/conv_1d/w": (k, l), f"{rb}/conv_1d/b": (l,),
            f"{rb}/rg_lru/a_param": (l,),
            f"{rb}/rg_lru/input_gate/w": (h, l // h, l // h), f"{rb}/rg_lru/input_gate/b": (h, l // h),
            f"{rb}/rg_lru/a_gate/w": (h, l // h, l // h), f"{rb}/rg_lru/a_gate/b": (h, l // h),
            f"{rb}/linear_out/kernel": (l, d), f"{rb}/linear_out/bias": (d,),
        })
        attn = f"{s}/MultiHeadDotProductAttention_0"
        for name in ("query", "key", "value"):
            shapes[f"{attn}/{name}/kernel"] = (d, h, d // h)
            shapes[f"{attn}/{name}/bias"] = (h, d // h)
        shapes.update({
            f"{attn}/out/kernel": (h, d // h, d), f"{attn}/out/bias": (d,),
            f"{s}/LayerNorm_0/scale": (d,), f"{s}/LayerNorm_0/bias": (d,),
            f"{s}/LayerNorm_1/scale": (d,), f"{s}/LayerNorm_1/bias": (d,),
            f"{s}/MlpBlock_0/Dense_0/kernel": (d, config.mlp_dim),
            f"{s}/MlpBlock_0/Dense_0/bias": (config.mlp_dim,),
            f"{s}/MlpBlock_0/Dense_1/kernel": (config.mlp_dim, d),
            f"{s}/MlpBlock_0/Dense_1/bias": (d,),
        })
    shapes["encoder/encoder_norm/scale"] = (d,)
    shapes["encoder/encoder_norm/bias"] = (d,)
    r = config.rep_size
    if r:
        shapes["decoder/pre_logits/kernel"] = (d, r)
        shapes["decoder/pre_logits/bias"] = (r,)
    shapes["decoder/cls_head/kernel"] = (r or d, config.num_classes)
    shapes["decoder/cls_head/bias"] = (config.num_classes,)
    return shapes


def infer_config(shapes: Mapping[str, tuple[int, ...]], **overrides) -> TRecViTConfig:
    """The config of an official checkpoint, read off its array shapes.

    ``frames_per_clip``, ``min_rad`` and ``max_rad`` cannot be read from the
    weights and keep their defaults unless given in ``overrides``; so does
    ``image_size`` for a sin-cos model. Raises ``ValueError`` naming the array
    it needed.
    """

    def need(key: str) -> tuple[int, ...]:
        if key not in shapes:
            raise ValueError(f"cannot infer the TRecViT config: the checkpoint has no {key!r}")
        return tuple(shapes[key])

    _, p, _, _, width = need("tokenizer/embedding/kernel")
    depth = sum(1 for k in shapes if re.fullmatch(r"encoder/residualblock_\d+/temporal_pre_norm/scale", k))
    if depth == 0:
        raise ValueError("cannot infer the TRecViT config: the checkpoint has no "
                         "'encoder/residualblock_00/temporal_pre_norm/scale' (no encoder layers)")
    rb, attn = f"{_temporal(0)}/recurrent_block", f"{_spatial(0)}/MultiHeadDotProductAttention_0"
    fields = dict(
        width=width, patch_size=p, depth=depth,
        num_heads=need(f"{attn}/query/kernel")[1],
        mlp_dim=need(f"{_spatial(0)}/MlpBlock_0/Dense_0/kernel")[1],
        lru_width=need(f"{rb}/linear_x/kernel")[1],
        conv1d_width=need(f"{rb}/conv_1d/w")[0],
        posemb="learn" if "tokenizer/pos_embedding" in shapes else "sincos2d",
        pool_type="tok" if "tokenizer/cls" in shapes else "gap",
        rep_size=need("decoder/pre_logits/kernel")[1] if "decoder/pre_logits/kernel" in shapes else 0,
        num_classes=need("decoder/cls_head/kernel")[1],
    )
    if fields["posemb"] == "learn" and "image_size" not in overrides:
        num_patches = need("tokenizer/pos_embedding")[1]
        side = math.isqrt(num_patches)
        if side * side != num_patches:
            raise ValueError(f"cannot infer image_size: 'tokenizer/pos_embedding' covers {num_patches} "
                             "patches, not a square grid; give the config (image_size=(H, W))")
        fields["image_size"] = side * p
    fields.update(overrides)
    return TRecViTConfig.from_dict(fields)


# ----------------------------------------------------------------------------
# One pure function per layer kind: official arrays -> our state-dict entries
# ----------------------------------------------------------------------------
def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def _dense(params: Mapping[str, np.ndarray], src: str, dst: str) -> dict[str, torch.Tensor]:
    """Flax ``Dense`` ``kernel [in, out]`` -> ``Linear.weight [out, in]``."""
    return {f"{dst}.weight": _t(params[f"{src}/kernel"].T), f"{dst}.bias": _t(params[f"{src}/bias"])}


def _layer_norm(params: Mapping[str, np.ndarray], src: str, dst: str) -> dict[str, torch.Tensor]:
    return {f"{dst}.weight": _t(params[f"{src}/scale"]), f"{dst}.bias": _t(params[f"{src}/bias"])}


def convert_tokenizer(params: Mapping[str, np.ndarray], config: TRecViTConfig) -> dict[str, torch.Tensor]:
    # Conv kernel [1, p, p, 3, d] (t, y, x, in, out) -> Conv2d weight [d, 3, p, p].
    out = {
        "encoder.tokenizer.patch_embed.weight": _t(
            params["tokenizer/embedding/kernel"][0].transpose(3, 2, 0, 1)),
        "encoder.tokenizer.patch_embed.bias": _t(params["tokenizer/embedding/bias"]),
    }
    if config.posemb == "learn":
        out["encoder.tokenizer.pos_embed"] = _t(params["tokenizer/pos_embedding"])
    if config.pool_type == "tok":
        out["encoder.tokenizer.cls_token"] = _t(params["tokenizer/cls"])
    return out


def convert_temporal_block(params: Mapping[str, np.ndarray], i: int) -> dict[str, torch.Tensor]:
    src, dst = f"{_temporal(i)}/recurrent_block", f"encoder.blocks.{i}.temporal"
    out = {f"{dst}.norm.scale": _t(params[f"{_temporal(i)}/temporal_pre_norm/scale"])}
    for name in ("linear_x", "linear_y", "linear_out"):
        out.update(_dense(params, f"{src}/{name}", f"{dst}.{name}"))
    out[f"{dst}.conv1d.weight"] = _t(params[f"{src}/conv_1d/w"])  # (k, l): same layout
    out[f"{dst}.conv1d.bias"] = _t(params[f"{src}/conv_1d/b"])
    out[f"{dst}.rg_lru.a_param"] = _t(params[f"{src}/rg_lru/a_param"])
    for gate in ("input_gate", "a_gate"):  # (h, l/h, l/h), used as x @ w: same layout
        out[f"{dst}.rg_lru.{gate}.weight"] = _t(params[f"{src}/rg_lru/{gate}/w"])
        out[f"{dst}.rg_lru.{gate}.bias"] = _t(params[f"{src}/rg_lru/{gate}/b"])
    return out


def convert_spatial_block(params: Mapping[str, np.ndarray], i: int) -> dict[str, torch.Tensor]:
    """The Flax ViT block ``i`` (:func:`flax_vit_block_entries`, shared with the big_vision
    initialiser) as our ``encoder.blocks.{i}.spatial``."""
    src = _spatial(i)
    d, h, _ = params[f"{src}/MultiHeadDotProductAttention_0/query/kernel"].shape
    mlp_dim = params[f"{src}/MlpBlock_0/Dense_0/kernel"].shape[1]
    entries = flax_vit_block_entries(src, f"encoder.blocks.{i}.spatial", d, h, mlp_dim)
    return {e.dst: e.fn(*(_t(params[k]) for k in e.src)).contiguous() for e in entries}


def convert_head(params: Mapping[str, np.ndarray], config: TRecViTConfig) -> dict[str, torch.Tensor]:
    out = _layer_norm(params, "encoder/encoder_norm", "encoder.norm")
    if config.rep_size:
        out.update(_dense(params, "decoder/pre_logits", "head.pre_logits"))
    out.update(_dense(params, "decoder/cls_head", "head.classifier"))
    return out


def convert_official_params(params: Mapping[str, np.ndarray], config: TRecViTConfig,
                            source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Official arrays (``{flax name: array}``) to a state dict of :class:`trecvit.TRecViT`.

    Raises ``ValueError`` naming every missing, unexpected or mis-shaped array, or the
    ablation switches of ``config`` that are on (an official checkpoint is the official
    architecture: its weights never load into an ablated model).
    """
    if config.ablations():
        changed = ", ".join(f"{k}={v!r}" for k, v in config.ablations().items())
        raise ValueError(f"{source} holds the official TRecViT architecture, but the config turns on "
                         f"ablation switches ({changed}); load it with the official values of those "
                         "fields (the TRecViTConfig defaults)")
    check_names_and_shapes({k: tuple(v.shape) for k, v in params.items()},
                           official_param_shapes(config), source=source)
    state = convert_tokenizer(params, config)
    for i in range(config.depth):
        state.update(convert_temporal_block(params, i))
        state.update(convert_spatial_block(params, i))
    state.update(convert_head(params, config))
    return {k: v.float() for k, v in state.items()}


# ----------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------
def _as_float_array(arr: np.ndarray, key: str, path: Path) -> np.ndarray:
    if arr.dtype.kind == "V" and arr.dtype.itemsize == 2:  # bfloat16 as JAX writes it
        return torch.from_numpy(arr.view(np.int16)).view(torch.bfloat16).float().numpy()
    if arr.dtype.kind != "f":
        raise ValueError(f"{path}: array {key!r} has dtype {arr.dtype}; weights must be floating point")
    if not np.isfinite(arr).all():
        raise ValueError(f"{path}: array {key!r} holds {int((~np.isfinite(arr)).sum())} NaN or infinite "
                         "value(s)")
    return arr


def open_npz(path: Path, what: str = "checkpoint") -> np.lib.npyio.NpzFile:
    """Open an ``.npz`` archive without unpickling anything; errors name ``path`` (a ``what``)."""
    if path.stat().st_size == 0:
        raise ValueError(f"{what} {path} is empty")
    try:
        archive = np.load(path, allow_pickle=False)
    except ValueError as err:  # numpy refuses pickled data when allow_pickle=False
        raise ValueError(f"{path} holds pickled Python objects, not an .npz of arrays; refusing to "
                         f"unpickle it (it could run code): {err}") from err
    except (OSError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path} is not a readable .npz archive: {err}") from err
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} is a single .npy array, expected an .npz archive of named arrays")
    return archive


def read_npz_arrays(path: Path, what: str = "checkpoint") -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` as stored, without unpickling anything; any damage is a
    ``ValueError`` naming ``path`` and the array."""
    arrays = {}
    with open_npz(path, what) as archive:
        for key in archive.files:
            try:
                arrays[key] = archive[key]
            except ValueError as err:
                if "allow_pickle" in str(err):
                    raise ValueError(f"{path}: array {key!r} holds pickled Python objects; refusing to "
                                     "unpickle it (it could run code)") from err
                raise ValueError(f"{path}: array {key!r} is corrupt: {err}") from err
            except Exception as err:  # noqa: BLE001 - a damaged header fails in many ways inside numpy
                raise ValueError(f"{path}: array {key!r} is corrupt or truncated: "
                                 f"{type(err).__name__}: {err}") from err
    return arrays


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` without unpickling anything.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for a
    file that is not an ``.npz`` of plain float arrays (a pickle, a corrupt or
    truncated archive, object or integer arrays, NaN or infinite values),
    naming the file and the key.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise ValueError(f"checkpoint {path} is a directory, expected an official .npz file "
                         "(a directory from `trecvit convert` loads with TRecViT.from_pretrained)")
    return {key: _as_float_array(arr, key, path) for key, arr in read_npz_arrays(path).items()}


# The array each inferable field is read from, for error messages.
_FIELD_SOURCES = {
    "width": "tokenizer/embedding/kernel", "patch_size": "tokenizer/embedding/kernel",
    "depth": "encoder/residualblock_*", "num_heads": "MultiHeadDotProductAttention_0/query/kernel",
    "mlp_dim": "MlpBlock_0/Dense_0/kernel", "lru_width": "recurrent_block/linear_x/kernel",
    "conv1d_width": "recurrent_block/conv_1d/w", "posemb": "tokenizer/pos_embedding",
    "pool_type": "tokenizer/cls", "rep_size": "decoder/pre_logits/kernel",
    "num_classes": "decoder/cls_head/kernel",
}


def _check_config_against_arrays(config: TRecViTConfig, params: Mapping[str, np.ndarray],
                                 source: str) -> None:
    """Refuse a config whose architecture differs from the file's, naming each field."""
    try:
        inferred = infer_config({k: v.shape for k, v in params.items()}, image_size=config.image_size)
    except ValueError:
        return  # not inferable: the per-key check in convert_official_params reports it
    # (image_size is taken from the config; a learnt position embedding of another
    # grid is reported by the per-array shape check.)
    fields = [f for f in _FIELD_SOURCES if getattr(inferred, f) != getattr(config, f)]
    if fields:
        diffs = "; ".join(f"{f}: file {getattr(inferred, f)!r} (from {_FIELD_SOURCES[f]}), "
                          f"config {getattr(config, f)!r}" for f in fields)
        raise ValueError(f"{source} does not match the given config: {diffs}")


def model_from_official_params(params: Mapping[str, np.ndarray], config: TRecViTConfig | None = None,
                               source: str = "checkpoint"):
    """A :class:`trecvit.TRecViT` holding official arrays (``{flax name: array}``).

    ``config=None`` infers it from the shapes; a given config must match them
    (``ValueError`` naming the fields and arrays otherwise).
    """
    from trecvit.model import TRecViT

    if config is None:
        config = infer_config({k: v.shape for k, v in params.items()})
    else:
        _check_config_against_arrays(config, params, source)
    model = TRecViT(config)
    model.load_state_dict(convert_official_params(params, config, source=source), strict=True)
    return model


def load_official_checkpoint(path: str | Path, config: TRecViTConfig | None = None):
    """Load an official TRecViT ``.npz`` (e.g. ``trecvit_B_k400.npz``) as a :class:`trecvit.TRecViT`.

    Args:
        path: the official checkpoint file.
        config: the model's config. ``None`` infers it from the array shapes
            (``frames_per_clip``, ``min_rad``, ``max_rad`` keep their defaults).
            When given, every array must match it.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a plain ``.npz`` (pickles are refused unread), or any
            missing, unexpected or mis-shaped array, named in the message.
    """
    path = Path(path)
    params = read_npz(path)
    extras = ("config/", "out/", "video")
    if params and all(k.startswith("params/") for k in params if not k.startswith(extras)):
        raise ValueError(f"{path} has its arrays under 'params/'; an official checkpoint has them at "
                         "the top level ('tokenizer/...', 'encoder/...', 'decoder/...')")
    model = model_from_official_params(params, config, source=str(path))
    logger.info("loaded %s: %s parameters", path, f"{model.num_parameters():,}")
    return model
