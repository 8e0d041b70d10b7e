"""Tokenizer: one-frame patch embedding, position embedding, class token."""

from __future__ import annotations

import torch
from torch import nn

from trecvit.init import lecun_normal_


def sincos2d_posemb(grid_h: int, grid_w: int, width: int, temperature: float = 10_000.0,
                    device: torch.device | None = None) -> torch.Tensor:
    """MoCo v3 2-D sin-cos position embedding ``[1, grid_h * grid_w, width]``.

    With ``y, x`` the row and column of a patch and
    ``omega_k = 1 / temperature^(k / (width/4 - 1))``, the embedding is
    ``[sin(x omega), cos(x omega), sin(y omega), cos(y omega)]``, row-major
    over the grid.
    """
    if width % 4:
        raise ValueError(f"sincos2d position embedding needs width divisible by 4, got {width}")
    quarter = width // 4
    y, x = torch.meshgrid(torch.arange(grid_h, dtype=torch.float32, device=device),
                          torch.arange(grid_w, dtype=torch.float32, device=device), indexing="ij")
    omega = torch.arange(quarter, dtype=torch.float32, device=device) / max(quarter - 1, 1)
    omega = 1.0 / temperature ** omega  # (width/4,)
    y = y.flatten()[:, None] * omega[None, :]  # (gh gw, width/4)
    x = x.flatten()[:, None] * omega[None, :]
    pe = torch.cat([torch.sin(x), torch.cos(x), torch.sin(y), torch.cos(y)], dim=1)
    return pe[None]  # (1, gh gw, width)


class Tokenizer(nn.Module):
    """Frames ``[b, 3, H, W]`` to tokens ``[b, n, d]``.

    Non-overlapping ``p x p`` patches are projected to width ``d`` (a
    convolution with kernel = stride = ``p``), the position embedding over the
    patch grid is added, then, with a class token, the class token is prepended
    (it gets no position embedding).

    Args:
        width: token width ``d``.
        patch_size: ``p``.
        grid_hw: patch grid ``(H/p, W/p)`` of the learnt position embedding
            (and of the cached sin-cos one).
        posemb: ``"learn"`` or ``"sincos2d"``.
        class_token: prepend a class token.
    """

    def __init__(self, width: int, patch_size: int, grid_hw: tuple[int, int],
                 posemb: str = "learn", class_token: bool = True):
        super().__init__()
        self.width = width
        self.patch_size = patch_size
        self.grid_hw = tuple(grid_hw)
        self.posemb = posemb
        self.patch_embed = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size)
        num_patches = grid_hw[0] * grid_hw[1]
        if posemb == "learn":
            self.pos_embed = nn.Parameter(torch.empty(1, num_patches, width))
            self._reset_position_embedding()
        elif posemb == "sincos2d":
            self.register_buffer("pos_embed", sincos2d_posemb(*grid_hw, width), persistent=False)
        else:
            raise ValueError(f"unknown posemb {posemb!r}; expected 'learn' or 'sincos2d'")
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width)) if class_token else None

    @torch.no_grad()
    def _reset_position_embedding(self) -> None:
        if isinstance(self.pos_embed, nn.Parameter):
            nn.init.normal_(self.pos_embed, std=self.width ** -0.5)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The official initialisation: LeCun-normal patch embedding (fan-in ``3 p^2``), zero
        bias, learnt position embedding ``N(0, 1 / d)``, zero class token."""
        pe = self.patch_embed
        lecun_normal_(pe.weight, fan_in=pe.weight[0].numel())
        nn.init.zeros_(pe.bias)
        self._reset_position_embedding()
        if self.cls_token is not None:
            nn.init.zeros_(self.cls_token)

    @property
    def num_prefix_tokens(self) -> int:
        return 0 if self.cls_token is None else 1

    def position_embedding(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """``[1, grid_h * grid_w, d]`` for a patch grid of that size."""
        if (grid_h, grid_w) == self.grid_hw:
            return self.pos_embed
        if self.posemb == "sincos2d":
            return sincos2d_posemb(grid_h, grid_w, self.width, device=self.pos_embed.device)
        raise ValueError(f"frames give a {grid_h}x{grid_w} patch grid but the learnt position "
                         f"embedding is {self.grid_hw[0]}x{self.grid_hw[1]} (image_size "
                         f"{self.grid_hw[0] * self.patch_size}x{self.grid_hw[1] * self.patch_size})")

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """``frames [b, 3, H, W]`` -> ``tokens [b, n, d]``."""
        x = self.patch_embed(frames)  # (b, d, H/p, W/p)
        grid_h, grid_w = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)  # (b, H/p W/p, d)
        x = x + self.position_embedding(grid_h, grid_w).to(x.dtype)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.to(x.dtype).expand(x.shape[0], -1, -1), x], dim=1)
        return x
