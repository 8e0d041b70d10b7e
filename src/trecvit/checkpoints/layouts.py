"""Image-ViT layouts: where big_vision, timm and Hugging Face ViTs keep each part.

A layout (:class:`_ViTLayout`) names a format's patch embedding, position
embedding, class token and final norm, and gives, per block, the
:class:`~trecvit.checkpoints.entries._Entry` table from its keys onto our spatial
block (``encoder.blocks.{i}.spatial``). The big_vision / vit_jax block is the
shared Flax mapping :func:`~trecvit.checkpoints.entries.flax_vit_block_entries`.
:func:`_convert_entries` checks every source key of a table for presence and
shape, then converts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from trecvit.checkpoints.entries import (_cat_rows, _Entry, _linear_entries, _norm_entries, _same,
                                         flax_vit_block_entries)
from trecvit.checkpoints.formats import _Source
from trecvit.config import TRecViTConfig


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
        return flax_vit_block_entries(f"{pre}Transformer/encoderblock_{i}", f"encoder.blocks.{i}.spatial",
                                      cfg.width, cfg.num_heads, cfg.mlp_dim, mlp)

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
