"""What the hybrid baselines of the TRecViT paper's Table 2 share: TRecViT with another temporal block.

Table 2 of the paper ("same factorisation, different temporal blocks") keeps
TRecViT's factorisation (a temporal block over the frames at every token
position, then a ViT block over the tokens of each frame, in every layer) and
swaps the RG-LRU temporal block for another temporal module. This file is the
part the swaps share; each model file (:mod:`~trecvit.baselines.vit_lstm`,
:mod:`~trecvit.baselines.vit_conv1d`, :mod:`~trecvit.baselines.vit_tsa`) only
names its temporal module, its streaming state and its FLOP formula.

Everything else is TRecViT's: the tokenizer per frame (:class:`~trecvit.encoder.FrameTrunk`),
per layer ``x = x + module(RMSNorm(x))`` over time (``x = module(RMSNorm(x))``
with ``temporal_skip=False``) then :class:`~trecvit.layers.SpatialBlock` over
the tokens of each frame, the final LayerNorm, the classification head, and the
clips: a ``t``-frame video is cut into ``max(t // frames_per_clip, 1)`` equal
clips, the temporal state restarting in each. The state-dict names are
TRecViT's (``encoder.tokenizer``, ``encoder.blocks.{i}.temporal``,
``encoder.blocks.{i}.spatial``, ``encoder.norm``, ``head``), so an image ViT
initialises the spatial part as it does TRecViT's.

A temporal module (built by the model class's ``temporal_module(config)``) is an
``nn.Module`` with

* ``forward(u [b, t, n, d], state=None, seen=None) -> (y [b, t, n, d], new_state)``:
  ``state`` is its tuple of per-layer state tensors (``None``: fresh sequences, and
  then ``new_state`` is ``None`` too), ``seen [b]`` int64 the frames each stream saw
  before ``u[:, 0]`` (0: the stream starts here, whatever ``state`` holds);
* ``state_shapes(batch_size, num_tokens) -> dict[field, shape]``, the per-layer shapes
  of its state tensors in the order of the state's fields, ``-1`` for a dimension that
  grows while streaming (0 in a fresh state).

Axis legend: ``b`` batch, ``t`` frames, ``c`` clips, ``n`` tokens per frame,
``d`` width, ``r`` pre-logits width.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from trecvit.base import ClassifierOutput, VideoClassifier
from trecvit.config import TRecViTConfig
from trecvit.encoder import FrameTrunk, TRecViTEncoder
from trecvit.heads import ClassificationHead
from trecvit.init import init_weights_official
from trecvit.layers import RMSNorm, SpatialBlock
from trecvit.model import TRecViTStepOutput, running_head
from trecvit.validation import (check_finite, check_frames, int_at_least, size_hw,
                                without_values)

# The fields every hybrid state ends with (batch axis 0); the temporal module's come first
# (stacked over layers: batch axis 1).
HEAD_FIELDS = ("feature_sum", "num_frames")


@dataclass
class HybridConfig(TRecViTConfig):
    """:class:`~trecvit.config.TRecViTConfig`, as the hybrids read it.

    Of TRecViT's ablation switches, ``temporal_skip`` (``True``: each temporal block is
    residual, ``x + module(RMSNorm(x))`` as in TRecViT; ``False``: ``module(RMSNorm(x))``),
    ``block_order`` and ``readout`` apply to the hybrids; ``lru_gates`` and ``temporal_conv``
    (parts of TRecViT's RG-LRU block, which a hybrid replaces) must stay at their defaults.
    """

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent field."""
        super().validate()
        self.refuse_ablations("lru_gates", "temporal_conv",
                              why="they ablate TRecViT's RG-LRU block, which this hybrid replaces")

    def check_positive(self, name: str) -> None:
        """``ValueError`` naming field ``name`` unless it is a positive int."""
        value = getattr(self, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{type(self).__name__}.{name} must be a positive int, got {value!r}")


def init_linear_(linear: nn.Linear, variance_scale: float = 1.0) -> None:
    """TemporalBlock's rule for the linear maps of a temporal module: ``N(0, scale / fan_in)``
    weights, zero bias (``scale = 2 / depth`` for the output projection)."""
    nn.init.normal_(linear.weight, std=math.sqrt(variance_scale / linear.in_features))
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)


# --------------------------------------------------------------------------- streaming state

class HybridState:
    """Methods of the hybrids' streaming states (NamedTuples of tensors; mix in before the
    NamedTuple). The temporal module's fields come first, stacked over layers
    (``[depth, b, ...]``, float32), then ``feature_sum [b, r]`` float32 (the running sum of
    the per-frame head features) and ``num_frames [b]`` int64 (frames seen; where 0, the next
    frame starts a new stream whatever the other tensors hold)."""

    __slots__ = ()

    @property
    def batch_size(self) -> int:
        return self.num_frames.shape[0]

    def batch_axis(self, field: str) -> int:
        return 0 if field in HEAD_FIELDS else 1

    def reset(self, mask: torch.Tensor | None = None):
        """A new state where the streams selected by ``mask [b]`` (bool; all when ``None``)
        start afresh; the others are unchanged."""
        if mask is None:
            return type(self)(*(torch.zeros_like(t) for t in self))
        mask = torch.as_tensor(mask, dtype=torch.bool, device=self.num_frames.device)
        if mask.shape != self.num_frames.shape:
            raise ValueError(f"reset mask must have shape [{self.batch_size}] (one flag per "
                             f"stream), got {tuple(mask.shape)}")

        def where(field: str, t: torch.Tensor) -> torch.Tensor:
            shape = [1] * t.dim()
            shape[self.batch_axis(field)] = -1
            return torch.where(mask.view(shape), torch.zeros((), dtype=t.dtype, device=t.device), t)

        return type(self)(*(where(f, t) for f, t in zip(self._fields, self)))

    def to(self, device: torch.device | str):
        """The same state on another device (dtypes are kept)."""
        return type(self)(*(t.to(device) for t in self))

    def nbytes(self) -> int:
        """Memory held by the state, in bytes."""
        return sum(t.numel() * t.element_size() for t in self)


def check_state(state: Any, state_class: type, expected: dict[str, tuple[int, ...]], *,
                frames_shape: tuple[int, ...], device: torch.device) -> None:
    """``ValueError`` unless ``state`` is a ``state_class`` whose fields have the ``expected``
    shapes (``-1``: any size, the same in every field), dtypes (float32, ``num_frames``
    int64) and device, and hold finite values and frame counts ``>= 0``."""
    if not isinstance(state, state_class):
        raise ValueError(f"state must be a {state_class.__name__} (from model.init_state), got "
                         f"{type(state).__name__}")
    for field, value in zip(state._fields, state):
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"state.{field} must be a torch.Tensor, got {type(value).__name__}")
    batch, hw = frames_shape[0], tuple(frames_shape[-2:])
    wrong, free = [], {}
    for field, shape in expected.items():
        found = tuple(getattr(state, field).shape)
        fits = len(found) == len(shape) and all(e in (-1, f) for e, f in zip(shape, found))
        if not fits:
            wrong.append(f"state.{field} is {found}, expected {shape}")
        for e, f in zip(shape, found):
            if e == -1 and fits:
                free[field] = f
    if len(set(free.values())) > 1:
        wrong.append("the growing dimension differs between " + ", ".join(
            f"state.{f} ({s})" for f, s in free.items()))
    if wrong:
        raise ValueError(f"state does not fit frames of shape {(batch, 3, *hw)}: " + "; ".join(wrong)
                         + f" (make it with model.init_state(batch_size={batch}, image_size={hw}))")
    for field, value in zip(state._fields, state):
        want = torch.int64 if field == "num_frames" else torch.float32
        if value.dtype != want:
            raise ValueError(f"state.{field} must be {want}, got {value.dtype} (make it with "
                             "model.init_state)")
        if value.device != device:
            raise ValueError(f"state.{field} is on {value.device} but the frames are on {device}; "
                             f"move the state with state.to({str(device)!r})")
    if torch.compiler.is_compiling() or without_values(state.num_frames):
        return
    for field, value in zip(state._fields[:-1], state[:-1]):
        if value.numel() and not bool(torch.isfinite(value.sum())):
            raise ValueError(f"state.{field} holds NaN or infinite values (states made by "
                             "model.init_state and model.step stay finite); start afresh with "
                             "model.init_state, or state.reset(mask) for some streams")
    if state.num_frames.numel() and int(state.num_frames.min()) < 0:
        raise ValueError(f"state.num_frames holds negative frame counts {state.num_frames.tolist()}")


