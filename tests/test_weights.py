"""Initialising TRecViT from image-ViT weights (big_vision, timm, Hugging Face) and from TRecViT checkpoints.

The ViT files are written here from a random source model's own weights, laid out in each
convention (the inverse of the loader's mapping), so a round trip proves the mapping.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from torch.nn import functional as F

from trecvit import TRecViT, TRecViTConfig, load_official_checkpoint
from trecvit.heads import ClassificationHead
from trecvit.layers import SpatialBlock
from trecvit.tokenizer import Tokenizer
from trecvit.checkpoints.weights import (
    LoadReport,
    detect_weights_format,
    init_from_trecvit,
    init_model_weights,
    load_vit_weights,
    resample_pos_embed,
    resize_patch_kernel,
)

ROOT = Path(__file__).resolve().parents[1]
OFFICIAL_FIXTURE = ROOT / "tests" / "fixtures" / "tiny_tok_learn.ckpt.npz"
REFERENCE_ASSET = ROOT / "src" / "trecvit" / "assets" / "reference" / "tiny_tok_learn.npz"


# ----------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------
def cfg(**overrides) -> TRecViTConfig:
    """Width 64, 4 heads, 2 layers, 32 x 32 frames in 8 x 8 patches (a 4 x 4 grid)."""
    fields = dict(width=64, depth=2, num_heads=4, mlp_dim=128, image_size=32, patch_size=8,
                  num_classes=5, rep_size=32, frames_per_clip=4)
    fields.update(overrides)
    return TRecViTConfig(**fields)


def random_model(seed: int = 0, **overrides) -> TRecViT:
    """A model whose every parameter is random (no zeros or ones left to hide a wrong mapping)."""
    torch.manual_seed(seed)
    model = TRecViT(cfg(**overrides))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


class _SpatialLayer(nn.Module):
    def __init__(self, config: TRecViTConfig):
        super().__init__()
        self.spatial = SpatialBlock(config.width, config.num_heads, config.mlp_dim)


class OrderBlindStub(nn.Module):
    """The attribute layout of the order-blind baseline: TRecViT without temporal blocks."""

    def __init__(self, config: TRecViTConfig):
        super().__init__()
        self.config = config
        self.encoder = nn.Module()  # the trunk, under the name every architecture uses
        self.encoder.tokenizer = Tokenizer(config.width, config.patch_size, config.grid_hw, config.posemb,
                                           class_token=config.pool_type == "tok")
        self.encoder.blocks = nn.ModuleList(_SpatialLayer(config) for _ in range(config.depth))
        self.encoder.norm = nn.LayerNorm(config.width, eps=1e-6)
        self.head = ClassificationHead(config.width, config.rep_size, config.num_classes, config.pool_type)


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def trunk_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict with the trunk's names relative to the trunk (``tokenizer.*``, ``blocks.*``)."""
    return {k.removeprefix("encoder."): v for k, v in state(model).items()}


