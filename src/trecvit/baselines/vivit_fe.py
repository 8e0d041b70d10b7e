"""ViViT model 2, the "factorised encoder" (Arnab et al. 2021, "ViViT: A Video Vision Transformer").

Section 3.3, "Model 2: Factorised encoder" (ViViT-B/L FE of the paper's tables): two transformers
in series. The spatial transformer (``depth`` blocks, with its own final LayerNorm) runs on the
``n`` tubelet tokens of each tubelet-frame on its own, with a per-frame class token and a learnt
spatial position embedding ``[1, n, d]``; each tubelet-frame is then summarised by its class
token (or the mean of its tokens with ``pool_type="gap"``). The temporal transformer
(``temporal_depth`` blocks) runs over the ``t'`` summaries, with a learnt temporal position
embedding (resampled over time for a video of another length, as in
:class:`~trecvit.baselines.vivit.SpaceTimePositionEmbedding`) and a class token of its own; a final
LayerNorm ends the trunk. "Late fusion" of time: the cost is linear in the number of frames for the
spatial part and quadratic only in ``t'`` for the temporal one. Not causal; no ``step``.

Config: :class:`~trecvit.baselines.vivit.ViViTConfig` (``temporal_depth`` is used here only).
Initialisation as scenic (see :mod:`trecvit.baselines.vivit`).

Axis legend: ``b`` batch, ``t'`` tubelet-frames, ``n`` tokens per tubelet-frame, ``d`` width.
"""

from __future__ import annotations

import torch
from torch import nn

from trecvit.base import ClassifierOutput, VideoClassifier
from trecvit.baselines.vivit import (
    POSEMB_STD,
    SpaceTimePositionEmbedding,
    ViViTConfig,
    ViViTTrunk,
    block_flops,
    embed_and_head_flops,
)
from trecvit.heads import ClassificationHead
from trecvit.init import init_weights_official
from trecvit.layers import SpatialBlock


