"""Normalisation layers that differ from PyTorch's defaults."""

from __future__ import annotations

import torch
from torch import nn


class RMSNorm(nn.Module):
    """Root-mean-square norm of the Griffin temporal block.

    ``y = x * rsqrt(mean(x^2, -1) + eps) * (1 + scale)`` with ``scale``
    initialised to zeros: note the ``1 +``, as in the official model.
    """

    def __init__(self, width: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.zeros(width))

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """``scale = 0``: the norm starts as a plain RMS normalisation."""
        nn.init.zeros_(self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var = x.pow(2).mean(dim=-1, keepdim=True)
        return x * torch.rsqrt(var + self.eps) * (1.0 + self.scale)
