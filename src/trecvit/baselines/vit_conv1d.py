"""ViT-Conv1D, a hybrid baseline of the TRecViT paper's Table 2: a causal temporal convolution in
place of TRecViT's recurrence.

"Same factorisation, different temporal blocks": every layer mixes the frames
at each token position with a causal depthwise convolution over time, no
recurrence, then applies TRecViT's ViT block over the tokens of each frame.
The temporal block is ``x + linear_out(gelu(conv1d(linear_in(RMSNorm(x)))))``,
``linear_in: d -> l`` (``l = lru_width``), the convolution
(:class:`~trecvit.layers.CausalConv1d`, kernel width ``K = conv1d_width``, TRecViT's
own) over ``l`` channels, ``linear_out: l -> d`` (:mod:`trecvit.baselines.hybrid`
holds the rest, which is TRecViT's).

A layer sees ``K`` frames, so the trunk's receptive field is ``depth (K - 1) + 1``
frames: it cannot carry information further back. The model is causal and streams
(:meth:`ViTConv1D.step`) with a state of constant size: the last ``K - 1`` inputs
of each layer's convolution.

Axis legend: ``b`` batch, ``t`` frames, ``n`` tokens per frame, ``d`` width,
``k`` kernel width, ``l`` hidden width, ``r`` pre-logits width.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from trecvit.baselines.hybrid import HybridConfig, HybridState, HybridViT, init_linear_
from trecvit.layers import CausalConv1d


@dataclass
class ViTConv1DConfig(HybridConfig):
    """Hyper-parameters of ViT-Conv1D: :class:`~trecvit.config.TRecViTConfig`'s fields, of which
    ``conv1d_width`` is the kernel width ``K`` (4) and ``lru_width`` the hidden width ``l`` of
    the temporal block (``None``: ``2 * width``); ``min_rad`` and ``max_rad`` are not used.

    Attributes:
        temporal_skip: the skip connection around the temporal block (default ``True``).
    """


class _Conv1DFields(NamedTuple):
    conv: torch.Tensor
    feature_sum: torch.Tensor
    num_frames: torch.Tensor


class Conv1DState(HybridState, _Conv1DFields):
    """The streaming state of :class:`ViTConv1D`, of constant size.

    Attributes:
        conv: ``[depth, b, k-1, n, l]`` float32, per layer the last ``K-1`` inputs of the
            convolution, oldest first.
        feature_sum: ``[b, r]`` float32, the sum of the per-frame head features.
        num_frames: ``[b]`` int64, frames seen (0: the next frame starts a new stream).
    """

    __slots__ = ()


class Conv1DTemporal(nn.Module):
    """``linear_out(gelu(conv1d(linear_in(u))))`` over dim 1 of ``u [b, t, n, d]``.

    Args:
        width: token width ``d``.
        hidden: channels ``l`` of the convolution.
        kernel_width: ``K``.
        final_variance_scale: of ``linear_out`` at initialisation (``2 / depth``, as
            TRecViT's temporal block).
    """

    def __init__(self, width: int, hidden: int, kernel_width: int, final_variance_scale: float = 1.0):
        super().__init__()
        self.final_variance_scale = final_variance_scale
        self.linear_in = nn.Linear(width, hidden)
        self.conv1d = CausalConv1d(hidden, kernel_width)
        self.linear_out = nn.Linear(hidden, width)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """TRecViT's temporal-block rule: ``N(0, 1 / d)`` in, ``N(0, scale / l)`` out, zero
        biases (the convolution initialises itself)."""
        init_linear_(self.linear_in)
        init_linear_(self.linear_out, self.final_variance_scale)

    def state_shapes(self, batch_size: int, num_tokens: int) -> dict[str, tuple[int, ...]]:
        conv = self.conv1d
        return {"conv": (batch_size, conv.kernel_width - 1, num_tokens, conv.width)}

    def forward(self, u: torch.Tensor, state: tuple[torch.Tensor] | None = None,
                seen: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple | None]:
        """``u [b, t, n, d]`` -> ``(y [b, t, n, d], (conv [b, k-1, n, l] float32,) or None)``;
        ``state`` holds the conv inputs before ``u[:, 0]``, ``seen [b]`` is zero where a
        stream starts here."""
        conv_state = None
        if state is not None:
            conv_state = torch.where((seen == 0).view(-1, 1, 1, 1), 0.0, state[0])
        c, conv_state = self.conv1d(self.linear_in(u), conv_state)  # (b, t, n, l)
        y = self.linear_out(F.gelu(c, approximate="tanh"))  # (b, t, n, d)
        return y, (None if state is None else (conv_state,))


class ViTConv1D(HybridViT):
    """ViT-Conv1D (TRecViT paper, Table 2): TRecViT with a causal temporal convolution as
    temporal block (no recurrence).

    Args:
        config: a :class:`ViTConv1DConfig` (default: its defaults, a B-sized model).

    ``self.encoder`` is the hybrid trunk (:class:`~trecvit.baselines.hybrid.HybridEncoder`),
    ``self.head`` TRecViT's head. Streams frame by frame (:meth:`step`) on a
    :class:`Conv1DState` of constant size.
    """

    arch = "vit_conv1d"
    config_class = ViTConv1DConfig
    state_class = Conv1DState

    @classmethod
    def temporal_module(cls, config: ViTConv1DConfig) -> nn.Module:
        return Conv1DTemporal(config.width, config.lru_width, config.conv1d_width,
                              final_variance_scale=2.0 / config.depth)

    @classmethod
    def temporal_flops(cls, config: ViTConv1DConfig, num_tokens: int, clip_frames: int) -> int:
        """Per token and frame ``linear_in`` and ``linear_out``, ``4 d l``; the depthwise
        convolution is elementwise work, not counted."""
        return num_tokens * clip_frames * 4 * config.width * config.lru_width
