"""The TRecViT trunk: tokenizer, encoder layers, final norm; full clips and frame by frame.

Each encoder layer is a temporal block (gated linear recurrence over the
frames, per token position) followed by a spatial block (ViT self-attention
over the tokens of each frame). The trunk is causal: its output at frame ``t``
depends on frames ``<= t`` only, so it runs on a live stream, frame by frame,
with a state of constant size (:meth:`TRecViTEncoder.step`).

Every task model wraps this one module under the name ``encoder`` (the
classifier :class:`trecvit.TRecViT`, and the masked autoencoder and the
tracking readout), so the trunk's state-dict keys (``encoder.tokenizer.*``,
``encoder.blocks.*``, ``encoder.norm.*``) are the same in every task's
checkpoint and one checkpoint initialises another task's model.

Axis legend: ``b`` batch, ``t`` frames, ``c`` clips, ``n`` tokens per frame,
``d`` width, ``k`` conv width, ``l`` recurrence width.
"""

from __future__ import annotations

import torch
from torch import nn

from trecvit.config import TRecViTConfig
from trecvit.layers import SpatialBlock, TemporalBlock
from trecvit.state import TRecViTState, check_state, state_shapes, zero_state
from trecvit.tokenizer import Tokenizer
from trecvit.validation import check_finite, check_frames, check_state_values, int_at_least, size_hw


