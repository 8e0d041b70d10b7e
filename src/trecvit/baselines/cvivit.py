"""cViViT, the causal ViViT baseline (Arnab et al. 2021's model 1 with a causal mask over time).

The TRecViT paper's causal counterpart of ViViT (its section 5, the streaming comparison): ViViT
model 1 (:mod:`trecvit.baselines.vivit`: tubelets, a learnt spatio-temporal position embedding,
``depth`` pre-norm transformer blocks over all ``t' n`` tokens, a final LayerNorm) whose attention
is masked causally over time: a token of tubelet-frame ``i`` attends to the tokens of
tubelet-frames ``<= i`` (all ``n`` of its own), via
:func:`~trecvit.layers.attention.causal_mask` with ``group = n``. There is no class token (a class
token would see the whole video): the head averages the tokens of each tubelet-frame
(``pool_type="gap"``, the only value), so ``encoded [b, t', n, d]`` at tubelet-frame ``i`` depends
on frames ``<= i`` only, and the classifier averages the per-frame features.

With one-frame tubelets (``tubelet_frames = 1``, the default of :class:`CausalViViTConfig`) the
model streams frame by frame (:meth:`CausalViViT.step`) with a KEY/VALUE CACHE: per layer the keys
and values of every token seen so far (:class:`CausalViViTState`), which grows by ``n`` tokens per
frame, so memory and per-frame compute grow with the length of the stream (unlike TRecViT's
constant state). Longer tubelets work for the full forward; ``step`` refuses them.

Temporal position embedding: tubelet-frame ``i`` gets the learnt embedding of index ``i`` while
``i < frames_per_clip / tubelet_frames`` and the last learnt one for every later index, in the full
forward and in a stream alike (so a forward over ``T`` frames and ``T`` steps agree for any ``T``);
a shorter video uses the first embeddings. ``posemb_resample`` is not used.

Axis legend: ``b`` batch, ``t'`` tubelet-frames, ``n`` tokens per tubelet-frame, ``d`` width,
``h`` heads, ``e`` head width, ``s`` cached tokens, ``r`` pre-logits width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from trecvit.base import ClassifierOutput, VideoClassifier
from trecvit.baselines.vivit import (
    SpaceTimePositionEmbedding,
    ViViTConfig,
    ViViTTrunk,
    block_flops,
    embed_and_head_flops,
)
from trecvit.heads import ClassificationHead
from trecvit.init import init_weights_official
from trecvit.layers import SpatialBlock, attend, causal_mask
from trecvit.model import TRecViTStepOutput
from trecvit.validation import check_finite, check_frames, int_at_least, size_hw, without_values


@dataclass
class CausalViViTConfig(ViViTConfig):
    """:class:`~trecvit.baselines.vivit.ViViTConfig` for cViViT.

    Attributes:
        tubelet_frames: 1 by default (causal frame by frame; ``step`` needs 1).
        pool_type: must be ``"gap"`` (the default): no class token in a causal model.
        posemb_resample, temporal_depth: not used (see the module docstring for the temporal
            position embedding beyond its learnt length).
    """

    tubelet_frames: int = 1
    pool_type: str = "gap"

    def validate(self) -> None:
        if self.pool_type != "gap":
            raise ValueError(f"{type(self).__name__}.pool_type must be 'gap' (a class token would see "
                             f"every frame; the head averages each frame's tokens), got {self.pool_type!r}")
        super().validate()


class CausalViViTState(NamedTuple):
    """The streaming state of :meth:`CausalViViT.step`: a key/value cache that grows by ``n``
    tokens per frame.

    Attributes:
        keys: ``[depth, b, h, s, e]`` float32: per layer, the keys of the cached tokens.
        values: ``[depth, b, h, s, e]`` float32: their values.
        feature_sum: ``[b, r]`` float32: sum of the per-frame features (running-mean logits).
        num_frames: ``[b]`` int64: frames seen. Stream ``j``'s tokens are the last
            ``num_frames[j] * n`` of the cache (``s = max(num_frames) * n``); the older ones
            (from before a :meth:`reset`) are masked out.
    """

    keys: torch.Tensor
    values: torch.Tensor
    feature_sum: torch.Tensor
    num_frames: torch.Tensor

    @property
    def batch_size(self) -> int:
        return self.num_frames.shape[0]

    @property
    def num_cached(self) -> int:
        """Cached tokens ``s``."""
        return self.keys.shape[3]

    def reset(self, mask: torch.Tensor | None = None) -> "CausalViViTState":
        """A new state where the streams selected by ``mask [b]`` (bool; all when ``None``) start
        afresh; the others are unchanged. The cache is cut to what the remaining streams need."""
        if mask is None:
            return CausalViViTState(self.keys.new_zeros(*self.keys.shape[:3], 0, self.keys.shape[4]),
                                    self.values.new_zeros(*self.values.shape[:3], 0, self.values.shape[4]),
                                    torch.zeros_like(self.feature_sum), torch.zeros_like(self.num_frames))
        mask = torch.as_tensor(mask, dtype=torch.bool, device=self.num_frames.device)
        if mask.shape != self.num_frames.shape:
            raise ValueError(f"reset mask must have shape [{self.batch_size}] (one flag per stream), got "
                             f"{tuple(mask.shape)}")
        cache_mask = mask.view(1, -1, 1, 1, 1)
        keys = torch.where(cache_mask, 0.0, self.keys)
        values = torch.where(cache_mask, 0.0, self.values)
        num_frames = torch.where(mask, 0, self.num_frames)
        s, old = self.num_cached, int(self.num_frames.max()) if self.batch_size else 0
        if old > 0 and s % old == 0:  # s = old * n: keep the last max(num_frames) * n tokens
            keep = int(num_frames.max()) * (s // old)
            keys, values = keys[:, :, :, s - keep:], values[:, :, :, s - keep:]
        return CausalViViTState(keys, values, torch.where(mask[:, None], 0.0, self.feature_sum), num_frames)

    def to(self, device: torch.device | str) -> "CausalViViTState":
        """The same state on another device."""
        return CausalViViTState(*(t.to(device) for t in self))

    def nbytes(self) -> int:
        """Memory held by the state, in bytes (grows with the frames seen)."""
        return sum(t.numel() * t.element_size() for t in self)


class MaskedBlock(SpatialBlock):
    """:class:`~trecvit.layers.SpatialBlock` with an attention mask: ``x [b, s, d]``,
    ``mask`` bool ``[s, s]`` (``True`` = may attend)."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))


