"""Conversion tables: one :class:`_Entry` per target tensor, and the Flax ViT block written once.

An entry names a tensor of our state dict, the source keys it is made from
(each with the shape it must have) and the function that makes it. The ViT
layouts (:mod:`~trecvit.checkpoints.layouts`) check the entries against a file
and convert them; the official converter (:mod:`~trecvit.checkpoints.official`)
applies the same :func:`flax_vit_block_entries` to its arrays, so the mapping
of a Flax ViT encoder block onto our spatial block exists in one place.

This module reads no file and imports no other part of ``trecvit``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


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


def flax_vit_block_entries(src: str, dst: str, d: int, h: int, mlp_dim: int,
                           mlp: str = "MlpBlock_0") -> list[_Entry]:
    """One Flax ViT encoder block (the ``{src}/...`` arrays) onto our spatial block ``dst``.

    ``LayerNorm_0`` -> ``norm1``; ``MultiHeadDotProductAttention_0``
    ``query``/``key``/``value`` kernels ``[d, h, d/h]`` and biases ``[h, d/h]`` -> one
    fused ``attn.qkv`` (``[3d, d]``, rows q, k, v); its ``out`` kernel ``[h, d/h, d]``
    -> ``attn.proj``; ``LayerNorm_1`` -> ``norm2``; ``{mlp}/Dense_0`` / ``Dense_1``
    (``mlp`` is ``"MlpBlock_0"``, or ``"MlpBlock_3"`` in older vit_jax files) ->
    ``mlp.fc1`` / ``mlp.fc2``.
    """
    a = f"{src}/MultiHeadDotProductAttention_0"
    qkv = ("query", "key", "value")
    return [
        *_norm_entries(f"{src}/LayerNorm_0/scale", f"{src}/LayerNorm_0/bias", f"{dst}.norm1", d),
        # query/key/value kernels [d, h, d/h] -> fused qkv weight [3d, d] (rows q, k, v)
        _Entry(f"{dst}.attn.qkv.weight", tuple(f"{a}/{n}/kernel" for n in qkv), ((d, h, d // h),) * 3,
               lambda *ks: torch.cat([k.reshape(d, d).T for k in ks], dim=0)),
        _Entry(f"{dst}.attn.qkv.bias", tuple(f"{a}/{n}/bias" for n in qkv), ((h, d // h),) * 3,
               lambda *bs: torch.cat([x.reshape(-1) for x in bs], dim=0)),
        # out kernel [h, d/h, d] -> proj weight [d, h d/h]
        _Entry(f"{dst}.attn.proj.weight", (f"{a}/out/kernel",), ((h, d // h, d),),
               lambda k: k.reshape(d, d).T),
        _Entry(f"{dst}.attn.proj.bias", (f"{a}/out/bias",), ((d,),)),
        *_norm_entries(f"{src}/LayerNorm_1/scale", f"{src}/LayerNorm_1/bias", f"{dst}.norm2", d),
        *_linear_entries(f"{src}/{mlp}/Dense_0", f"{dst}.mlp.fc1", d, mlp_dim, flax=True),
        *_linear_entries(f"{src}/{mlp}/Dense_1", f"{dst}.mlp.fc2", mlp_dim, d, flax=True),
    ]