class SpatialPositionEmbedding(nn.Module):
    """A learnt position embedding ``pos_embed [1, n, d]`` of a tubelet-frame's tokens, and
    ``cls_pos [1, 1, d]`` for its class token (with ``class_token``); ``N(0, 0.02)``.

    Args:
        width: ``d``.
        num_tokens: ``n``.
        class_token: also learn ``cls_pos``.
    """

    def __init__(self, width: int, num_tokens: int, class_token: bool = False):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.empty(1, num_tokens, width))
        self.cls_pos = nn.Parameter(torch.empty(1, 1, width)) if class_token else None
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        for p in (self.pos_embed, self.cls_pos):
            if p is not None:
                nn.init.normal_(p, std=POSEMB_STD)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, n, d]`` plus the embedding."""
        return x + self.pos_embed.to(x.dtype)


class ViViTFEEncoder(ViViTTrunk):
    """The factorised-encoder trunk: spatial transformer per tubelet-frame, temporal transformer
    over the per-frame summaries.

    Args:
        config: a :class:`~trecvit.baselines.vivit.ViViTConfig`.

    ``forward(video [b, t, 3, H, W])`` -> ``encoded [b, 1, (1 +) t', d]``: the temporal
    transformer's tokens as one "frame", its class token first with ``tok``.
    """

    def __init__(self, config: ViViTConfig):
        super().__init__(config)
        tok = config.pool_type == "tok"
        d = config.width
        self.spatial_posemb = SpatialPositionEmbedding(d, config.num_patches, class_token=tok)
        self.spatial_cls = nn.Parameter(torch.zeros(1, 1, d)) if tok else None
        self.spatial_blocks = nn.ModuleList(SpatialBlock(d, config.num_heads, config.mlp_dim)
                                            for _ in range(config.depth))
        self.spatial_norm = nn.LayerNorm(d, eps=1e-6)
        # the temporal embedding: [1, t', 1, d], one token per tubelet-frame
        self.temporal_posemb = SpaceTimePositionEmbedding(d, config.posemb_frames, 1, class_token=tok,
                                                          resample=config.posemb_resample)
        self.temporal_cls = nn.Parameter(torch.zeros(1, 1, d)) if tok else None
        self.temporal_blocks = nn.ModuleList(SpatialBlock(d, config.num_heads, config.mlp_dim)
                                             for _ in range(config.temporal_depth))
        self.norm = nn.LayerNorm(d, eps=1e-6)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The class tokens only (the layers initialise themselves): zeros."""
        for p in (self.spatial_cls, self.temporal_cls):
            if p is not None:
                nn.init.zeros_(p)

    @staticmethod
    def _with_class_token(x: torch.Tensor, cls: torch.Tensor | None, pos: torch.Tensor | None
                          ) -> torch.Tensor:
        """``x [B, s, d]`` with ``cls + pos`` prepended (when there is a class token)."""
        if cls is None:
            return x
        return torch.cat([(cls + pos).to(x.dtype).expand(x.shape[0], -1, -1), x], dim=1)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        self.check_video(video)
        x = self.tokens(video)  # (b, t', n, d)
        b, t, n, d = x.shape
        x = self.spatial_posemb(x.reshape(b * t, n, d))  # (b t', n, d)
        x = self._with_class_token(x, self.spatial_cls, self.spatial_posemb.cls_pos)
        for block in self.spatial_blocks:
            x = self.run(block, x)
        x = self.spatial_norm(x)
        x = x[:, 0] if self.spatial_cls is not None else x.mean(dim=1)  # (b t', d)
        x = self.temporal_posemb(x.view(b, t, 1, d)).view(b, t, d)  # (b, t', d)
        x = self._with_class_token(x, self.temporal_cls, self.temporal_posemb.cls_pos)
        for block in self.temporal_blocks:
            x = self.run(block, x)
        return self.norm(x)[:, None]  # (b, 1, (1 +) t', d)


class ViViTFactorisedEncoder(VideoClassifier):
    """ViViT model 2 (factorised encoder), Arnab et al. 2021.

    Args:
        config: a :class:`~trecvit.baselines.vivit.ViViTConfig` (default: B/16x2, 4 temporal
            blocks, Kinetics-400).

    ``self.encoder`` is :class:`ViViTFEEncoder`, ``self.head`` TRecViT's classification head on the
    temporal class token (``tok``) or the mean of the temporal tokens (``gap``). Not causal; no
    ``step``.
    """

    arch = "vivit_fe"
    config_class = ViViTConfig

    def __init__(self, config: ViViTConfig | None = None):
        super().__init__(config if config is not None else ViViTConfig())
        config = self.config
        self.encoder = ViViTFEEncoder(config)
        self.head = ClassificationHead(config.width, config.rep_size, config.num_classes, config.pool_type)
        init_weights_official(self)

    def forward(self, video: torch.Tensor) -> ClassifierOutput:
        """Classify ``video [b, t, 3, H, W]`` (float, RGB in [0, 1], channel-first)."""
        return super().forward(video)

    @classmethod
    def analytic_flops(cls, config: ViViTConfig, num_frames: int, batch_size: int = 1) -> int:
        """Forward FLOPs of ``batch_size`` videos of ``num_frames`` frames, from the config alone:
        the tubelet convolution, ``t' depth`` spatial blocks on ``n (+ 1)`` tokens,
        ``temporal_depth`` temporal blocks on ``t' (+ 1)`` tokens (each block as in
        :func:`~trecvit.baselines.vivit.block_flops`), the head."""
        t = config.tubelet_count(num_frames)
        tok = int(config.pool_type == "tok")
        d, m = config.width, config.mlp_dim
        spatial = t * config.depth * block_flops(config.num_patches + tok, d, m)
        temporal = config.temporal_depth * block_flops(t + tok, d, m)
        return batch_size * (spatial + temporal + embed_and_head_flops(config, num_frames, head_frames=1))


__all__ = ["SpatialPositionEmbedding", "ViViTFEEncoder", "ViViTFactorisedEncoder"]