class CausalViViTEncoder(ViViTTrunk):
    """The cViViT trunk: tubelets + position embedding, ``depth`` causally masked blocks over all
    tokens, final LayerNorm.

    ``forward(video [b, t, 3, H, W])`` -> ``encoded [b, t', n, d]``; :meth:`advance` runs one
    frame of ``b`` streams on a :class:`CausalViViTState`.
    """

    def __init__(self, config: CausalViViTConfig):
        super().__init__(config)
        self.posemb = SpaceTimePositionEmbedding(config.width, config.posemb_frames, config.num_patches)
        self.blocks = nn.ModuleList(MaskedBlock(config.width, config.num_heads, config.mlp_dim)
                                    for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.width, eps=1e-6)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        self.check_video(video)
        x = self.tokens(video)  # (b, t', n, d)
        b, t, n, d = x.shape
        x = x + self.posemb.clamped(torch.arange(t, device=x.device)).to(x.dtype)  # index i: embedding i
        x = x.reshape(b, t * n, d)
        mask = causal_mask(t * n, group=n, device=x.device)  # (t' n, t' n)
        for block in self.blocks:
            x = self.run(block, x, mask)
        return self.norm(x).view(b, t, n, d)

    # -------------------------------------------------------------- streaming
    def require_one_frame_tubelets(self) -> None:
        k = self.config.tubelet_frames
        if k != 1:
            raise ValueError(f"streaming cViViT frame by frame needs tubelet_frames = 1, but this model's "
                             f"tubelets are {k} frames long (config.tubelet_frames = {k}); use the full "
                             "forward, or a model with tubelet_frames=1")

    def state_prefix(self, batch_size: int) -> tuple[int, int, int]:
        return (self.config.depth, batch_size, self.config.num_heads)

    def init_state(self, batch_size: int, image_size: int | tuple[int, int] | None = None,
                   device: torch.device | str | None = None, feature_dim: int = 0) -> CausalViViTState:
        """An empty cache for ``batch_size`` streams of ``image_size`` frames (default and only
        size: ``config.image_size``)."""
        self.require_one_frame_tubelets()
        batch_size = int_at_least(batch_size, "batch_size")
        hw = self.config.image_hw if image_size is None else size_hw(image_size, "image_size")
        self.check_grid(hw, "init_state")
        device = self.device if device is None else device
        cache = torch.zeros(*self.state_prefix(batch_size), 0, self.config.head_dim, device=device)
        return CausalViViTState(cache, cache.clone(), torch.zeros(batch_size, feature_dim, device=device),
                                torch.zeros(batch_size, dtype=torch.int64, device=device))

    def check_stream_input(self, frame: torch.Tensor, state: CausalViViTState, feature_dim: int) -> None:
        """The checks of ``step``: the frame, and the state's type, shapes, dtypes, device, values."""
        check_frames(frame, name="frame", layout="B3HW", patch_size=self.config.patch_size)
        self.check_grid(tuple(frame.shape[-2:]), "frame")
        self.check_device(frame, "frame")
        if not isinstance(state, CausalViViTState):
            raise ValueError(f"state must be a CausalViViTState (from model.init_state), got "
                             f"{type(state).__name__}")
        b, n = frame.shape[0], self.config.num_patches
        for field, value in zip(state._fields, state):
            if not isinstance(value, torch.Tensor):
                raise ValueError(f"state.{field} must be a torch.Tensor, got {type(value).__name__}")
            want = torch.int64 if field == "num_frames" else torch.float32
            if value.dtype != want:
                raise ValueError(f"state.{field} must be {want}, got {value.dtype} (make it with "
                                 "model.init_state)")
            if value.device != frame.device:
                raise ValueError(f"state.{field} is on {value.device} but the frame is on {frame.device}; "
                                 f"move the state with state.to({str(frame.device)!r})")
        keys = tuple(state.keys.shape)
        want_cache = (*self.state_prefix(b), "s", self.config.head_dim)
        cache_ok = (len(keys) == 5 and keys[:3] == self.state_prefix(b) and keys[4] == self.config.head_dim
                    and keys[3] % n == 0 and tuple(state.values.shape) == keys)
        if not (cache_ok and tuple(state.feature_sum.shape) == (b, feature_dim)
                and tuple(state.num_frames.shape) == (b,)):
            raise ValueError(
                f"state does not fit frame of shape {tuple(frame.shape)}: keys/values "
                f"{keys}/{tuple(state.values.shape)} (expected {want_cache} "
                f"with s a multiple of {n}), feature_sum {tuple(state.feature_sum.shape)} (expected "
                f"{(b, feature_dim)}), num_frames {tuple(state.num_frames.shape)} (expected {(b,)}); make it "
                f"with model.init_state(batch_size={b})")
        check_finite(frame, name="frame", dtype=self.param_dtype)
        if torch.compiler.is_compiling() or without_values(state.num_frames):
            return
        total, lo, hi = torch.stack([state.keys.sum() + state.values.sum() + state.feature_sum.sum(),
                                     state.num_frames.min().float(), state.num_frames.max().float()]).tolist()
        if not math.isfinite(total):
            raise ValueError("state holds NaN or infinite values; start afresh with model.init_state")
        if lo < 0 or hi * n > keys[3]:
            raise ValueError(f"state.num_frames {state.num_frames.tolist()} does not fit a cache of "
                             f"{keys[3]} tokens ({n} per frame); make states with model.init_state and step")

    def advance(self, frame: torch.Tensor, state: CausalViViTState) -> tuple[torch.Tensor, CausalViViTState]:
        """Checked ``frame [b, 3, H, W]`` -> ``(encoded [b, n, d], state)``: the frame's tokens
        attend to the cached ones of their stream and to each other; their keys and values join the
        cache (``feature_sum`` left for the head)."""
        x = self.tokens(frame[:, None])[:, 0]  # (b, n, d)
        n, s = x.shape[1], state.num_cached
        x = x + self.posemb.clamped(state.num_frames).to(x.dtype)  # (b, n, d): index num_frames
        mask = None
        if s:  # a stream's own tokens are the last num_frames * n of the cache
            first_valid = s - state.num_frames * n  # (b,)
            mask = torch.arange(s + n, device=x.device)[None] >= first_valid[:, None]  # (b, s + n)
            mask = mask[:, None, None]  # (b, 1, 1, s + n)
        keys, values = [], []
        for i, block in enumerate(self.blocks):
            q, k, v = block.attn.heads(block.norm1(x))  # each (b, h, n, e)
            k = torch.cat([state.keys[i].to(k.dtype), k], dim=2)  # (b, h, s + n, e)
            v = torch.cat([state.values[i].to(v.dtype), v], dim=2)
            x = x + block.attn.merge(attend(q, k, v, mask))
            x = x + block.mlp(block.norm2(x))
            keys.append(k.float())
            values.append(v.float())
        new_state = CausalViViTState(torch.stack(keys), torch.stack(values), state.feature_sum,
                                     state.num_frames + 1)
        return self.norm(x), new_state