# ----------------------------------------------------------------------------
# A model's ViT weights in each convention (the inverse mappings)
# ----------------------------------------------------------------------------
def _vit_pos_and_cls(model: TRecViT, cls_pos: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """ViT convention: pos ``[1, 1 + N, d]`` with a class-token row ``r`` and ``cls - r``, so that
    ``cls + r`` is TRecViT's class token."""
    pos = model.tokenizer.pos_embed.detach()
    cls = model.tokenizer.cls_token
    if cls is None:
        return (pos if cls_pos is None else torch.cat([cls_pos, pos], dim=1)), None
    cls = cls.detach()
    if cls_pos is None:
        return pos, cls
    return torch.cat([cls_pos, pos], dim=1), cls - cls_pos


def big_vision_arrays(model: TRecViT, *, cls_pos: torch.Tensor | None = None, prefix: str = "",
                      old_names: bool = False, scanned: bool = False) -> dict[str, np.ndarray]:
    d, h = model.config.width, model.config.num_heads
    sd = {k: v.numpy().copy() for k, v in trunk_state(model).items()}
    pos, cls = _vit_pos_and_cls(model, cls_pos)
    out = {
        "embedding/kernel": sd["tokenizer.patch_embed.weight"].transpose(2, 3, 1, 0),  # (p, p, 3, d)
        "embedding/bias": sd["tokenizer.patch_embed.bias"],
        ("Transformer/posembed_input/pos_embedding" if old_names else "pos_embedding"): pos.numpy(),
        "Transformer/encoder_norm/scale": sd["norm.weight"],
        "Transformer/encoder_norm/bias": sd["norm.bias"],
        "head/kernel": np.zeros((d, 1000), np.float32),
        "head/bias": np.zeros(1000, np.float32),
    }
    if cls is not None:
        out["cls"] = cls.numpy()
    mlp = "MlpBlock_3" if old_names else "MlpBlock_0"
    blocks = []
    for i in range(len(model.encoder.blocks)):
        s = f"blocks.{i}.spatial"
        a = "MultiHeadDotProductAttention_0"
        blk = {
            "LayerNorm_0/scale": sd[f"{s}.norm1.weight"], "LayerNorm_0/bias": sd[f"{s}.norm1.bias"],
            "LayerNorm_1/scale": sd[f"{s}.norm2.weight"], "LayerNorm_1/bias": sd[f"{s}.norm2.bias"],
            f"{a}/out/kernel": sd[f"{s}.attn.proj.weight"].T.reshape(h, d // h, d),
            f"{a}/out/bias": sd[f"{s}.attn.proj.bias"],
            f"{mlp}/Dense_0/kernel": sd[f"{s}.mlp.fc1.weight"].T, f"{mlp}/Dense_0/bias": sd[f"{s}.mlp.fc1.bias"],
            f"{mlp}/Dense_1/kernel": sd[f"{s}.mlp.fc2.weight"].T, f"{mlp}/Dense_1/bias": sd[f"{s}.mlp.fc2.bias"],
        }
        for j, name in enumerate(("query", "key", "value")):
            blk[f"{a}/{name}/kernel"] = sd[f"{s}.attn.qkv.weight"][j * d:(j + 1) * d].T.reshape(d, h, d // h)
            blk[f"{a}/{name}/bias"] = sd[f"{s}.attn.qkv.bias"][j * d:(j + 1) * d].reshape(h, d // h)
        blocks.append(blk)
    if scanned:
        for key in blocks[0]:
            out[f"Transformer/encoderblock/{key}"] = np.stack([b[key] for b in blocks])
    else:
        for i, blk in enumerate(blocks):
            out.update({f"Transformer/encoderblock_{i}/{k}": v for k, v in blk.items()})
    return {prefix + k: np.ascontiguousarray(v) for k, v in out.items()}


def timm_tensors(model: TRecViT, *, cls_pos: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    sd = trunk_state(model)
    pos, cls = _vit_pos_and_cls(model, cls_pos)
    out = {"patch_embed.proj.weight": sd["tokenizer.patch_embed.weight"],
           "patch_embed.proj.bias": sd["tokenizer.patch_embed.bias"],
           "pos_embed": pos, "norm.weight": sd["norm.weight"], "norm.bias": sd["norm.bias"],
           "head.weight": torch.zeros(1000, model.config.width), "head.bias": torch.zeros(1000)}
    if cls is not None:
        out["cls_token"] = cls
    for i in range(len(model.encoder.blocks)):
        prefix = f"blocks.{i}.spatial."
        out.update({f"blocks.{i}.{k[len(prefix):]}": v for k, v in sd.items() if k.startswith(prefix)})
    return {k: v.contiguous() for k, v in out.items()}


def hf_tensors(model: TRecViT, *, cls_pos: torch.Tensor | None = None, prefix: str = "vit."
               ) -> dict[str, torch.Tensor]:
    d = model.config.width
    sd = trunk_state(model)
    pos, cls = _vit_pos_and_cls(model, cls_pos)
    e = f"{prefix}embeddings"
    out = {f"{e}.patch_embeddings.projection.weight": sd["tokenizer.patch_embed.weight"],
           f"{e}.patch_embeddings.projection.bias": sd["tokenizer.patch_embed.bias"],
           f"{e}.position_embeddings": pos, f"{e}.cls_token": cls,
           f"{prefix}layernorm.weight": sd["norm.weight"], f"{prefix}layernorm.bias": sd["norm.bias"],
           "classifier.weight": torch.zeros(1000, d), "classifier.bias": torch.zeros(1000)}
    for i in range(len(model.encoder.blocks)):
        s, b = f"blocks.{i}.spatial", f"{prefix}encoder.layer.{i}"
        for j, name in enumerate(("query", "key", "value")):
            out[f"{b}.attention.attention.{name}.weight"] = sd[f"{s}.attn.qkv.weight"][j * d:(j + 1) * d]
            out[f"{b}.attention.attention.{name}.bias"] = sd[f"{s}.attn.qkv.bias"][j * d:(j + 1) * d]
        for ours, theirs in (("attn.proj", "attention.output.dense"), ("norm1", "layernorm_before"),
                             ("norm2", "layernorm_after"), ("mlp.fc1", "intermediate.dense"),
                             ("mlp.fc2", "output.dense")):
            out[f"{b}.{theirs}.weight"] = sd[f"{s}.{ours}.weight"]
            out[f"{b}.{theirs}.bias"] = sd[f"{s}.{ours}.bias"]
    return {k: v.contiguous() for k, v in out.items()}


def write_vit(tmp_path: Path, fmt: str, model: TRecViT, **kwargs) -> Path:
    if fmt == "big_vision_npz":
        path = tmp_path / "vit.npz"
        np.savez(path, **big_vision_arrays(model, **kwargs))
    elif fmt == "timm_safetensors":
        path = tmp_path / "timm_vit.safetensors"
        save_file(timm_tensors(model, **kwargs), str(path))
    else:
        path = tmp_path / "hf_vit.safetensors"
        save_file(hf_tensors(model, **kwargs), str(path))
    return path


VIT_PARTS = ("encoder.tokenizer.", "encoder.norm.")


def is_vit_part(name: str) -> bool:
    return name.startswith(VIT_PARTS) or ".spatial." in name


# ----------------------------------------------------------------------------
# Image ViT -> TRecViT: round trips
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("fmt, kwargs", [
    ("big_vision_npz", {}),
    ("big_vision_npz", dict(old_names=True)),
    ("big_vision_npz", dict(prefix="params/img/", scanned=True)),
    ("timm_safetensors", {}),
    ("hf_safetensors", {}),
    ("hf_safetensors", dict(prefix="")),
], ids=["big_vision", "vit_jax_names", "big_vision_scanned_prefixed", "timm", "hf", "hf_no_prefix"])
def test_vit_round_trip(tmp_path, fmt, kwargs):
    source = random_model(0)
    cls_pos = 0.3 * torch.randn(1, 1, 64)
    path = write_vit(tmp_path, fmt, source, cls_pos=cls_pos, **kwargs)
    assert detect_weights_format(path) == fmt
    model = random_model(1)
    before = state(model)

    report = load_vit_weights(model, path)

    assert isinstance(report, LoadReport) and report.format == fmt
    src, got = state(source), state(model)
    vit_names = sorted(k for k in got if is_vit_part(k))
    assert report.loaded == vit_names
    assert report.kept == sorted(k for k in got if not is_vit_part(k))
    for name in vit_names:
        torch.testing.assert_close(got[name], src[name], rtol=0, atol=1e-6, msg=name)
    for name in report.kept:  # temporal blocks and head untouched
        assert torch.equal(got[name], before[name]), name
    assert any("head" in k or "classifier" in k for k in report.skipped)
    assert any("folded the class token's position embedding" in n for n in report.notes)
    x = torch.randn(2, 3, 17, 64)
    with torch.no_grad():
        for a, b in zip(source.encoder.blocks, model.encoder.blocks):
            torch.testing.assert_close(b.spatial(x), a.spatial(x), rtol=1e-5, atol=1e-5)
        frames = torch.rand(2, 3, 32, 32)
        torch.testing.assert_close(model.tokenizer(frames), source.tokenizer(frames), rtol=1e-5, atol=1e-5)
    assert fmt in report.summary() and "\n" not in report.summary()


def test_class_token_folding_gives_the_vit_tokens(tmp_path):
    """ViT: tokens = [cls, patches] + pos with a class-token row. TRecViT: cls + pos_cls, no pos for it."""
    source = random_model(0)
    cls_pos = torch.randn(1, 1, 64)
    arrays = big_vision_arrays(source, cls_pos=cls_pos)
    np.savez(tmp_path / "vit.npz", **arrays)
    model = random_model(1)
    load_vit_weights(model, tmp_path / "vit.npz")

    frames = torch.rand(2, 3, 32, 32)
    # The ViT computation, straight from the big_vision arrays (kernel [p, p, 3, d]).
    patches = frames.permute(0, 2, 3, 1).reshape(2, 4, 8, 4, 8, 3).permute(0, 1, 3, 2, 4, 5)  # b gh gw y x c
    emb = torch.einsum("bhwyxc,yxcd->bhwd", patches, torch.from_numpy(arrays["embedding/kernel"]))
    emb = emb.reshape(2, 16, 64) + torch.from_numpy(arrays["embedding/bias"])
    cls = torch.from_numpy(arrays["cls"]).expand(2, -1, -1)
    vit_tokens = torch.cat([cls, emb], dim=1) + torch.from_numpy(arrays["pos_embedding"])
    with torch.no_grad():
        torch.testing.assert_close(model.tokenizer(frames), vit_tokens, rtol=1e-5, atol=1e-5)


def test_bfloat16_arrays_stored_as_v2(tmp_path):
    source = random_model(0)
    arrays = big_vision_arrays(source)
    bf16 = {k: torch.from_numpy(v).bfloat16().view(torch.int16).numpy().view("V2") for k, v in arrays.items()}
    np.savez(tmp_path / "vit_bf16.npz", **bf16)
    model = random_model(1)
    load_vit_weights(model, tmp_path / "vit_bf16.npz")
    expected = source.encoder.blocks[1].spatial.mlp.fc1.weight.detach().bfloat16().float()
    assert torch.equal(model.encoder.blocks[1].spatial.mlp.fc1.weight.detach(), expected)


def test_sincos_model_takes_no_position_embedding(tmp_path):
    source = random_model(0)
    cls_pos = torch.randn(1, 1, 64)
    path = write_vit(tmp_path, "timm_safetensors", source, cls_pos=cls_pos)
    model = random_model(1, posemb="sincos2d")
    sincos = model.tokenizer.pos_embed.clone()
    report = load_vit_weights(model, path)
    assert "tokenizer.pos_embed" not in report.loaded
    assert any("fixed sincos2d" in n for n in report.notes)
    assert torch.equal(model.tokenizer.pos_embed, sincos)
    torch.testing.assert_close(model.tokenizer.cls_token.detach(), source.tokenizer.cls_token.detach())


def test_model_without_class_token_drops_it(tmp_path):
    source = random_model(0)
    cls_pos = torch.randn(1, 1, 64)
    path = write_vit(tmp_path, "hf_safetensors", source, cls_pos=cls_pos)
    model = random_model(1, pool_type="gap")
    report = load_vit_weights(model, path)
    assert "vit.embeddings.cls_token" in report.skipped
    assert any("no class token" in n for n in report.notes)
    assert torch.equal(model.tokenizer.pos_embed, source.tokenizer.pos_embed)  # the class row is dropped


# ----------------------------------------------------------------------------
# Position embedding and patch resampling
# ----------------------------------------------------------------------------
def test_resample_constant_and_linear_grids():
    d = 8
    const = torch.randn(1, 1, d).expand(1, 16, d)
    for mode in ("bilinear", "bicubic"):
        for grid in ((2, 2), (6, 6), (3, 5)):
            out = resample_pos_embed(const, (4, 4), grid, mode)
            assert out.shape == (1, grid[0] * grid[1], d)
            torch.testing.assert_close(out, const[:, :1].expand_as(out), rtol=0, atol=1e-5)
    a, b, c = torch.randn(d), torch.randn(d), torch.randn(d)
    r, col = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
    linear = (r[..., None] * a + col[..., None] * b + c).reshape(1, 16, d)
    # 4 -> 2 with align_corners=False samples the source at 0.5 and 2.5: exact for a linear grid.
    down = resample_pos_embed(linear, (4, 4), (2, 2), "bilinear").reshape(2, 2, d)
    coords = torch.tensor([0.5, 2.5])
    want = coords[:, None, None] * a + coords[None, :, None] * b + c
    torch.testing.assert_close(down, want, rtol=1e-5, atol=1e-5)
    # 4 -> 6: inner samples at 0.5, 7/6, 11/6, 2.5 (exact); the borders clamp to the edge values.
    up = resample_pos_embed(linear, (4, 4), (6, 6), "bilinear").reshape(6, 6, d)
    inner = (torch.arange(1, 5) + 0.5) * 4 / 6 - 0.5
    want = inner[:, None, None] * a + inner[None, :, None] * b + c
    torch.testing.assert_close(up[1:5, 1:5], want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(up[0, 0], c, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("image_size, grid", [(16, (2, 2)), (48, (6, 6))])
def test_position_embedding_is_resampled_to_the_model_grid(tmp_path, image_size, grid):
    source = random_model(0)  # 4 x 4 grid
    with torch.no_grad():
        source.tokenizer.pos_embed.copy_(torch.randn(1, 1, 64).expand(1, 16, 64))  # constant
    path = write_vit(tmp_path, "timm_safetensors", source, cls_pos=torch.randn(1, 1, 64))
    model = random_model(1, image_size=image_size)
    report = load_vit_weights(model, path)
    assert model.tokenizer.pos_embed.shape == (1, grid[0] * grid[1], 64)
    assert f"resampled pos_embed 4x4 -> {grid[0]}x{grid[1]} (bicubic)" in report.notes
    torch.testing.assert_close(model.tokenizer.pos_embed.detach(),
                               source.tokenizer.pos_embed.detach()[:, :1].expand(1, grid[0] * grid[1], 64),
                               rtol=0, atol=1e-5)


def test_patch_size_mismatch_is_refused_or_resized(tmp_path):
    source = random_model(0, patch_size=4)  # 8 x 8 grid of 4 x 4 patches
    path = write_vit(tmp_path, "big_vision_npz", source)
    model = random_model(1)  # patch 8
    before = state(model)
    with pytest.raises(ValueError, match=r"embedding/kernel.*\(4, 4, 3, 64\) \(patch size 4\).*patch_size 8 "
                                         r"and needs \(8, 8, 3, 64\).*resize_patch=True"):
        load_vit_weights(model, path)
    assert all(torch.equal(v, before[k]) for k, v in state(model).items())  # a failed load changes nothing
    report = load_vit_weights(model, path, resize_patch=True)
    assert any("4x4 -> 8x8" in n for n in report.notes) and any("pos_embed 8x8 -> 4x4" in n for n in report.notes)
    # The pseudo-inverse kernel embeds an upsampled patch as the original kernel embeds the patch.
    x = torch.rand(5, 3, 4, 4)
    want = F.conv2d(x, source.tokenizer.patch_embed.weight.detach())
    got = F.conv2d(F.interpolate(x, size=(8, 8), mode="bilinear", align_corners=False),
                   model.tokenizer.patch_embed.weight.detach())
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert resize_patch_kernel(torch.randn(2, 3, 4, 4), 8).shape == (2, 3, 8, 8)


def test_input_normalisation_is_folded_into_the_patch_embedding(tmp_path):
    source = random_model(0)
    path = write_vit(tmp_path, "big_vision_npz", source)
    model = random_model(1)
    report = load_vit_weights(model, path, input_norm="inception")
    assert any("folded input normalisation" in n for n in report.notes)
    frames = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.tokenizer(frames), source.tokenizer(frames * 2 - 1), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------
# Image ViT -> TRecViT: refusals
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("fmt, overrides, message", [
    ("big_vision_npz", dict(width=32, num_heads=4, mlp_dim=128),
     r"vit\.npz: key 'embedding/kernel' has shape \(8, 8, 3, 32\), but this model needs \(8, 8, 3, 64\)"),
    ("timm_safetensors", dict(width=32, num_heads=4, mlp_dim=128),
     r"key 'patch_embed\.proj\.weight' has shape \(32, 3, 8, 8\), but this model needs \(64, 3, 8, 8\)"),
    ("big_vision_npz", dict(num_heads=2),
     r"key 'Transformer/encoderblock_0/MultiHeadDotProductAttention_0/query/kernel' has shape \(64, 2, 32\), "
     r"but this model needs \(64, 4, 16\)"),
    ("big_vision_npz", dict(mlp_dim=256),
     r"key 'Transformer/encoderblock_0/MlpBlock_0/Dense_0/kernel' has shape \(64, 256\), but this model "
     r"needs \(64, 128\)"),
    ("hf_safetensors", dict(mlp_dim=256),
     r"key 'vit\.encoder\.layer\.0\.intermediate\.dense\.weight' has shape \(256, 64\), but this model needs "
     r"\(128, 64\)"),
], ids=["bv-width", "timm-width", "bv-heads", "bv-mlp", "hf-mlp"])
def test_architecture_mismatch_names_the_key_and_shapes(tmp_path, fmt, overrides, message):
    path = write_vit(tmp_path, fmt, random_model(0, **overrides))
    model = random_model(1)
    before = state(model)
    with pytest.raises(ValueError, match=message):
        load_vit_weights(model, path)
    assert all(torch.equal(v, before[k]) for k, v in state(model).items())


def test_depth_mismatch(tmp_path):
    deep = write_vit(tmp_path, "timm_safetensors", random_model(0, depth=3))
    model = random_model(1)
    with pytest.raises(ValueError, match=r"3 transformer blocks but the model has depth 2; pass "
                                         r"strict_depth=False to load the first 2"):
        load_vit_weights(model, deep)
    report = load_vit_weights(model, deep, strict_depth=False)
    assert any("first 2 of the file's 3 blocks" in n for n in report.notes)
    assert "blocks.2.attn.qkv.weight" in report.skipped

    source = random_model(2, depth=1)
    shallow = write_vit(tmp_path, "big_vision_npz", source)
    model = random_model(3)
    before = state(model)
    report = load_vit_weights(model, shallow, strict_depth=False)
    assert torch.equal(model.encoder.blocks[0].spatial.attn.qkv.weight, source.encoder.blocks[0].spatial.attn.qkv.weight)
    assert torch.equal(model.encoder.blocks[1].spatial.attn.qkv.weight, before["encoder.blocks.1.spatial.attn.qkv.weight"])
    assert "encoder.blocks.1.spatial.attn.qkv.weight" in report.kept


def test_unknown_block_key_is_refused(tmp_path):
    tensors = timm_tensors(random_model(0))
    tensors["blocks.0.attn.q_norm.weight"] = torch.ones(16)
    save_file(tensors, str(tmp_path / "qknorm.safetensors"))
    with pytest.raises(ValueError, match=r"'blocks\.0\.attn\.q_norm\.weight' of a loaded block has no counterpart"):
        load_vit_weights(random_model(1), tmp_path / "qknorm.safetensors")


def test_timm_layer_scale_is_folded(tmp_path):
    source = random_model(0)
    tensors = timm_tensors(source)
    g1, g2 = torch.rand(64) + 0.5, torch.rand(64) + 0.5
    for i in range(2):
        tensors[f"blocks.{i}.ls1.gamma"], tensors[f"blocks.{i}.ls2.gamma"] = g1.clone(), g2.clone()
        tensors[f"blocks.{i}.attn.proj.weight"] = tensors[f"blocks.{i}.attn.proj.weight"] / g1[:, None]
        tensors[f"blocks.{i}.attn.proj.bias"] = tensors[f"blocks.{i}.attn.proj.bias"] / g1
        tensors[f"blocks.{i}.mlp.fc2.weight"] = tensors[f"blocks.{i}.mlp.fc2.weight"] / g2[:, None]
        tensors[f"blocks.{i}.mlp.fc2.bias"] = tensors[f"blocks.{i}.mlp.fc2.bias"] / g2
    save_file(tensors, str(tmp_path / "deit3.safetensors"))
    model = random_model(1)
    load_vit_weights(model, tmp_path / "deit3.safetensors")
    x = torch.randn(2, 17, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.encoder.blocks[1].spatial(x), source.encoder.blocks[1].spatial(x), rtol=1e-5, atol=1e-5)


class _Boom:
    """Unpickling this creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize("name", ["model.pt", "model.pth", "pytorch_model.bin", "model.npz", "model.safetensors"])
def test_pickles_are_refused_unread(tmp_path, name):
    payload = pickle.dumps({"w": _Boom(tmp_path / "armed")})
    pickle.loads(payload)  # the payload is live: unpickling it does create the marker
    assert (tmp_path / "armed").exists()
    marker = tmp_path / "pwned"
    path = tmp_path / name
    path.write_bytes(pickle.dumps({"w": _Boom(marker)}))
    for call in (detect_weights_format, lambda p: load_vit_weights(random_model(0), p),
                 lambda p: init_model_weights(random_model(0), p)):
        with pytest.raises(ValueError, match=r"pickle|not a readable safetensors") as err:
            call(path)
        assert not marker.exists()
    if path.suffix in (".pt", ".pth", ".bin"):
        assert "run arbitrary code" in str(err.value) and "safetensors" in str(err.value)
        assert str(path) in str(err.value)


def test_folder_with_only_a_pickle_is_refused(tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(pickle.dumps([1]))
    with pytest.raises(ValueError, match=r"no model\.safetensors.*pytorch_model\.bin are pickles"):
        detect_weights_format(tmp_path)


def test_unknown_files(tmp_path):
    (tmp_path / "w.h5").write_bytes(b"\x89HDF")
    with pytest.raises(ValueError, match="unsupported weights file type '.h5'"):
        detect_weights_format(tmp_path / "w.h5")
    np.savez(tmp_path / "other.npz", a=np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"other\.npz: not a known \.npz weights layout"):
        detect_weights_format(tmp_path / "other.npz")
    with pytest.raises(FileNotFoundError):
        detect_weights_format(tmp_path / "missing.npz")


# ----------------------------------------------------------------------------
# TRecViT checkpoint -> TRecViT
# ----------------------------------------------------------------------------
def test_init_from_save_pretrained_folder_loads_everything(tmp_path):
    source = random_model(0)
    source.save_pretrained(tmp_path / "ckpt")
    assert detect_weights_format(tmp_path / "ckpt") == "trecvit_dir"
    model = random_model(1)
    report = init_from_trecvit(model, tmp_path / "ckpt")
    assert report.kept == [] and report.skipped == [] and report.loaded == sorted(model.state_dict())
    video = torch.rand(1, 4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(video).logits, source(video).logits)


def test_init_from_bare_safetensors_with_other_class_count_keeps_a_fresh_head(tmp_path):
    source = random_model(0, num_classes=7)
    save_file(state(source), str(tmp_path / "model.safetensors"))
    assert detect_weights_format(tmp_path / "model.safetensors") == "trecvit_safetensors"
    model = random_model(1)
    before = state(model)
    report = init_model_weights(model, tmp_path / "model.safetensors")
    assert report.format == "trecvit_safetensors"
    assert report.kept == ["head.classifier.bias", "head.classifier.weight"]
    assert any("7 classes" in n and "fresh" in n for n in report.notes)
    got, src = state(model), state(source)
    for name, value in got.items():
        assert torch.equal(value, before[name] if name.startswith("head.classifier") else src[name]), name


def test_init_from_trecvit_refuses_other_mismatches(tmp_path):
    random_model(0, rep_size=16).save_pretrained(tmp_path / "ckpt")
    model = random_model(1)
    before = state(model)
    with pytest.raises(ValueError, match=r"mis-shaped tensor.*head\.pre_logits\.bias has shape \(16,\), "
                                         r"expected \(32,\)"):
        init_from_trecvit(model, tmp_path / "ckpt")
    assert all(torch.equal(v, before[k]) for k, v in state(model).items())
    with pytest.raises(ValueError, match="use load_vit_weights|load it with load_vit_weights"):
        init_from_trecvit(model, write_vit(tmp_path, "timm_safetensors", random_model(0)))
    with pytest.raises(ValueError, match="load it with init_from_trecvit"):
        load_vit_weights(model, tmp_path / "ckpt")


def test_init_from_trecvit_resamples_the_position_embedding(tmp_path):
    source = random_model(0)  # 4 x 4 grid
    source.save_pretrained(tmp_path / "ckpt")
    model = random_model(1, image_size=48)  # 6 x 6 grid
    report = init_from_trecvit(model, tmp_path / "ckpt", pos_interpolation="bilinear")
    assert model.tokenizer.pos_embed.shape == (1, 36, 64)
    assert "resampled pos_embed 4x4 -> 6x6 (bilinear)" in report.notes
    expected = resample_pos_embed(source.tokenizer.pos_embed.detach(), (4, 4), (6, 6), "bilinear")
    torch.testing.assert_close(model.tokenizer.pos_embed.detach(), expected)


def test_init_from_official_npz(tmp_path):
    reference = load_official_checkpoint(OFFICIAL_FIXTURE).eval()
    assert detect_weights_format(OFFICIAL_FIXTURE) == "trecvit_npz"
    model = TRecViT(reference.config).eval()
    report = init_model_weights(model, OFFICIAL_FIXTURE)
    assert report.format == "trecvit_npz" and report.kept == []
    video = torch.rand(1, 4, 3, *reference.config.image_hw)
    with torch.no_grad():
        assert torch.equal(model(video).logits, reference(video).logits)
    # Fine-tuning on 3 classes: everything but the classifier.
    model = TRecViT(reference.config.replace(num_classes=3))
    report = init_from_trecvit(model, OFFICIAL_FIXTURE)
    assert report.kept == ["head.classifier.bias", "head.classifier.weight"]
    assert torch.equal(model.encoder.blocks[1].temporal.rg_lru.a_param, reference.encoder.blocks[1].temporal.rg_lru.a_param)


def test_init_from_reference_file_reads_its_params(tmp_path):
    model = TRecViT(load_official_checkpoint(OFFICIAL_FIXTURE).config)
    report = init_from_trecvit(model, REFERENCE_ASSET)
    assert report.kept == [] and "video" in report.skipped


def test_baseline_without_temporal_blocks(tmp_path):
    source = random_model(0)
    source.save_pretrained(tmp_path / "ckpt")
    baseline = OrderBlindStub(cfg())
    report = init_from_trecvit(baseline, tmp_path / "ckpt")
    assert report.kept == []
    assert "encoder.blocks.0.temporal.linear_x.weight" in report.skipped
    assert any("no temporal blocks" in n for n in report.notes)
    x = torch.randn(2, 17, 64)
    with torch.no_grad():
        torch.testing.assert_close(baseline.encoder.blocks[1].spatial(x), source.encoder.blocks[1].spatial(x))
    assert torch.equal(baseline.head.classifier.weight, source.head.classifier.weight)

    baseline = OrderBlindStub(cfg())
    report = init_model_weights(baseline, write_vit(tmp_path, "big_vision_npz", source))
    assert report.kept == sorted(k for k in baseline.state_dict() if k.startswith("head."))
    assert torch.equal(baseline.encoder.norm.weight, source.encoder.norm.weight)
