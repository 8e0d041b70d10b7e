"""The spatial block: a pre-norm ViT block over the tokens of one frame."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from trecvit.layers.attention import attend


class Attention(nn.Module):
    """Multi-head self-attention with biases, scores scaled by ``1/sqrt(d/h)``.

    Query, key and value are one fused projection ``qkv`` (``[3d, d]``, in that
    order); attention goes through :func:`~trecvit.layers.attention.attend` (fused
    ``scaled_dot_product_attention`` unless ``use_attention("naive")`` says otherwise).
    """

    def __init__(self, width: int, num_heads: int):
        super().__init__()
        if width % num_heads:
            raise ValueError(f"Attention: width {width} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The official initialisation: Flax initialises query, key, value and out as separate
        ``[d, d]`` kernels, each Xavier-uniform; zero biases."""
        for block in self.qkv.weight.chunk(3, dim=0):
            nn.init.xavier_uniform_(block)
        nn.init.xavier_uniform_(self.proj.weight)
        nn.init.zeros_(self.qkv.bias)
        nn.init.zeros_(self.proj.bias)

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x [b, n, d]`` -> ``(q, k, v)``, each ``[b, h, n, d/h]``."""
        b, n, d = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.num_heads, d // self.num_heads)
        return qkv.permute(2, 0, 3, 1, 4).unbind(0)

    def merge(self, y: torch.Tensor) -> torch.Tensor:
        """Per-head outputs ``y [b, h, n, d/h]`` -> ``proj`` of them, ``[b, n, d]``."""
        b, h, n, e = y.shape
        return self.proj(y.transpose(1, 2).reshape(b, n, h * e))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x [b, n, d] -> [b, n, d]``; ``mask`` (bool ``[n, n]``, ``True`` = may attend) as
        in :func:`~trecvit.layers.attention.attend`."""
        q, k, v = self.heads(x)  # each (b, h, n, d/h)
        return self.merge(attend(q, k, v, mask))


class Mlp(nn.Module):
    """``fc2(gelu_tanh(fc1(x)))``."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The official initialisation: Xavier-uniform kernels, biases ``N(0, 1e-6)``."""
        for lin in (self.fc1, self.fc2):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.normal_(lin.bias, std=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class SpatialBlock(nn.Module):
    """``x + MHSA(LN(x))`` then ``x + MLP(LN(x))`` within each frame.

    LayerNorm epsilon is 1e-6 and GELU the tanh form, as in the official model
    (official name: ``encoderblock_{i}``).

    Args:
        width: token width ``d``.
        num_heads: attention heads.
        mlp_dim: hidden width of the MLP.
    """

    def __init__(self, width: int, num_heads: int, mlp_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=1e-6)
        self.attn = Attention(width, num_heads)
        self.norm2 = nn.LayerNorm(width, eps=1e-6)
        self.mlp = Mlp(width, mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [b, t, n, d]`` (or ``[b, n, d]``), attention over ``n`` only."""
        shape = x.shape
        x = x.reshape(-1, shape[-2], shape[-1])  # (b t, n, d): a view, no copy
        x = x + self.attn(self.norm1(x))
        x = x + self.mlp(self.norm2(x))
        return x.view(shape)
