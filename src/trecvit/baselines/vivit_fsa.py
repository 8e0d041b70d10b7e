"""ViViT model 3, "factorised self-attention" (Arnab et al. 2021, "ViViT: A Video Vision Transformer").

Section 3.3, "Model 3: Factorised self-attention" (ViViT-B/L FSA of the paper's tables): the
tokens are model 1's (tubelets plus a learnt spatio-temporal position embedding, resampled over
time as in :class:`~trecvit.baselines.vivit.SpaceTimePositionEmbedding`), but each block splits
the attention in two: ``x + SpatialAttn(LN(x))`` over the ``n`` tokens of each tubelet-frame, then
``x + TemporalAttn(LN(x))`` over the ``t'`` tubelet-frames at each token position, then
``x + MLP(LN(x))``. A final LayerNorm ends the trunk. There is no class token (the paper: it is
not used, "to avoid ambiguities when reshaping"): the head averages tokens (``pool_type="gap"``,
the only value, and the default of :class:`ViViTFSAConfig`). Attention costs ``n^2 t' + t'^2 n``
per block instead of model 1's ``(t' n)^2``. Not causal (temporal attention sees every frame);
no ``step``.

Axis legend: ``b`` batch, ``t'`` tubelet-frames, ``n`` tokens per tubelet-frame, ``d`` width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from trecvit.base import ClassifierOutput, VideoClassifier
from trecvit.baselines.vivit import (
    SpaceTimePositionEmbedding,
    ViViTConfig,
    ViViTTrunk,
    embed_and_head_flops,
)
from trecvit.heads import ClassificationHead
from trecvit.init import init_weights_official
from trecvit.layers import Attention, Mlp


@dataclass
class ViViTFSAConfig(ViViTConfig):
    """:class:`~trecvit.baselines.vivit.ViViTConfig` for factorised self-attention.

    Attributes:
        pool_type: must be ``"gap"`` (the default): model 3 has no class token.
        temporal_depth: not used (spatial and temporal attention share each of the ``depth``
            blocks).
    """

    pool_type: str = "gap"

    def validate(self) -> None:
        if self.pool_type != "gap":
            raise ValueError(f"{type(self).__name__}.pool_type must be 'gap' (factorised self-attention "
                             f"has no class token; the head averages the tokens), got {self.pool_type!r}")
        super().validate()


class FactorisedSelfAttentionBlock(nn.Module):
    """``x + SpatialAttn(LN(x))`` over ``n``, ``x + TemporalAttn(LN(x))`` over ``t'``, then
    ``x + MLP(LN(x))``, on ``x [b, t', n, d]``. LayerNorm epsilon 1e-6, tanh GELU, Xavier-uniform
    kernels (as :class:`~trecvit.layers.SpatialBlock`).

    Args:
        width: ``d``.
        num_heads: heads of both attentions.
        mlp_dim: hidden width of the MLP.
    """

    def __init__(self, width: int, num_heads: int, mlp_dim: int):
        super().__init__()
        self.spatial_norm = nn.LayerNorm(width, eps=1e-6)
        self.spatial_attn = Attention(width, num_heads)
        self.temporal_norm = nn.LayerNorm(width, eps=1e-6)
        self.temporal_attn = Attention(width, num_heads)
        self.mlp_norm = nn.LayerNorm(width, eps=1e-6)
        self.mlp = Mlp(width, mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, n, d = x.shape
        s = x.reshape(b * t, n, d)  # (b t', n, d): each tubelet-frame
        s = s + self.spatial_attn(self.spatial_norm(s))
        y = s.view(b, t, n, d).transpose(1, 2).reshape(b * n, t, d)  # (b n, t', d): each position
        y = y + self.temporal_attn(self.temporal_norm(y))
        x = y.view(b, n, t, d).transpose(1, 2)  # (b, t', n, d)
        return x + self.mlp(self.mlp_norm(x))


class ViViTFSAEncoder(ViViTTrunk):
    """The factorised self-attention trunk: tubelets + spatio-temporal position embedding,
    ``depth`` :class:`FactorisedSelfAttentionBlock` s, final LayerNorm.

    ``forward(video [b, t, 3, H, W])`` -> ``encoded [b, t', n, d]``.
    """

    def __init__(self, config: ViViTFSAConfig):
        super().__init__(config)
        self.posemb = SpaceTimePositionEmbedding(config.width, config.posemb_frames, config.num_patches,
                                                 resample=config.posemb_resample)
        self.blocks = nn.ModuleList(FactorisedSelfAttentionBlock(config.width, config.num_heads,
                                                                 config.mlp_dim)
                                    for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.width, eps=1e-6)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        self.check_video(video)
        x = self.posemb(self.tokens(video))  # (b, t', n, d)
        for block in self.blocks:
            x = self.run(block, x)
        return self.norm(x)


class ViViTFactorisedSelfAttention(VideoClassifier):
    """ViViT model 3 (factorised self-attention), Arnab et al. 2021.

    Args:
        config: a :class:`ViViTFSAConfig` (default: B/16x2, Kinetics-400, ``gap``).

    ``self.encoder`` is :class:`ViViTFSAEncoder`, ``self.head`` TRecViT's classification head
    (per tubelet-frame: mean of its tokens, ``tanh`` pre-logits; averaged over tubelet-frames).
    Not causal; no ``step``.
    """

    arch = "vivit_fsa"
    config_class = ViViTFSAConfig

    def __init__(self, config: ViViTFSAConfig | None = None):
        super().__init__(config if config is not None else ViViTFSAConfig())
        config = self.config
        self.encoder = ViViTFSAEncoder(config)
        self.head = ClassificationHead(config.width, config.rep_size, config.num_classes, config.pool_type)
        init_weights_official(self)

    def forward(self, video: torch.Tensor) -> ClassifierOutput:
        """Classify ``video [b, t, 3, H, W]`` (float, RGB in [0, 1], channel-first)."""
        return super().forward(video)

    @classmethod
    def analytic_flops(cls, config: ViViTFSAConfig, num_frames: int, batch_size: int = 1) -> int:
        """Forward FLOPs of ``batch_size`` videos of ``num_frames`` frames, from the config alone.

        Per block on the ``t' n`` tokens: two sets of qkv and out projections ``16 d^2`` and the
        MLP ``4 d m`` per token, spatial attention ``4 n^2 d`` per tubelet-frame, temporal
        attention ``4 t'^2 d`` per token position; plus the tubelet convolution and the head (the
        pre-logits once per tubelet-frame). Norms and activations are not counted.
        """
        t, n = config.tubelet_count(num_frames), config.num_patches
        d, m = config.width, config.mlp_dim
        block = t * n * (16 * d * d + 4 * d * m) + 4 * t * n * n * d + 4 * n * t * t * d
        return batch_size * (config.depth * block + embed_and_head_flops(config, num_frames, head_frames=t))


__all__ = ["FactorisedSelfAttentionBlock", "ViViTFSAConfig", "ViViTFSAEncoder",
           "ViViTFactorisedSelfAttention"]
