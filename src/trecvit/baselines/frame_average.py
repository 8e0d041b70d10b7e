"""Baselines that share TRecViT's parts.

:class:`FrameAverageViT` is TRecViT with the temporal blocks removed: each frame
goes through the same tokenizer and spatial ViT blocks on its own, and the
classifier averages the per-frame features. It cannot see the order of the
frames, so it is at chance on classes that differ only by the direction of time
(a clip and its reverse). It has the same attribute names as :class:`TRecViT`
(``tokenizer``, ``blocks[i].spatial``, ``norm``, ``head``, ``config``), so ViT
initialisation and the trainer treat both alike.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from trecvit.config import TRecViTConfig
from trecvit.heads import ClassificationHead
from trecvit.init import init_weights_official
from trecvit.layers import SpatialBlock
from trecvit.model import TRecViTOutput
from trecvit.tokenizer import Tokenizer
from trecvit.validation import check_finite, check_frames


class FrameLayer(nn.Module):
    """One encoder layer of the baseline: the spatial block only."""

    def __init__(self, config: TRecViTConfig):
        super().__init__()
        self.spatial = SpatialBlock(config.width, config.num_heads, config.mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(x)


class FrameAverageViT(nn.Module):
    """An order-blind baseline: a per-frame ViT whose features are averaged over frames.

    Args:
        config: a :class:`TRecViTConfig`; the temporal fields (``conv1d_width``,
            ``lru_width``, radii) are ignored.
    """

    arch = "frame_average"

    def __init__(self, config: TRecViTConfig | None = None):
        super().__init__()
        config = config if config is not None else TRecViTConfig()
        self.config = config
        self.tokenizer = Tokenizer(config.width, config.patch_size, config.grid_hw,
                                   config.posemb, class_token=config.pool_type == "tok")
        self.blocks = nn.ModuleList(FrameLayer(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.width, eps=1e-6)
        self.head = ClassificationHead(config.width, config.rep_size, config.num_classes,
                                       config.pool_type)
        self.grad_checkpointing = False
        init_weights_official(self, depth=config.depth)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each layer's activations in the backward pass (saves memory)."""
        self.grad_checkpointing = enable

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward_features(self, video: torch.Tensor) -> torch.Tensor:
        """``video [b, t, 3, H, W]`` -> ``encoded [b, t, n, d]``, every frame on its own."""
        check_frames(video, name="video", layout="BT3HW", patch_size=self.config.patch_size)
        dtype = self.tokenizer.patch_embed.weight.dtype
        check_finite(video, name="video", dtype=dtype)
        b, t = video.shape[:2]
        x = self.tokenizer(video.to(dtype).reshape(b * t, *video.shape[2:]))  # (b t, n, d)
        for layer in self.blocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(layer, x, use_reentrant=False)
            else:
                x = layer(x)
        return self.norm(x).view(b, t, *x.shape[1:])  # (b, t, n, d)

    def forward(self, video: torch.Tensor) -> TRecViTOutput:
        """Classify ``video [b, t, 3, H, W]`` from the mean of its per-frame features."""
        encoded = self.forward_features(video)
        features = self.head.frame_features(encoded).mean(dim=1)  # (b, r)
        logits = self.head(features)
        return TRecViTOutput(logits=logits, probs=logits.float().softmax(dim=-1),
                             pre_logits=features[:, None], encoded=encoded)

    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``config.json`` (with ``"arch": "frame_average"``) and ``model.safetensors``."""
        from trecvit.checkpoints.pretrained import save_pretrained

        save_pretrained(self, directory)