class CausalViViT(VideoClassifier):
    """cViViT: ViViT model 1 with causal attention over time, streaming with a key/value cache.

    Args:
        config: a :class:`CausalViViTConfig` (default: B/16, one-frame tubelets, ``gap``).

    ``self.encoder`` is :class:`CausalViViTEncoder`, ``self.head`` TRecViT's classification head
    (per tubelet-frame: mean of its tokens, ``tanh`` pre-logits; averaged over the clip).

    Example::

        state = model.init_state(batch_size=B)
        for frame in video.unbind(1):           # frame [B, 3, H, W]
            out, state = model.step(frame, state)   # the cache grows by n tokens per frame
    """

    arch = "cvivit"
    config_class = CausalViViTConfig

    def __init__(self, config: CausalViViTConfig | None = None):
        super().__init__(config if config is not None else CausalViViTConfig())
        config = self.config
        self.encoder = CausalViViTEncoder(config)
        self.head = ClassificationHead(config.width, config.rep_size, config.num_classes, config.pool_type)
        init_weights_official(self)

    def forward(self, video: torch.Tensor) -> ClassifierOutput:
        """Classify ``video [b, t, 3, H, W]`` (float, RGB in [0, 1], channel-first)."""
        return super().forward(video)

    def init_state(self, batch_size: int, image_size: int | tuple[int, int] | None = None,
                   device: torch.device | str | None = None) -> CausalViViTState:
        """An empty :class:`CausalViViTState` for ``batch_size`` streams (``ValueError`` unless
        ``tubelet_frames = 1``)."""
        return self.encoder.init_state(batch_size, image_size, device, feature_dim=self.head.feature_dim)

    def step(self, frame: torch.Tensor, state: CausalViViTState
             ) -> tuple[TRecViTStepOutput, CausalViViTState]:
        """Process one frame ``[b, 3, H, W]`` of ``b`` streams.

        Returns ``(output, new_state)``: ``output.encoded [b, n, d]`` equals frame ``i`` of
        ``forward_features`` on the video so far (any length), ``output.logits`` is the head on
        the running mean of the per-frame features (after the last frame: the full forward's
        ``logits``). The cache grows by ``n`` tokens per frame; ``state.reset(mask)`` starts streams
        anew. ``ValueError`` unless ``tubelet_frames = 1``.
        """
        self.encoder.require_one_frame_tubelets()
        self.encoder.check_stream_input(frame, state, self.head.feature_dim)
        first = state.num_frames == 0  # (b,)
        encoded, new_state = self.encoder.advance(frame, state)  # (b, n, d)
        features = self.head.frame_features(encoded)  # (b, r)
        feature_sum = torch.where(first[:, None], 0.0, state.feature_sum) + features.float()
        pre_logits = feature_sum / new_state.num_frames[:, None]  # running mean (b, r)
        logits = self.head(pre_logits.to(features.dtype))
        out = TRecViTStepOutput(encoded=encoded, logits=logits, probs=logits.float().softmax(dim=-1),
                                pre_logits=pre_logits)
        return out, new_state._replace(feature_sum=feature_sum)

    @classmethod
    def analytic_flops(cls, config: CausalViViTConfig, num_frames: int, batch_size: int = 1) -> int:
        """Forward FLOPs of ``batch_size`` videos of ``num_frames`` frames, from the config alone:
        as ViViT's (the masked attention is computed densely, ``4 (t' n)^2 d`` per block), with no
        class token and the pre-logits once per tubelet-frame."""
        t = config.tubelet_count(num_frames)
        trunk = config.depth * block_flops(t * config.num_patches, config.width, config.mlp_dim)
        return batch_size * (trunk + embed_and_head_flops(config, num_frames, head_frames=t))


__all__ = ["CausalViViT", "CausalViViTConfig", "CausalViViTEncoder", "CausalViViTState", "MaskedBlock"]