# --------------------------------------------------------------------------- trunk

class HybridTemporalBlock(nn.Module):
    """``x + mixer(RMSNorm(x))`` (``mixer(RMSNorm(x))`` without the skip), over dim 1 of
    ``x [b, t, n, d]``; ``mixer`` is the temporal module."""

    def __init__(self, width: int, mixer: nn.Module, skip: bool = True):
        super().__init__()
        self.skip = skip
        self.norm = RMSNorm(width)
        self.mixer = mixer

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, ...] | None = None,
                seen: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple | None]:
        y, state = self.mixer(self.norm(x), state, seen)  # (b, t, n, d)
        return (x + y if self.skip else y), state


class HybridLayer(nn.Module):
    """One layer: the temporal block over ``t`` (at every token position), then TRecViT's
    spatial block over ``n`` (within every frame)."""

    def __init__(self, config: HybridConfig, temporal_module: Callable[[HybridConfig], nn.Module]):
        super().__init__()
        self.space_first = config.block_order == "space_time"
        self.temporal = HybridTemporalBlock(config.width, temporal_module(config), config.temporal_skip)
        self.spatial = SpatialBlock(config.width, config.num_heads, config.mlp_dim)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, ...] | None = None,
                seen: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple | None]:
        """``x [b, t, n, d]`` -> ``(x, new_state)``; ``state`` and ``seen`` as in the module
        docstring (the spatial block first with ``block_order="space_time"``)."""
        if self.space_first:
            x = self.spatial(x)
        x, state = self.temporal(x, state, seen)
        return (x if self.space_first else self.spatial(x)), state


