"""TRecViTConfig: official defaults, variants, serialisation, refusals."""

from __future__ import annotations

import pytest

from trecvit import VARIANTS, TRecViTConfig


def test_defaults_are_the_official_trecvit_b():
    cfg = TRecViTConfig()
    assert (cfg.width, cfg.depth, cfg.num_heads, cfg.mlp_dim) == (768, 12, 12, 3072)
    assert (cfg.patch_size, cfg.image_size, cfg.posemb, cfg.pool_type) == (16, 224, "learn", "tok")
    assert (cfg.conv1d_width, cfg.lru_width, cfg.min_rad, cfg.max_rad) == (4, 1536, 0.5, 0.999)
    assert (cfg.num_classes, cfg.rep_size, cfg.frames_per_clip) == (400, 3072, 32)
    assert cfg.num_tokens == 197


@pytest.mark.parametrize("name, expected", [
    ("mu", (32, 1, 128, 2)), ("Ti", (192, 12, 768, 3)), ("S", (384, 12, 1536, 6)),
    ("M", (512, 12, 2048, 8)), ("B", (768, 12, 3072, 12)), ("L", (1024, 24, 4096, 16)),
    ("H", (1280, 32, 5120, 16)),
])
def test_variants_follow_the_vit_table(name, expected):
    cfg = TRecViTConfig.from_variant(name)
    assert (cfg.width, cfg.depth, cfg.mlp_dim, cfg.num_heads) == expected
    assert cfg.lru_width == 2 * cfg.width


def test_every_variant_builds_and_overrides_apply():
    for name in VARIANTS:
        TRecViTConfig.from_variant(name)
    cfg = TRecViTConfig.from_variant("S", num_classes=174, image_size=(160, 224), frames_per_clip=16)
    assert cfg.num_classes == 174 and cfg.image_hw == (160, 224) and cfg.grid_hw == (10, 14)


def test_json_round_trip(tmp_path):
    cfg = TRecViTConfig.from_variant("Ti", image_size=(96, 128), posemb="sincos2d", pool_type="gap")
    cfg.to_json_file(tmp_path / "c.json")
    assert TRecViTConfig.from_json_file(tmp_path / "c.json") == cfg


@pytest.mark.parametrize("overrides, message", [
    (dict(width=100, num_heads=3), "width .* divisible by num_heads"),
    (dict(image_size=225), "multiples of patch_size"),
    (dict(image_size=(224, 100)), "multiples of patch_size"),
    (dict(posemb="rope"), "posemb"),
    (dict(pool_type="max"), "pool_type"),
    (dict(depth=0), "depth must be a positive int"),
    (dict(min_rad=0.9, max_rad=0.5), "min_rad"),
    (dict(lru_width=100), "lru_width .* divisible by num_heads"),
])
def test_bad_fields_are_refused_by_name(overrides, message):
    with pytest.raises(ValueError, match=message):
        TRecViTConfig(**overrides)


def test_unknown_variant_and_field_are_refused():
    with pytest.raises(ValueError, match="unknown TRecViT variant 'XL'"):
        TRecViTConfig.from_variant("XL")
    with pytest.raises(ValueError, match="unknown TRecViTConfig field.*hidden"):
        TRecViTConfig.from_variant("B", hidden=3)
