"""The order-blind baseline: TRecViT with the temporal blocks removed, frames averaged.

:class:`FrameAverageViT` sends each frame through the same tokenizer and
spatial ViT blocks on its own (its trunk, :class:`FrameEncoder`), and its
classifier averages the per-frame features over the clip. It cannot see the
order of the frames, so it is at chance on classes that differ only by the
direction of time (a clip and its reverse). Its state-dict names are TRecViT's
without the temporal blocks (``encoder.tokenizer``, ``encoder.blocks[i].spatial``,
``encoder.norm``, ``head``), so ViT initialisation and the trainer treat both
alike. Config: :class:`~trecvit.config.TRecViTConfig` (the temporal fields are
not used).
"""

from __future__ import annotations

import torch
from torch import nn

from trecvit.base import ClassifierOutput, VideoClassifier
from trecvit.config import TRecViTConfig
from trecvit.encoder import FrameTrunk
from trecvit.heads import ClassificationHead
from trecvit.init import init_weights_official
from trecvit.layers import SpatialBlock


class FrameLayer(nn.Module):
    """One encoder layer of the baseline: the spatial block only."""

    def __init__(self, config: TRecViTConfig):
        super().__init__()
        self.spatial = SpatialBlock(config.width, config.num_heads, config.mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(x)


class FrameEncoder(FrameTrunk):
    """A per-frame ViT trunk: ``video [b, t, 3, H, W]`` -> ``encoded [b, t, n, d]``, each frame
    on its own (no mixing over time)."""

    def __init__(self, config: TRecViTConfig):
        super().__init__(config)
        self.blocks = nn.ModuleList(FrameLayer(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.width, eps=1e-6)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        self.check_video(video)
        b, t = video.shape[:2]
        x = self.tokens(video).flatten(0, 1)  # (b t, n, d)
        for layer in self.blocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(layer, x, use_reentrant=False)
            else:
                x = layer(x)
        return self.norm(x).view(b, t, *x.shape[1:])  # (b, t, n, d)


class FrameAverageViT(VideoClassifier):
    """An order-blind baseline: a per-frame ViT whose features are averaged over frames.

    Args:
        config: a :class:`TRecViTConfig`; the temporal fields (``conv1d_width``,
            ``lru_width``, radii, ``frames_per_clip``) are ignored: a video is one clip.
    """

    arch = "frame_average"
    config_class = TRecViTConfig

    def __init__(self, config: TRecViTConfig | None = None):
        super().__init__(config if config is not None else TRecViTConfig())
        config = self.config
        self.encoder = FrameEncoder(config)
        config.refuse_ablations("lru_gates", "temporal_conv", "temporal_skip", "block_order",
                                why="the frame-average baseline has no temporal block")
        self.head = ClassificationHead(config.width, config.rep_size, config.num_classes,
                                       config.pool_type, config.readout)
        init_weights_official(self)

    def forward(self, video: torch.Tensor) -> ClassifierOutput:
        """Classify ``video [b, t, 3, H, W]`` from the mean of its per-frame features."""
        return super().forward(video)
