"""The order-blind baseline: frames averaged, order ignored, saved and loaded like TRecViT."""

from __future__ import annotations

import pytest
import torch

from trecvit import TRecViT, TRecViTConfig
from trecvit.baselines import FrameAverageViT
from trecvit.checkpoints.auto import from_pretrained as load_pretrained


def _config() -> TRecViTConfig:
    return TRecViTConfig(width=32, depth=2, num_heads=2, mlp_dim=64, image_size=32, patch_size=8,
                         num_classes=5, rep_size=16, frames_per_clip=6)


def test_baseline_ignores_frame_order_and_trecvit_does_not():
    torch.manual_seed(0)
    video = torch.rand(2, 6, 3, 32, 32)
    shuffled = video[:, torch.tensor([3, 0, 5, 1, 4, 2])]
    base = FrameAverageViT(_config()).eval()
    torch.testing.assert_close(base(shuffled).logits, base(video).logits, atol=1e-5, rtol=1e-5)
    model = TRecViT(_config()).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    assert not torch.allclose(model(shuffled).logits, model(video).logits, atol=1e-4)


def test_baseline_shares_trecvit_spatial_parts():
    base, model = FrameAverageViT(_config()), TRecViT(_config())
    base_keys = set(base.state_dict())
    trecvit_keys = {k for k in model.state_dict() if ".temporal." not in k}
    assert base_keys == trecvit_keys


def test_baseline_round_trips_through_save_pretrained(tmp_path):
    base = FrameAverageViT(_config()).eval()
    base.save_pretrained(tmp_path / "base")
    loaded = load_pretrained(tmp_path / "base")
    assert isinstance(loaded, FrameAverageViT)
    video = torch.rand(1, 4, 3, 32, 32)
    torch.testing.assert_close(loaded(video).logits, base(video).logits)


def test_baseline_gradients_reach_every_parameter_with_checkpointing():
    base = FrameAverageViT(_config())
    base.set_grad_checkpointing(True)
    base(torch.rand(2, 3, 3, 32, 32)).logits.sum().backward()
    missing = [n for n, p in base.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing


def test_baseline_rejects_bad_video():
    with pytest.raises(ValueError, match="video"):
        FrameAverageViT(_config())(torch.rand(2, 3, 32, 32))