class HybridEncoder(FrameTrunk):
    """The hybrid trunk: tokenizer, ``depth`` :class:`HybridLayer` s, final LayerNorm.

    Args:
        config: a :class:`HybridConfig` (subclass).
        temporal_module: ``config -> nn.Module``, the temporal module of one layer.
        state_class: the NamedTuple (with :class:`HybridState`) of the streaming state.

    ``forward(video [b, t, 3, H, W])`` -> ``encoded [b * c, t / c, n, d]``; :meth:`advance`
    runs the next frames of streams on a state.
    """

    # TRecViT's clip rule and tokenizer output per clip: the very functions of its trunk.
    num_clips = TRecViTEncoder.num_clips
    check_clips = TRecViTEncoder.check_clips
    embed = TRecViTEncoder.embed

    def __init__(self, config: HybridConfig, temporal_module: Callable[[HybridConfig], nn.Module],
                 state_class: type):
        super().__init__(config)
        self.state_class = state_class
        self.blocks = nn.ModuleList(HybridLayer(config, temporal_module) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.width, eps=1e-6)

    def run(self, x: torch.Tensor, states: list[tuple] | None = None, seen: torch.Tensor | None = None
            ) -> tuple[torch.Tensor, list[tuple] | None]:
        """Tokens ``x [b, t, n, d]`` -> ``(encoded [b, t, n, d], per-layer states)``: fresh
        sequences when ``states`` is ``None`` (then no states are returned)."""
        checkpoint = self.grad_checkpointing and torch.is_grad_enabled() and states is None
        new_states = []
        for i, layer in enumerate(self.blocks):
            if checkpoint:
                x, state = torch.utils.checkpoint.checkpoint(layer, x, use_reentrant=False)
            else:
                x, state = layer(x, None if states is None else states[i], seen)
            new_states.append(state)
        return self.norm(x), (None if states is None else new_states)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """``video [b, t, 3, H, W]`` -> ``encoded [b * c, t / c, n, d]``, ``c = max(t //
        frames_per_clip, 1)`` clips, the temporal modules restarting in each."""
        return self.run(self.embed(video))[0]

    # -------------------------------------------------------------- streaming
    def state_shapes(self, batch_size: int, image_hw: tuple[int, int], feature_dim: int
                     ) -> dict[str, tuple[int, ...]]:
        """The shape of every field of the state (``-1``: a dimension that grows)."""
        p = self.config.patch_size
        n = (image_hw[0] // p) * (image_hw[1] // p) + (1 if self.config.pool_type == "tok" else 0)
        layer = self.blocks[0].temporal.mixer.state_shapes(batch_size, n)
        shapes = {f: (self.config.depth, *s) for f, s in layer.items()}
        return {**shapes, "feature_sum": (batch_size, feature_dim), "num_frames": (batch_size,)}

    def init_state(self, batch_size: int, image_size: int | tuple[int, int] | None = None,
                   device: torch.device | str | None = None, feature_dim: int = 0):
        """A fresh state (all zeros, growing dimensions empty) for ``batch_size`` streams of
        ``image_size`` frames (default: ``config.image_size``)."""
        batch_size = int_at_least(batch_size, "batch_size")
        p = self.config.patch_size
        h, w = self.config.image_hw if image_size is None else size_hw(image_size, "image_size")
        if h < p or w < p or h % p or w % p:
            raise ValueError(f"image_size {h}x{w} must be positive multiples of the patch size {p}")
        self.check_grid((h, w), "init_state")
        device = self.device if device is None else device
        shapes = self.state_shapes(batch_size, (h, w), feature_dim)
        return self.state_class(*(torch.zeros(tuple(max(s, 0) for s in shapes[f]), device=device,
                                              dtype=torch.int64 if f == "num_frames" else torch.float32)
                                  for f in self.state_class._fields))

    def check_stream_input(self, x: torch.Tensor, state: Any, name: str, layout: str,
                           feature_dim: int) -> None:
        """The checks of ``step`` (``layout`` "B3HW") and ``step_chunk`` ("BT3HW")."""
        check_frames(x, name=name, layout=layout, patch_size=self.config.patch_size)
        self.check_grid(x.shape[-2:], name)
        self.check_device(x, name)
        check_state(state, self.state_class, self.state_shapes(x.shape[0], tuple(x.shape[-2:]), feature_dim),
                    frames_shape=tuple(x.shape), device=x.device)
        check_finite(x, name=name, dtype=self.param_dtype)

    def advance(self, frames: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """Checked ``frames [b, t, 3, H, W]`` -> ``(encoded [b, t, n, d], state)`` with the
        temporal states and frame counts advanced (``feature_sum`` left for the head)."""
        fields = state._fields[:-len(HEAD_FIELDS)]
        states = [tuple(getattr(state, f)[i] for f in fields) for i in range(self.config.depth)]
        encoded, new_states = self.run(self.tokens(frames), states, state.num_frames)
        stacked = {f: torch.stack([s[j] for s in new_states]) for j, f in enumerate(fields)}
        return encoded, state._replace(**stacked, num_frames=state.num_frames + frames.shape[1])


# --------------------------------------------------------------------------- classifier

class HybridViT(VideoClassifier):
    """Base class of the hybrids: TRecViT with ``temporal_module(config)`` as temporal block.

    Subclasses set ``arch``, ``config_class`` (a :class:`HybridConfig`), ``state_class`` and
    implement :meth:`temporal_module` and :meth:`temporal_flops`.

    Args:
        config: the subclass's config (default: its defaults, a B-sized model).
    """

    state_class: ClassVar[type]

    def __init__(self, config: HybridConfig | None = None):
        super().__init__(config if config is not None else self.config_class())
        config = self.config
        self.encoder = HybridEncoder(config, self.temporal_module, self.state_class)
        self.head = ClassificationHead(config.width, config.rep_size, config.num_classes,
                                       config.pool_type, config.readout)
        init_weights_official(self)

    @classmethod
    def temporal_module(cls, config: HybridConfig) -> nn.Module:
        """The temporal module of one layer (see the module docstring)."""
        raise NotImplementedError

    @classmethod
    def temporal_flops(cls, config: HybridConfig, num_tokens: int, clip_frames: int) -> int:
        """FLOPs (as :func:`~trecvit.tools.profiling.count_flops` counts them) of one layer's
        temporal module on one clip of ``clip_frames`` frames of ``num_tokens`` tokens."""
        raise NotImplementedError

    @classmethod
    def analytic_flops(cls, config: HybridConfig, num_frames: int, batch_size: int = 1) -> int:
        """Forward FLOPs of ``batch_size`` videos of ``num_frames`` frames, from the config alone.

        What :func:`trecvit.tools.profiling.count_flops` counts (1 multiply-add = 2 FLOPs): per
        frame the patch embedding ``2 n_p d 3 p^2``, per layer the spatial block (``qkv`` and
        ``proj`` ``8 n d^2``, the two attention products ``4 n^2 d``, the MLP ``4 n d m``), the
        pre-logits ``2 d r``; per clip and layer :meth:`temporal_flops`; per clip the classifier
        ``2 r classes``. Norms and activations are elementwise, not counted.
        """
        grid = config.grid_hw[0] * config.grid_hw[1]
        n = grid + (1 if config.pool_type == "tok" else 0)
        d, m = config.width, config.mlp_dim
        r = config.rep_size or d
        spatial = 8 * n * d * d + 4 * n * n * d + 4 * n * d * m
        per_frame = 2 * grid * d * 3 * config.patch_size ** 2 + config.depth * spatial
        per_frame += 2 * d * r if config.rep_size else 0
        clips = max(num_frames // config.frames_per_clip, 1)
        temporal = config.depth * clips * cls.temporal_flops(config, n, num_frames // clips)
        return batch_size * (num_frames * per_frame + temporal + clips * 2 * r * config.num_classes)

    def num_clips(self, num_frames: int) -> int:
        """``max(num_frames // frames_per_clip, 1)``, as TRecViT."""
        return self.encoder.num_clips(num_frames)

    def forward(self, video: torch.Tensor) -> ClassifierOutput:
        """Classify ``video [b, t, 3, H, W]`` (float, RGB in [0, 1], channel-first)."""
        return super().forward(video)

    # -------------------------------------------------------------- streaming
    def init_state(self, batch_size: int, image_size: int | tuple[int, int] | None = None,
                   device: torch.device | str | None = None):
        """An empty streaming state (a ``state_class``) for ``batch_size`` streams of frames of
        ``image_size`` (default: ``config.image_size``)."""
        return self.encoder.init_state(batch_size, image_size, device, feature_dim=self.head.feature_dim)

    def step(self, frame: torch.Tensor, state: Any) -> tuple[TRecViTStepOutput, Any]:
        """Process one frame ``[b, 3, H, W]`` of ``b`` streams.

        Returns ``(output, new_state)``: ``output.encoded [b, n, d]`` equals frame ``t`` of
        ``forward_features`` of a one-clip video, ``output.logits`` is the head on the running
        mean of the per-frame features (after the last frame of a one-clip video: its
        ``logits``). A stream never restarts by itself (not at ``frames_per_clip`` either);
        ``state.reset(mask)`` starts streams anew.
        """
        self.encoder.check_stream_input(frame, state, "frame", "B3HW", self.head.feature_dim)
        out, new_state = self._advance(frame[:, None], state)
        return TRecViTStepOutput(encoded=out.encoded[:, 0], logits=out.logits[:, 0],
                                 probs=out.probs[:, 0], pre_logits=out.pre_logits[:, 0]), new_state

    def step_chunk(self, frames: torch.Tensor, state: Any) -> tuple[TRecViTStepOutput, Any]:
        """The next ``t`` frames ``[b, t, 3, H, W]`` in one call, equal to ``t`` calls of
        :meth:`step`; the output fields get a frame axis after ``b``."""
        self.encoder.check_stream_input(frames, state, "frames", "BT3HW", self.head.feature_dim)
        return self._advance(frames, state)

    def _advance(self, frames: torch.Tensor, state: Any) -> tuple[TRecViTStepOutput, Any]:
        """The trunk on checked ``frames [b, t, 3, H, W]``, then the running mean of the head's
        per-frame features (:func:`trecvit.model.running_head`, as :class:`trecvit.TRecViT`)."""
        encoded, trunk_state = self.encoder.advance(frames, state)  # (b, t, n, d)
        return running_head(self.head, encoded, state, trunk_state)
