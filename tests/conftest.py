"""Shared fixtures: the official reference outputs, small configs, official-layout files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from trecvit import TRecViT, TRecViTConfig
from trecvit.assets import reference_fixtures
from trecvit.checkpoints.official import official_param_shapes
from trecvit.tools.verify import reference_model

FIXTURES = Path(__file__).parent / "fixtures"
REFERENCE_NAMES = sorted(reference_fixtures())


@pytest.fixture(params=REFERENCE_NAMES)
def reference(request):
    """``(name, model, arrays)`` for each official reference fixture."""
    model, arrays = reference_model(reference_fixtures()[request.param])
    return request.param, model, arrays


def reference_video(arrays) -> torch.Tensor:
    """The fixture's video, ``[b, t, h, w, 3]`` -> ``[b, t, 3, h, w]``."""
    return torch.from_numpy(arrays["video"]).permute(0, 1, 4, 2, 3).contiguous()


def tiny_config(**overrides) -> TRecViTConfig:
    """A small model (2 layers, width 32) for fast tests."""
    fields = dict(width=32, depth=2, num_heads=2, mlp_dim=64, image_size=32, num_classes=5,
                  rep_size=24, frames_per_clip=4)
    fields.update(overrides)
    return TRecViTConfig(**fields)


def tiny_model(seed: int = 0, **overrides) -> TRecViT:
    torch.manual_seed(seed)
    model = TRecViT(tiny_config(**overrides))
    with torch.no_grad():  # move zero-initialised parameters away from zero so they all matter
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model.eval()


def write_official_npz(path: Path, config: TRecViTConfig, seed: int = 0, scale: float = 0.02) -> Path:
    """An official-layout checkpoint for ``config`` filled with random numbers."""
    rng = np.random.default_rng(seed)
    arrays = {k: (scale * rng.standard_normal(s)).astype(np.float32)
              for k, s in official_param_shapes(config).items()}
    np.savez(path, **arrays)
    return path
