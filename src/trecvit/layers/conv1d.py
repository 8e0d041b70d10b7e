"""Causal depthwise convolution over time (Griffin's ``Conv1D``)."""

from __future__ import annotations

import math

import torch
from torch import nn


class CausalConv1d(nn.Module):
    """``c_t = bias + sum_{s=0..K-1} w[K-1-s] * v_{t-s}``, per channel.

    Terms before the first frame are zero (or, when streaming, come from the
    state: the last ``K-1`` inputs seen). ``w[K-1]`` multiplies the current
    frame, as in the official ``conv_1d/w [K, L]``.

    Args:
        width: number of channels ``l``.
        kernel_width: ``K``.
    """

    def __init__(self, width: int, kernel_width: int):
        super().__init__()
        self.width = width
        self.kernel_width = kernel_width
        self.weight = nn.Parameter(torch.empty(kernel_width, width))  # (k, l)
        self.bias = nn.Parameter(torch.empty(width))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The official initialisation: ``w ~ N(0, 0.01 / K)``, zero bias."""
        nn.init.normal_(self.weight, std=math.sqrt(0.01 / self.kernel_width))
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Convolve ``x [b, t, n, l]`` over ``t``.

        Args:
            x: inputs ``[b, t, n, l]``.
            state: the ``K-1`` inputs before ``x[:, 0]``, ``[b, k-1, n, l]``, oldest
                first; ``None`` means zeros (the start of a sequence).

        Returns:
            ``(y [b, t, n, l], new_state [b, k-1, n, l] float32)``.
        """
        k = self.kernel_width
        b, t, n, l = x.shape
        if state is None:
            state = x.new_zeros(b, k - 1, n, l)
        padded = torch.cat([state.to(x.dtype), x], dim=1)  # (b, k-1+t, n, l)
        w = self.weight.to(x.dtype)
        y = self.bias.to(x.dtype) + padded[:, k - 1:] * w[k - 1]
        for j in range(k - 1):  # w[j] multiplies the input (k-1-j) frames back
            y = torch.addcmul(y, padded[:, j:j + t], w[j])
        new_state = padded[:, t:].to(torch.float32, copy=True)  # (b, k-1, n, l)
        return y, new_state
