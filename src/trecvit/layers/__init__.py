"""Building blocks of TRecViT.

Axis legend used in shape comments throughout the package:
``b`` batch, ``t`` frames (time), ``n`` tokens per frame, ``d`` token width,
``l`` recurrence width (``lru_width``), ``h`` heads, ``k`` conv kernel width,
``c`` clips, ``r`` pre-logits width.
"""

from trecvit.layers.attention import attend, attention_mode, causal_mask, use_attention
from trecvit.layers.conv1d import CausalConv1d
from trecvit.layers.norms import RMSNorm
from trecvit.layers.rglru import RGLRU, BlockDiagonalLinear
from trecvit.layers.scan import linear_scan, sqrt_bound_derivative
from trecvit.layers.spatial import Attention, Mlp, SpatialBlock
from trecvit.layers.temporal import TemporalBlock

__all__ = [
    "RGLRU",
    "Attention",
    "BlockDiagonalLinear",
    "CausalConv1d",
    "Mlp",
    "RMSNorm",
    "SpatialBlock",
    "TemporalBlock",
    "attend",
    "attention_mode",
    "causal_mask",
    "use_attention",
    "linear_scan",
    "sqrt_bound_derivative",
]
