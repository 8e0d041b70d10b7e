"""Optimiser, learning-rate schedule and weight EMA."""

from __future__ import annotations

import math

import torch
from torch import nn

from trecvit.base import upgrade_state_dict

# Parameters that are matrices by shape but are not decayed (as in big_vision / timm).
NO_DECAY_NAMES = ("pos_embed", "cls_token", "mask_token")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: matrices (``dim >= 2``) decayed, everything else not.

    Biases (also the block-diagonal gates' ``[h, l/h]`` biases), norm scales, the
    RG-LRU ``a_param``, the position embedding, the class token and the masked autoencoder's
    mask token get no weight decay.
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.dim() >= 2 and not name.endswith("bias") and not any(k in name for k in NO_DECAY_NAMES):
            decay.append(param)
        else:
            no_decay.append(param)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float,
                    betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.AdamW:
    """AdamW with decay on matrices only; the fused implementation where available."""
    device = next(model.parameters()).device
    fused = device.type in ("cpu", "cuda")
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas, fused=fused)


def lr_at(step: int, *, total_steps: int, warmup_steps: int, lr: float, min_lr: float) -> float:
    """Learning rate of optimiser step ``step`` (0-based): linear warm-up from 0 over
    ``warmup_steps``, then a cosine from ``lr`` down to ``min_lr`` at ``total_steps``."""
    if warmup_steps and step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    decay_steps = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / decay_steps, 1.0)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


class ModelEma:
    """An exponential moving average of a model's floating-point state (float32 copies).

    ``update()`` after each optimiser step: ``ema = decay * ema + (1 - decay) * weights``.
    ``swap_into(model)`` is a context manager that evaluates with the averaged weights.
    """

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.names = [n for n, p in model.named_parameters()]
        self.shadow = [p.detach().float().clone() for p in model.parameters()]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        params = [p.detach().float() for p in model.parameters()]
        torch._foreach_lerp_(self.shadow, params, 1.0 - self.decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self.shadow))

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        state = upgrade_state_dict(state)  # checkpoints of 0.1.0: trunk names without "encoder."
        missing = sorted(set(self.names) - set(state))
        if missing:
            raise ValueError(f"EMA state lacks {len(missing)} parameter(s), e.g. {missing[:3]}")
        self.shadow = [state[n].float().clone().to(s.device) for n, s in zip(self.names, self.shadow)]

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        for p, s in zip(model.parameters(), self.shadow):
            p.copy_(s.to(p.dtype))

    class _Swap:
        def __init__(self, ema: "ModelEma", model: nn.Module):
            self.ema, self.model = ema, model

        def __enter__(self) -> nn.Module:
            self.backup = [p.detach().clone() for p in self.model.parameters()]
            self.ema.copy_to(self.model)
            return self.model

        def __exit__(self, *exc) -> None:
            with torch.no_grad():
                for p, b in zip(self.model.parameters(), self.backup):
                    p.copy_(b)

    def swap_into(self, model: nn.Module) -> "ModelEma._Swap":
        return ModelEma._Swap(self, model)
