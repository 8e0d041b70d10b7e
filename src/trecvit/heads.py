"""Heads that read the encoder output."""

from __future__ import annotations

import torch
from torch import nn

from trecvit.init import lecun_normal_


class ClassificationHead(nn.Module):
    """The official classification decoder.

    Per frame: the class token (``tok``) or the mean over tokens (``gap``), then
    ``tanh(pre_logits(.))``; mean over the frames of a clip (``readout="mean"``, or
    the last frame's with ``"last"``); ``classifier``.

    Args:
        width: token width ``d``.
        rep_size: width ``r`` of the ``tanh`` pre-logits layer; 0 for none.
        num_classes: output classes.
        pool_type: ``"tok"`` or ``"gap"``.
        readout: ``"mean"`` (official) or ``"last"``: how :meth:`clip_features` reads a clip.
    """

    def __init__(self, width: int, rep_size: int, num_classes: int, pool_type: str = "tok",
                 readout: str = "mean"):
        super().__init__()
        if pool_type not in ("tok", "gap"):
            raise ValueError(f"unknown pool_type {pool_type!r}; expected 'tok' or 'gap'")
        if readout not in ("mean", "last"):
            raise ValueError(f"unknown readout {readout!r}; expected 'mean' or 'last'")
        self.pool_type = pool_type
        self.readout = readout
        self.pre_logits = nn.Linear(width, rep_size) if rep_size else None
        self.feature_dim = rep_size or width
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The official initialisation: LeCun-normal kernels, zero biases."""
        for lin in (self.pre_logits, self.classifier):
            if lin is not None:
                lecun_normal_(lin.weight, fan_in=lin.in_features)
                nn.init.zeros_(lin.bias)

    def frame_features(self, encoded: torch.Tensor) -> torch.Tensor:
        """``encoded [..., n, d]`` -> per-frame features ``[..., r]``."""
        x = encoded[..., 0, :] if self.pool_type == "tok" else encoded.mean(dim=-2)
        if self.pre_logits is not None:
            x = torch.tanh(self.pre_logits(x))
        return x

    def clip_features(self, frame_features: torch.Tensor) -> torch.Tensor:
        """Per-frame features ``[b, t, r]`` -> clip features ``[b, r]``: their mean, or the last
        frame's with ``readout="last"``."""
        return frame_features[:, -1] if self.readout == "last" else frame_features.mean(dim=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Clip features ``[..., r]`` (:meth:`clip_features`) -> logits ``[..., classes]``."""
        return self.classifier(features)
