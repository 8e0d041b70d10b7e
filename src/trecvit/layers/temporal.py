"""The temporal block: Griffin's recurrent residual block applied over time."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from trecvit.layers.conv1d import CausalConv1d
from trecvit.layers.norms import RMSNorm
from trecvit.layers.rglru import RGLRU


class TemporalBlock(nn.Module):
    """``x + linear_out(RG-LRU(conv1d(linear_x(u))) * gelu(linear_y(u)))``, ``u = RMSNorm(x)``.

    Mixes information over time, for every token position independently
    (parameters shared over positions). Official name: ``residualblock_{i:02d}``.
    There is no MLP in this block (the release's ``use_mlp = False``).

    Args:
        width: token width ``d``.
        lru_width: recurrence width ``l``.
        num_heads: diagonal blocks of the RG-LRU gates.
        conv1d_width: kernel width of the causal convolution.
        min_rad, max_rad: RG-LRU eigenvalue range at initialisation.
        final_variance_scale: variance scale of ``linear_out`` at initialisation
            (``2 / depth`` in the official model, so the residual stream's
            variance does not grow with depth).
        gates: the RG-LRU's input and recurrence gates (see :class:`RGLRU`).
        conv: the causal convolution; without it (``False``) its input goes
            straight to the RG-LRU and its state holds no frames.
        skip: the residual connection; without it (``False``) the block returns
            ``linear_out(...)`` alone.

    ``gates``, ``conv`` and ``skip`` are the ablations of the paper's Table 1; the
    official block has all three.
    """

    def __init__(self, width: int, lru_width: int, num_heads: int, conv1d_width: int = 4,
                 min_rad: float = 0.5, max_rad: float = 0.999, final_variance_scale: float = 1.0, *,
                 gates: bool = True, conv: bool = True, skip: bool = True):
        super().__init__()
        self.final_variance_scale = final_variance_scale
        self.skip = skip
        self.norm = RMSNorm(width)
        self.linear_y = nn.Linear(width, lru_width)
        self.linear_x = nn.Linear(width, lru_width)
        self.conv1d = CausalConv1d(lru_width, conv1d_width) if conv else None
        self.rg_lru = RGLRU(lru_width, num_heads, min_rad, max_rad, gates=gates)
        self.linear_out = nn.Linear(lru_width, width)

    @classmethod
    def from_config(cls, config) -> "TemporalBlock":
        """The temporal block of a :class:`~trecvit.config.TRecViTConfig` (with its ablation
        switches), as every layer of TRecViT (and PureLRU) builds it."""
        return cls(config.width, config.lru_width, config.num_heads, config.conv1d_width,
                   config.min_rad, config.max_rad, final_variance_scale=2.0 / config.depth,
                   gates=config.lru_gates, conv=config.temporal_conv, skip=config.temporal_skip)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The official initialisation of the three linear maps (the norm, conv and RG-LRU
        initialise themselves): ``N(0, 1 / d)`` in, ``N(0, final_variance_scale / l)`` out,
        zero biases."""
        for lin in (self.linear_x, self.linear_y):
            nn.init.normal_(lin.weight, std=1.0 / math.sqrt(lin.in_features))
            nn.init.zeros_(lin.bias)
        out = self.linear_out
        nn.init.normal_(out.weight, std=math.sqrt(self.final_variance_scale / out.in_features))
        nn.init.zeros_(out.bias)

    def forward(self, x: torch.Tensor, conv_state: torch.Tensor | None = None,
                lru_state: torch.Tensor | None = None, first: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Process ``x [b, t, n, d]`` over ``t``.

        Args:
            x: tokens ``[b, t, n, d]``.
            conv_state: last ``K-1`` conv inputs ``[b, k-1, n, l]``, or ``None``.
            lru_state: RG-LRU state ``[b, n, l]`` float32, or ``None``.
            first: ``[b]`` bool, True where ``x[:, 0]`` starts a new sequence
                (the states are then ignored for that element).

        Returns:
            ``(x + out [b, t, n, d], conv_state, lru_state)``, the new states.
        """
        u = self.norm(x)
        gate = F.gelu(self.linear_y(u), approximate="tanh")  # (b, t, n, l)
        v = self.linear_x(u)  # (b, t, n, l)
        if self.conv1d is None:  # no convolution: nothing to remember but an empty window
            c = v
            b, _, n, l = v.shape
            conv_state = v.new_zeros(b, 0, n, l, dtype=torch.float32) if conv_state is None else conv_state
        else:
            if conv_state is not None and first is not None:
                conv_state = torch.where(first.view(-1, 1, 1, 1), torch.zeros_like(conv_state), conv_state)
            c, conv_state = self.conv1d(v, conv_state)
        h, lru_state = self.rg_lru(c, lru_state, first)
        out = self.linear_out(h * gate)
        return (x + out if self.skip else out), conv_state, lru_state

