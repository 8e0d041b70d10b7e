"""ViT-TSA, a hybrid baseline of the TRecViT paper's Table 2: causal temporal self-attention in place
of TRecViT's recurrence.

"Same factorisation, different temporal blocks": every layer runs causal
multi-head self-attention over the frames at each token position (weights
shared over positions; frame ``t`` attends to frames ``<= t`` of its clip), then
TRecViT's ViT block over the tokens of each frame. The temporal block is
``x + Attention(RMSNorm(x))`` with :class:`~trecvit.layers.Attention` (``num_heads``
heads) under :func:`~trecvit.layers.attention.causal_mask`, through
:func:`~trecvit.layers.attention.attend` (so ``use_attention`` switches it too);
:mod:`trecvit.baselines.hybrid` holds the rest, which is TRecViT's.

No temporal position embedding is added: the causal mask already orders time,
and a learnt embedding of ``frames_per_clip`` entries would make a stream longer
than a clip differ from the full forward, which this model keeps equal for any
length. The model is causal and streams (:meth:`ViTTemporalAttention.step`) with
a key/value cache per layer that grows by one frame per step (unlike the
constant-size states of TRecViT, ViT-LSTM and ViT-Conv1D), and its cost per
frame grows with the frames seen.

Axis legend: ``b`` batch, ``t`` frames, ``s`` cached frames, ``n`` tokens per
frame, ``d`` width, ``h`` heads, ``e = d / h``, ``r`` pre-logits width.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from trecvit.baselines.hybrid import HybridConfig, HybridState, HybridViT
from trecvit.layers import Attention
from trecvit.layers.attention import attend, causal_mask


@dataclass
class ViTTSAConfig(HybridConfig):
    """Hyper-parameters of ViT-TSA: :class:`~trecvit.config.TRecViTConfig`'s fields, of which
    ``num_heads`` is also the number of heads of the temporal attention; the RG-LRU ones
    (``conv1d_width``, ``lru_width``, ``min_rad``, ``max_rad``) are not used.

    Attributes:
        temporal_skip: the skip connection around the temporal block (default ``True``).
    """


class _TSAFields(NamedTuple):
    keys: torch.Tensor
    values: torch.Tensor
    feature_sum: torch.Tensor
    num_frames: torch.Tensor


class TSAState(HybridState, _TSAFields):
    """The streaming state of :class:`ViTTemporalAttention`: a key/value cache growing by one
    frame per step.

    Attributes:
        keys: ``[depth, b, n, h, s, e]`` float32, per layer the keys of the last ``s`` frames
            (oldest first); a stream uses its last ``num_frames`` of them.
        values: ``[depth, b, n, h, s, e]`` float32, the values, as ``keys``.
        feature_sum: ``[b, r]`` float32, the sum of the per-frame head features.
        num_frames: ``[b]`` int64, frames seen (0: the next frame starts a new stream).

    ``reset()`` of every stream empties the cache (``s = 0``); ``reset(mask)`` zeroes the
    selected streams' entries, which they then ignore.
    """

    __slots__ = ()

    def reset(self, mask: torch.Tensor | None = None) -> "TSAState":
        if mask is None:
            return TSAState(*(torch.zeros_like(t[..., :0, :]) for t in (self.keys, self.values)),
                            torch.zeros_like(self.feature_sum), torch.zeros_like(self.num_frames))
        return super().reset(mask)


class TemporalAttention(nn.Module):
    """Causal multi-head self-attention over dim 1 of ``u [b, t, n, d]``, per token position.

    Args:
        width: token width ``d``.
        num_heads: heads ``h``.
    """

    def __init__(self, width: int, num_heads: int):
        super().__init__()
        self.attn = Attention(width, num_heads)  # initialises itself (Xavier-uniform)
        self.num_heads = num_heads
        self.head_dim = width // num_heads

    def state_shapes(self, batch_size: int, num_tokens: int) -> dict[str, tuple[int, ...]]:
        shape = (batch_size, num_tokens, self.num_heads, -1, self.head_dim)
        return {"keys": shape, "values": shape}

    def forward(self, u: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None,
                seen: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple | None]:
        """``u [b, t, n, d]`` -> ``(y [b, t, n, d], (keys, values) [b, n, h, s + t, e] float32
        or None)``; ``state`` is the cache before ``u[:, 0]``, ``seen [b]`` the frames each
        stream saw before (its last ``seen`` cache entries are its own)."""
        b, t, n, d = u.shape
        q, k, v = self.attn.heads(u.transpose(1, 2).reshape(b * n, t, d))  # each (b n, h, t, e)
        if state is None:
            y, new_state = attend(q, k, v, causal_mask(t, device=u.device)), None
        else:
            keys, values = state  # (b, n, h, s, e)
            s = keys.shape[3]
            if not torch.compiler.is_compiling() and b:  # drop entries no stream uses any more
                keep = int(seen.max())
                if keep > s:
                    raise ValueError(f"state.keys holds {s} frames but state.num_frames says a stream "
                                     f"has seen {keep}; make the state with model.init_state")
                keys, values, s = keys[..., s - keep:, :], values[..., s - keep:, :], keep
            keys = torch.cat([keys.flatten(0, 1).to(k.dtype), k], dim=2)  # (b n, h, s + t, e)
            values = torch.cat([values.flatten(0, 1).to(v.dtype), v], dim=2)
            # A query at frame i sees the cache entries of its own stream and the chunk up to i.
            own = torch.arange(s + t, device=u.device) >= (s - seen)[:, None]  # (b, s + t)
            mask = causal_mask(t, s + t, device=u.device) & own[:, None]  # (b, t, s + t)
            mask = mask[:, None, None].expand(b, n, 1, t, s + t).reshape(b * n, 1, t, s + t)
            y = attend(q, keys, values, mask)
            new_state = tuple(c.float().unflatten(0, (b, n)) for c in (keys, values))
        y = self.attn.merge(y)  # (b n, t, d)
        return y.view(b, n, t, d).transpose(1, 2), new_state


class ViTTemporalAttention(HybridViT):
    """ViT-TSA (TRecViT paper, Table 2): TRecViT with causal temporal self-attention as
    temporal block.

    Args:
        config: a :class:`ViTTSAConfig` (default: its defaults, a B-sized model).

    ``self.encoder`` is the hybrid trunk (:class:`~trecvit.baselines.hybrid.HybridEncoder`),
    ``self.head`` TRecViT's head. Streams frame by frame (:meth:`step`) on a
    :class:`TSAState` whose key/value cache grows by one frame per step.
    """

    arch = "vit_tsa"
    config_class = ViTTSAConfig
    state_class = TSAState

    @classmethod
    def temporal_module(cls, config: ViTTSAConfig) -> nn.Module:
        return TemporalAttention(config.width, config.num_heads)

    @classmethod
    def temporal_flops(cls, config: ViTTSAConfig, num_tokens: int, clip_frames: int) -> int:
        """Per token and frame ``qkv`` and ``proj``, ``8 d^2``; per token position the two
        attention products over the clip, ``4 t^2 d`` (the causal mask does not lower the
        count of dense attention)."""
        d, t = config.width, clip_frames
        return num_tokens * (t * 8 * d * d + 4 * t * t * d)
