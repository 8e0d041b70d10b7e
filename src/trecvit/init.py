"""The official initialisation, for training TRecViT from scratch.

``init_weights_official(model)`` reproduces the release's initialisers (see
the spec); ``TRecViT(config)`` applies it on construction.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from trecvit.heads import ClassificationHead
from trecvit.layers import Attention, BlockDiagonalLinear, CausalConv1d, Mlp, RGLRU, RMSNorm, TemporalBlock
from trecvit.layers.rglru import rnn_param_init
from trecvit.tokenizer import Tokenizer

# Flax's truncated normal rescales the std so the truncated distribution has
# the requested variance (truncation at two standard deviations).
_TRUNC_STD_CORRECTION = 0.87962566103423978


def lecun_normal_(weight: torch.Tensor, fan_in: int) -> None:
    """Truncated-normal LeCun initialisation (``std = 1/sqrt(fan_in)``), Flax style."""
    std = math.sqrt(1.0 / fan_in) / _TRUNC_STD_CORRECTION
    nn.init.trunc_normal_(weight, std=std, a=-2.0 * std, b=2.0 * std)


@torch.no_grad()
def init_weights_official(model: nn.Module, depth: int) -> None:
    """Initialise every parameter of a TRecViT as the official release does.

    Args:
        model: a :class:`trecvit.TRecViT` (or any module built from its layers).
        depth: the number of encoder layers (scales ``linear_out``).
    """
    for module in model.modules():
        if isinstance(module, Tokenizer):
            pe = module.patch_embed
            lecun_normal_(pe.weight, fan_in=pe.weight[0].numel())
            nn.init.zeros_(pe.bias)
            if isinstance(module.pos_embed, nn.Parameter):
                nn.init.normal_(module.pos_embed, std=module.width ** -0.5)
            if module.cls_token is not None:
                nn.init.zeros_(module.cls_token)
        elif isinstance(module, TemporalBlock):
            for lin in (module.linear_x, module.linear_y):
                nn.init.normal_(lin.weight, std=1.0 / math.sqrt(lin.in_features))
                nn.init.zeros_(lin.bias)
            out = module.linear_out
            nn.init.normal_(out.weight, std=math.sqrt((2.0 / depth) / out.in_features))
            nn.init.zeros_(out.bias)
        elif isinstance(module, CausalConv1d):
            nn.init.normal_(module.weight, std=math.sqrt(0.01 / module.kernel_width))
            nn.init.zeros_(module.bias)
        elif isinstance(module, BlockDiagonalLinear):
            nn.init.normal_(module.weight, std=1.0 / math.sqrt(module.width))
            nn.init.zeros_(module.bias)
        elif isinstance(module, RGLRU):
            module.a_param.copy_(rnn_param_init(module.width, module.min_rad, module.max_rad))
        elif isinstance(module, RMSNorm):
            nn.init.zeros_(module.scale)
        elif isinstance(module, Attention):
            # Flax initialises query, key, value and out as separate [d, d] kernels.
            for block in module.qkv.weight.chunk(3, dim=0):
                nn.init.xavier_uniform_(block)
            nn.init.xavier_uniform_(module.proj.weight)
            nn.init.zeros_(module.qkv.bias)
            nn.init.zeros_(module.proj.bias)
        elif isinstance(module, Mlp):
            for lin in (module.fc1, module.fc2):
                nn.init.xavier_uniform_(lin.weight)
                nn.init.normal_(lin.bias, std=1e-6)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, ClassificationHead):
            for lin in (module.pre_logits, module.classifier):
                if lin is not None:
                    lecun_normal_(lin.weight, fan_in=lin.in_features)
                    nn.init.zeros_(lin.bias)
