"""ViT-LSTM, a hybrid baseline of the TRecViT paper's Table 2: TRecViT with an LSTM as temporal block.

"Same factorisation, different temporal blocks": every layer runs an LSTM over
the frames at each token position (weights shared over positions), then
TRecViT's ViT block over the tokens of each frame. The temporal block is
``x + out(LSTM(RMSNorm(x)))``: an LSTM of hidden width ``lstm_width`` followed
by a linear projection back to ``width`` (:mod:`trecvit.baselines.hybrid` holds
the rest, which is TRecViT's).

The LSTM is written with explicit linear maps (the input projection of all
frames at once, then per frame the recurrent projection and the gates), not
``nn.LSTM``, so that :func:`~trecvit.tools.profiling.count_flops` sees its
matrix products and the streaming :meth:`ViTLSTM.step` runs the very same code.
The cell runs in float32 whatever the model's dtype. The model is causal and
streams with a state of constant size: ``(h, c)`` per layer.

Axis legend: ``b`` batch, ``t`` frames, ``n`` tokens per frame, ``d`` width,
``k`` LSTM hidden width, ``r`` pre-logits width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from trecvit.baselines.hybrid import HybridConfig, HybridState, HybridViT, init_linear_


@dataclass
class ViTLSTMConfig(HybridConfig):
    """Hyper-parameters of ViT-LSTM: :class:`~trecvit.config.TRecViTConfig`'s fields (the
    RG-LRU ones, ``conv1d_width``, ``lru_width``, ``min_rad``, ``max_rad``, are not used) and:

    Attributes:
        lstm_width: hidden width ``k`` of the LSTM; ``None`` (default) means ``width``.
        temporal_skip: the skip connection around the temporal block (default ``True``).
    """

    lstm_width: int | None = None

    def __post_init__(self) -> None:
        if self.lstm_width is None:
            self.lstm_width = self.width
        super().__post_init__()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent field."""
        super().validate()
        self.check_positive("lstm_width")


class _LSTMFields(NamedTuple):
    h: torch.Tensor
    c: torch.Tensor
    feature_sum: torch.Tensor
    num_frames: torch.Tensor


class LSTMState(HybridState, _LSTMFields):
    """The streaming state of :class:`ViTLSTM`, of constant size.

    Attributes:
        h: ``[depth, b, n, k]`` float32, per layer the LSTM's hidden state.
        c: ``[depth, b, n, k]`` float32, per layer the LSTM's cell state.
        feature_sum: ``[b, r]`` float32, the sum of the per-frame head features.
        num_frames: ``[b]`` int64, frames seen (0: the next frame starts a new stream).
    """

    __slots__ = ()


class LSTMTemporal(nn.Module):
    """An LSTM over dim 1 of ``u [b, t, n, d]`` (per token position), then ``out: k -> d``.

    Gates in PyTorch's order ``i, f, g, o``: ``z_t = input_proj(u_t) + recurrent_proj(h_{t-1})``,
    ``c_t = sigmoid(f) c_{t-1} + sigmoid(i) tanh(g)``, ``h_t = sigmoid(o) tanh(c_t)``, from
    ``h = c = 0``.

    Args:
        width: token width ``d``.
        hidden: LSTM hidden width ``k``.
        final_variance_scale: of ``out`` at initialisation (``2 / depth``, as TRecViT's
            temporal block).
    """

    def __init__(self, width: int, hidden: int, final_variance_scale: float = 1.0):
        super().__init__()
        self.hidden = hidden
        self.final_variance_scale = final_variance_scale
        self.input_proj = nn.Linear(width, 4 * hidden)  # (4k, d): the gate biases are here
        self.recurrent_proj = nn.Linear(hidden, 4 * hidden, bias=False)
        self.out = nn.Linear(hidden, width)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The standard LSTM initialisation, ``U(-1/sqrt(k), 1/sqrt(k))`` kernels, zero biases but
        the forget gate's (1); ``out`` as TRecViT's ``linear_out``."""
        bound = 1.0 / math.sqrt(self.hidden)
        nn.init.uniform_(self.input_proj.weight, -bound, bound)
        nn.init.uniform_(self.recurrent_proj.weight, -bound, bound)
        nn.init.zeros_(self.input_proj.bias)
        self.input_proj.bias[self.hidden:2 * self.hidden] = 1.0
        init_linear_(self.out, self.final_variance_scale)

    def state_shapes(self, batch_size: int, num_tokens: int) -> dict[str, tuple[int, ...]]:
        return {"h": (batch_size, num_tokens, self.hidden), "c": (batch_size, num_tokens, self.hidden)}

    def forward(self, u: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None,
                seen: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple | None]:
        """``u [b, t, n, d]`` -> ``(y [b, t, n, d], (h, c) [b, n, k] float32 or None)``; ``state``
        is the ``(h, c)`` before ``u[:, 0]``, ``seen [b]`` zero where a stream starts here."""
        b, t, n, _ = u.shape
        z = self.input_proj(u)  # (b, t, n, 4k): all frames at once
        if state is None:
            h = c = torch.zeros(b, n, self.hidden, device=u.device)
        else:
            fresh = (seen == 0).view(b, 1, 1)
            h, c = (torch.where(fresh, 0.0, s.float()) for s in state)
        hs = []
        for i in range(t):
            gates = (z[:, i] + self.recurrent_proj(h.to(u.dtype))).float()  # (b, n, 4k)
            gi, gf, gg, go = gates.chunk(4, dim=-1)
            c = torch.sigmoid(gf) * c + torch.sigmoid(gi) * torch.tanh(gg)
            h = torch.sigmoid(go) * torch.tanh(c)
            hs.append(h)
        y = self.out(torch.stack(hs, dim=1).to(u.dtype))  # (b, t, n, d)
        return y, (None if state is None else (h, c))


class ViTLSTM(HybridViT):
    """ViT-LSTM (TRecViT paper, Table 2): TRecViT with an LSTM over time as temporal block.

    Args:
        config: a :class:`ViTLSTMConfig` (default: its defaults, a B-sized model).

    ``self.encoder`` is the hybrid trunk (:class:`~trecvit.baselines.hybrid.HybridEncoder`),
    ``self.head`` TRecViT's head. Streams frame by frame (:meth:`step`) on an
    :class:`LSTMState` of constant size.
    """

    arch = "vit_lstm"
    config_class = ViTLSTMConfig
    state_class = LSTMState

    @classmethod
    def temporal_module(cls, config: ViTLSTMConfig) -> nn.Module:
        return LSTMTemporal(config.width, config.lstm_width, final_variance_scale=2.0 / config.depth)

    @classmethod
    def temporal_flops(cls, config: ViTLSTMConfig, num_tokens: int, clip_frames: int) -> int:
        """Per token and frame: the input projection ``8 d k``, the recurrent one ``8 k^2`` (at
        every frame, the first included) and ``out`` ``2 k d``."""
        d, k = config.width, config.lstm_width
        return num_tokens * clip_frames * (8 * d * k + 8 * k * k + 2 * k * d)