class TRecViTLayer(nn.Module):
    """One encoder layer: temporal block (over ``t``), then spatial block (over ``n``); the
    other way round with ``config.block_order = "space_time"`` (an ablation)."""

    def __init__(self, config: TRecViTConfig):
        super().__init__()
        self.space_first = config.block_order == "space_time"
        self.temporal = TemporalBlock.from_config(config)
        self.spatial = SpatialBlock(config.width, config.num_heads, config.mlp_dim)

    def forward(self, x: torch.Tensor, conv_state: torch.Tensor | None = None,
                lru_state: torch.Tensor | None = None, first: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x [b, t, n, d]`` -> ``(x, conv_state, lru_state)``; see :class:`TemporalBlock`."""
        if self.space_first:
            x = self.spatial(x)
        x, conv_state, lru_state = self.temporal(x, conv_state, lru_state, first)
        return (x if self.space_first else self.spatial(x)), conv_state, lru_state


def run_layers(layers: nn.ModuleList, x: torch.Tensor, conv: torch.Tensor | None = None,
               lru: torch.Tensor | None = None, first: torch.Tensor | None = None, *,
               checkpoint: bool = False) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """``x [b, t, n, d]`` through :class:`TRecViTLayer` s; ``conv`` / ``lru`` are their states
    stacked over layers (``None``: start afresh), ``first [b]`` marks the streams that start here.
    Returns ``(x, conv states, lru states)``, one state per layer. ``checkpoint`` recomputes each
    layer's activations in the backward pass (without states only)."""
    conv_states, lru_states = [], []
    for i, layer in enumerate(layers):
        if checkpoint:
            x, conv_state, lru_state = torch.utils.checkpoint.checkpoint(
                layer, x, None, None, first, use_reentrant=False)
        else:
            x, conv_state, lru_state = layer(x, None if conv is None else conv[i],
                                             None if lru is None else lru[i], first)
        conv_states.append(conv_state)
        lru_states.append(lru_state)
    return x, conv_states, lru_states


class FrameTrunk(nn.Module):
    """What every trunk of the architecture table shares: a :class:`Tokenizer`, ``blocks``, a
    final ``norm`` and the checks on the frames it is given (shape, size, device, values).

    Subclasses build ``self.blocks`` and implement ``forward``.
    """

    def __init__(self, config: TRecViTConfig):
        super().__init__()
        self.config = config
        self.tokenizer = Tokenizer(config.width, config.patch_size, config.grid_hw,
                                   config.posemb, class_token=config.pool_type == "tok")
        self.grad_checkpointing = False

    @property
    def param_dtype(self) -> torch.dtype:
        return self.tokenizer.patch_embed.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.tokenizer.patch_embed.weight.device

    def tokens(self, frames: torch.Tensor) -> torch.Tensor:
        """``frames [b, t, 3, H, W]`` (checked) -> tokens ``[b, t, n, d]``."""
        b, t = frames.shape[:2]
        tokens = self.tokenizer(frames.to(self.param_dtype).reshape(b * t, *frames.shape[2:]))
        return tokens.view(b, t, *tokens.shape[1:])  # (b, t, n, d)

    def check_video(self, video: torch.Tensor, name: str = "video") -> None:
        """Validate ``video [b, t, 3, H, W]``: shape, patch grid, device, finite values."""
        check_frames(video, name=name, layout="BT3HW", patch_size=self.config.patch_size)
        self.check_grid(video.shape[-2:], name)
        self.check_device(video, name)
        check_finite(video, name=name, dtype=self.param_dtype)

    def check_device(self, x: torch.Tensor, name: str) -> None:
        device = self.device
        if x.device != device:
            raise ValueError(f"{name} is on {x.device} but the model is on {device}; move it with "
                             f"{name}.to({str(device)!r})")

    def check_grid(self, hw: tuple[int, int], name: str) -> None:
        """A learnt position embedding fixes the frame size; a sin-cos one takes any."""
        grid = (hw[0] // self.config.patch_size, hw[1] // self.config.patch_size)
        if self.config.posemb == "learn" and grid != self.config.grid_hw:
            raise ValueError(
                f"{name} frames are {hw[0]}x{hw[1]} but this model's learnt position embedding "
                f"is for {self.config.image_hw[0]}x{self.config.image_hw[1]} frames "
                f"(config.image_size); resize the frames to that size")


class TRecViTEncoder(FrameTrunk):
    """The TRecViT trunk (numerically identical to the official encoder).

    Args:
        config: the hyper-parameters; the head fields (``num_classes``,
            ``rep_size``) are not used here.

    ``forward(video)`` is the full-clip trunk; :meth:`step` / :meth:`step_chunk`
    run it frame by frame on a :class:`~trecvit.state.TRecViTState`.
    """

    def __init__(self, config: TRecViTConfig):
        super().__init__(config)
        self.blocks = nn.ModuleList(TRecViTLayer(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.width, eps=1e-6)  # official: encoder_norm

    def num_clips(self, num_frames: int) -> int:
        """Clips a video of ``num_frames`` frames is split into (the official rule)."""
        return max(num_frames // self.config.frames_per_clip, 1)

    def check_clips(self, video: torch.Tensor) -> int:
        """Validate ``video [b, t, 3, H, W]``; returns the number of clips."""
        self.check_video(video)
        num_frames = video.shape[1]
        num_clips = self.num_clips(num_frames)
        if num_frames % num_clips:
            raise ValueError(
                f"video has {num_frames} frames, which do not split into {num_clips} equal clips "
                f"(num_clips = max(T // frames_per_clip, 1) with frames_per_clip = "
                f"{self.config.frames_per_clip}); use a multiple of {num_clips} frames")
        return num_clips

    def encode(self, tokens: torch.Tensor, state: TRecViTState | None = None,
               first: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Run the layers on ``tokens [b, t, n, d]``; returns ``(encoded, conv states, lru
        states)``, one state per layer. ``state`` continues streams, ``first [b]`` marks
        those that start here."""
        checkpoint = self.grad_checkpointing and torch.is_grad_enabled() and state is None
        x, conv_states, lru_states = run_layers(self.blocks, tokens, None if state is None else state.conv,
                                                None if state is None else state.lru, first,
                                                checkpoint=checkpoint)
        return self.norm(x), conv_states, lru_states

    # ------------------------------------------------------------- full clips
    def embed(self, video: torch.Tensor) -> torch.Tensor:
        """Tokenizer output ``[b * c, t / c, n, d]`` for ``video [b, t, 3, H, W]``."""
        num_clips = self.check_clips(video)
        b, t = video.shape[:2]
        tokens = self.tokens(video)  # (b, t, n, d)
        return tokens.reshape(b * num_clips, t // num_clips, *tokens.shape[2:])  # (b c, t/c, n, d)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """``video [b, t, 3, H, W]`` -> ``encoded [b * c, t / c, n, d]``.

        The video is cut into ``c = max(t // frames_per_clip, 1)`` consecutive
        clips; the recurrence starts afresh in each.
        """
        encoded, _, _ = self.encode(self.embed(video))
        return encoded

    # -------------------------------------------------------------- streaming
    def init_state(self, batch_size: int, image_size: int | tuple[int, int] | None = None,
                   device: torch.device | str | None = None, feature_dim: int = 0) -> TRecViTState:
        """An empty streaming state for ``batch_size`` streams of frames of ``image_size``
        (default: ``config.image_size``); ``feature_dim`` is the width of the running
        feature sum a head keeps in it (0: none). See :class:`TRecViTState`."""
        batch_size = int_at_least(batch_size, "batch_size")
        p = self.config.patch_size
        h, w = self.config.image_hw if image_size is None else size_hw(image_size, "image_size")
        if h < p or w < p:
            raise ValueError(f"image_size {h}x{w} is smaller than one {p}x{p} patch; both sides must "
                             "be multiples of the patch size")
        if h % p or w % p:
            raise ValueError(f"image_size {h}x{w} must be multiples of the patch size {p}")
        self.check_grid((h, w), "init_state")
        shapes = state_shapes(self.config, batch_size, (h, w), feature_dim)
        return zero_state(shapes, device=self.device if device is None else device)

    def check_stream_input(self, x: torch.Tensor, state: TRecViTState, name: str, layout: str,
                           feature_dim: int | None = None) -> None:
        """The checks of :meth:`step` (``layout`` "B3HW") and :meth:`step_chunk` ("BT3HW");
        ``feature_dim`` ``None`` accepts a running feature sum of any width."""
        check_frames(x, name=name, layout=layout, patch_size=self.config.patch_size)
        self.check_grid(x.shape[-2:], name)
        self.check_device(x, name)
        if feature_dim is None and isinstance(state, TRecViTState) and isinstance(
                state.feature_sum, torch.Tensor) and state.feature_sum.dim() == 2:
            feature_dim = state.feature_sum.shape[1]
        expected = state_shapes(self.config, x.shape[0], tuple(x.shape[-2:]), feature_dim or 0)
        check_state(state, expected, what=name, frames_shape=tuple(x.shape), device=x.device)
        check_finite(x, name=name, dtype=self.param_dtype)
        check_state_values(state)

    def advance(self, frames: torch.Tensor, state: TRecViTState
                ) -> tuple[torch.Tensor, TRecViTState]:
        """:meth:`step_chunk` on checked ``frames [b, t, 3, H, W]``: ``(encoded [b, t, n, d],
        state)`` with the recurrence and frame counts advanced; ``feature_sum`` is left as it
        was, for a head to update."""
        t = frames.shape[1]
        first = state.num_frames == 0  # (b,)
        tokens = self.tokens(frames)  # (b, t, n, d)
        # When no stream starts here, skip the per-layer resets (eager only: a traced graph
        # must not depend on the data).
        resets = first if torch.compiler.is_compiling() or bool(first.any()) else None
        encoded, conv_states, lru_states = self.encode(tokens, state, resets)  # (b, t, n, d)
        new_state = TRecViTState(conv=torch.stack(conv_states), lru=torch.stack(lru_states),
                                 feature_sum=state.feature_sum, num_frames=state.num_frames + t)
        return encoded, new_state

    def step(self, frame: torch.Tensor, state: TRecViTState) -> tuple[torch.Tensor, TRecViTState]:
        """One frame ``[b, 3, H, W]`` of ``b`` streams -> ``(encoded [b, n, d], new_state)``;
        ``encoded`` equals frame ``t`` of :meth:`forward` on the whole clip."""
        self.check_stream_input(frame, state, "frame", "B3HW")
        encoded, state = self.advance(frame[:, None], state)
        return encoded[:, 0], state

    def step_chunk(self, frames: torch.Tensor, state: TRecViTState
                   ) -> tuple[torch.Tensor, TRecViTState]:
        """The next ``t`` frames ``[b, t, 3, H, W]`` of ``b`` streams in one call (equal to ``t``
        calls of :meth:`step`) -> ``(encoded [b, t, n, d], new_state)``."""
        self.check_stream_input(frames, state, "frames", "BT3HW")
        return self.advance(frames, state)
