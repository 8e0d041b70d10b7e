"""The official initialisation, for training a model from scratch.

Each layer owns its initialisation formula, written once in its
``reset_parameters()`` (the Flax initialisers of the release: LeCun-normal,
Xavier-uniform, the RG-LRU's eigenvalue ring, ...). Layers that own parameters
directly initialise themselves when built; :func:`init_weights_official`
applies every layer's formula over a model, in module order, and every
architecture's constructor calls it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

# Flax's truncated normal rescales the std so the truncated distribution has
# the requested variance (truncation at two standard deviations).
_TRUNC_STD_CORRECTION = 0.87962566103423978


def lecun_normal_(weight: torch.Tensor, fan_in: int) -> None:
    """Truncated-normal LeCun initialisation (``std = 1/sqrt(fan_in)``), Flax style."""
    std = math.sqrt(1.0 / fan_in) / _TRUNC_STD_CORRECTION
    nn.init.trunc_normal_(weight, std=std, a=-2.0 * std, b=2.0 * std)


def _owns_formula(module: nn.Module) -> bool:
    """A trecvit layer with its own ``reset_parameters``, or a LayerNorm (ones and zeros).

    PyTorch's own ``Linear`` / ``Conv2d`` are left alone: the trecvit layer that holds
    them sets them (their PyTorch defaults are not the official formulas)."""
    if isinstance(module, nn.LayerNorm):
        return True
    return type(module).__module__.startswith("trecvit.") and callable(
        getattr(module, "reset_parameters", None))


@torch.no_grad()
def init_weights_official(model: nn.Module) -> None:
    """Initialise every parameter of ``model`` as the official release does, by calling
    each layer's ``reset_parameters()`` in ``model.modules()`` order (seeded runs are
    reproducible: the order of the random draws is fixed)."""
    for module in model.modules():
        if module is not model and _owns_formula(module):
            module.reset_parameters()
