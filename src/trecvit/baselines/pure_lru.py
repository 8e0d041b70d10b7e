"""The PureLRU baseline of the TRecViT paper (section 5.1, Figure 4): one RG-LRU over the whole video.

"Patchify and flatten the entire video, add spatio-temporal positional
embeddings, and apply SSM blocks as done in language tasks": every frame is cut
into one-frame ``p x p`` patches (TRecViT's tokenizer, without class token, with
its learnt spatial position embedding), a learnt temporal position embedding of
the frame is added, and the ``t * n`` tokens of a clip, frame after frame and
raster order within a frame, form ONE sequence. Each of the ``depth`` layers is
Griffin's residual block over that sequence: the RG-LRU temporal-mixing block
(:class:`~trecvit.layers.TemporalBlock`), then ``x + Mlp(LayerNorm(x))``; a
final LayerNorm ends the trunk. There is no attention anywhere.

The model is causal: a token depends on the tokens before it in the sequence,
so the output tokens of frame ``t`` depend on frames ``<= t`` only. It streams
(:meth:`PureLRU.step`): a frame's ``n`` tokens are pushed through the
recurrence, whose state (a conv and an RG-LRU state per layer, for ONE
position) has a constant size.

Clips are TRecViT's: a ``t``-frame video is cut into ``max(t // frames_per_clip,
1)`` equal clips, the recurrence restarting in each. A frame at index
``>= frames_per_clip`` of a clip (or of a stream) gets the last learnt temporal
embedding.

Axis legend: ``b`` batch, ``t`` frames, ``c`` clips, ``n`` tokens per frame,
``d`` width, ``k`` conv width, ``l`` recurrence width, ``r`` pre-logits width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from trecvit.base import ClassifierOutput, VideoClassifier
from trecvit.config import TRecViTConfig
from trecvit.encoder import FrameTrunk
from trecvit.heads import ClassificationHead
from trecvit.init import init_weights_official
from trecvit.layers import Mlp, TemporalBlock
from trecvit.model import TRecViTStepOutput, running_head
from trecvit.state import TRecViTState, check_state, conv_frames, zero_state
from trecvit.validation import check_finite, check_frames, check_state_values, int_at_least, size_hw


@dataclass
class PureLRUConfig(TRecViTConfig):
    """Hyper-parameters of PureLRU: :class:`~trecvit.config.TRecViTConfig`'s fields.

    ``width, depth, mlp_dim, patch_size, image_size, conv1d_width, lru_width,
    min_rad, max_rad, num_classes, rep_size, frames_per_clip`` mean what they
    mean in TRecViT (``mlp_dim`` is the hidden width of each layer's MLP block);
    ``num_heads`` is only the number of diagonal blocks of the RG-LRU gates (there
    is no attention). ``frames_per_clip`` is also the length of the learnt
    temporal position embedding.

    Attributes:
        pool_type: must be ``"gap"`` (the default): a flattened sequence has no
            class token; the head averages the tokens of each frame.
        posemb: must be ``"learn"``: spatial and temporal embeddings are learnt.
    """

    pool_type: str = "gap"

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent field."""
        if self.pool_type != "gap":
            raise ValueError(f"PureLRUConfig.pool_type must be 'gap' (a flattened video has no class "
                             f"token; the head averages each frame's tokens), got {self.pool_type!r}")
        if self.posemb != "learn":
            raise ValueError(f"PureLRUConfig.posemb must be 'learn' (learnt spatial and temporal "
                             f"position embeddings), got {self.posemb!r}")
        super().validate()
        self.refuse_ablations("block_order", why="PureLRU has no spatial block to order against the "
                              "temporal one")


class PureLRULayer(nn.Module):
    """Griffin's residual block over the flattened sequence: RG-LRU block, then MLP block.

    ``x [b, s, 1, d]`` (``s = t * n`` tokens, mixed over dim 1) ->
    ``y = TemporalBlock(x)``, ``y + Mlp(LayerNorm(y))``.
    """

    def __init__(self, config: PureLRUConfig):
        super().__init__()
        self.temporal = TemporalBlock.from_config(config)
        self.norm = nn.LayerNorm(config.width, eps=1e-6)
        self.mlp = Mlp(config.width, config.mlp_dim)

    def forward(self, x: torch.Tensor, conv_state: torch.Tensor | None = None,
                lru_state: torch.Tensor | None = None, first: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x [b, s, 1, d]`` -> ``(x, conv_state [b, k-1, 1, l], lru_state [b, 1, l])``; the
        states and ``first [b]`` as in :class:`~trecvit.layers.TemporalBlock`."""
        x, conv_state, lru_state = self.temporal(x, conv_state, lru_state, first)
        return x + self.mlp(self.norm(x)), conv_state, lru_state


class PureLRUEncoder(FrameTrunk):
    """The PureLRU trunk: tokenizer + temporal embedding, ``depth`` :class:`PureLRULayer` s over
    the flattened clip, final norm.

    Args:
        config: a :class:`PureLRUConfig`.

    ``forward(video [b, t, 3, H, W])`` -> ``encoded [b * c, t / c, n, d]``; :meth:`advance`
    runs it on the next frames of streams held in a :class:`~trecvit.state.TRecViTState`
    whose conv / lru fields have one position (``[depth, b, k-1, 1, l]``, ``[depth, b, 1, l]``).
    """

    def __init__(self, config: PureLRUConfig):
        super().__init__(config)
        self.temporal_embed = nn.Parameter(torch.empty(config.frames_per_clip, config.width))  # (T, d)
        self.blocks = nn.ModuleList(PureLRULayer(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.width, eps=1e-6)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The temporal position embedding only (the layers initialise themselves): ``N(0, 1/d)``,
        as the learnt spatial one."""
        nn.init.normal_(self.temporal_embed, std=self.config.width ** -0.5)

    def frame_embedding(self, index: torch.Tensor) -> torch.Tensor:
        """Temporal embedding ``[..., d]`` of frame indices ``index [...]`` (0 = first frame of a
        clip or stream); indices beyond ``frames_per_clip - 1`` get the last learnt one."""
        return self.temporal_embed[index.clamp(max=self.config.frames_per_clip - 1)]

    def num_clips(self, num_frames: int) -> int:
        """Clips a video of ``num_frames`` frames is split into (TRecViT's rule)."""
        return max(num_frames // self.config.frames_per_clip, 1)

    def run(self, x: torch.Tensor, state: TRecViTState | None = None,
            first: torch.Tensor | None = None) -> tuple[torch.Tensor, TRecViTState | None]:
        """Tokens with temporal embedding ``x [b, t, n, d]`` -> ``(encoded [b, t, n, d], state)``:
        the layers over the ``t * n`` tokens in order, continuing ``state`` (``None``: fresh
        sequences; then no state is returned), ``first [b]`` marking streams that start here."""
        b, t, n, d = x.shape
        x = x.reshape(b, t * n, 1, d)  # one sequence, raster order frame after frame
        checkpoint = self.grad_checkpointing and torch.is_grad_enabled() and state is None
        conv_states, lru_states = [], []
        for i, layer in enumerate(self.blocks):
            if checkpoint:
                x, conv_state, lru_state = torch.utils.checkpoint.checkpoint(
                    layer, x, None, None, None, use_reentrant=False)
            else:
                x, conv_state, lru_state = layer(x, None if state is None else state.conv[i],
                                                 None if state is None else state.lru[i], first)
            conv_states.append(conv_state)
            lru_states.append(lru_state)
        encoded = self.norm(x).view(b, t, n, d)
        if state is None:
            return encoded, None
        return encoded, state._replace(conv=torch.stack(conv_states), lru=torch.stack(lru_states),
                                       num_frames=state.num_frames + t)

    # ------------------------------------------------------------- full clips
    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """``video [b, t, 3, H, W]`` -> ``encoded [b * c, t / c, n, d]``, ``c = max(t //
        frames_per_clip, 1)`` clips, each one fresh sequence of ``(t / c) * n`` tokens."""
        self.check_video(video)
        b, t = video.shape[:2]
        c = self.num_clips(t)
        if t % c:
            raise ValueError(
                f"video has {t} frames, which do not split into {c} equal clips (num_clips = "
                f"max(T // frames_per_clip, 1) with frames_per_clip = {self.config.frames_per_clip}); "
                f"use a multiple of {c} frames")
        tokens = self.tokens(video)  # (b, t, n, d)
        tokens = tokens.reshape(b * c, t // c, *tokens.shape[2:])  # (b c, t/c, n, d)
        index = torch.arange(t // c, device=tokens.device)
        tokens = tokens + self.frame_embedding(index).to(tokens.dtype)[None, :, None]
        return self.run(tokens)[0]

    # -------------------------------------------------------------- streaming
    def state_shapes(self, batch_size: int, feature_dim: int) -> dict[str, tuple[int, ...]]:
        """The shape of each field of the streaming state (independent of the frame size)."""
        cfg = self.config
        return {"conv": (cfg.depth, batch_size, conv_frames(cfg), 1, cfg.lru_width),
                "lru": (cfg.depth, batch_size, 1, cfg.lru_width),
                "feature_sum": (batch_size, feature_dim),
                "num_frames": (batch_size,)}

    def init_state(self, batch_size: int, image_size: int | tuple[int, int] | None = None,
                   device: torch.device | str | None = None, feature_dim: int = 0) -> TRecViTState:
        """An empty state for ``batch_size`` streams of ``image_size`` frames (default and only
        size: ``config.image_size``, the learnt embedding fixes it)."""
        batch_size = int_at_least(batch_size, "batch_size")
        hw = self.config.image_hw if image_size is None else size_hw(image_size, "image_size")
        self.check_grid(hw, "init_state")
        return zero_state(self.state_shapes(batch_size, feature_dim),
                          device=self.device if device is None else device)

    def check_stream_input(self, x: torch.Tensor, state: TRecViTState, name: str, layout: str,
                           feature_dim: int) -> None:
        """The checks of ``step`` (``layout`` "B3HW") and ``step_chunk`` ("BT3HW")."""
        check_frames(x, name=name, layout=layout, patch_size=self.config.patch_size)
        self.check_grid(x.shape[-2:], name)
        self.check_device(x, name)
        check_state(state, self.state_shapes(x.shape[0], feature_dim), what=name,
                    frames_shape=tuple(x.shape), device=x.device)
        check_finite(x, name=name, dtype=self.param_dtype)
        check_state_values(state)

    def advance(self, frames: torch.Tensor, state: TRecViTState) -> tuple[torch.Tensor, TRecViTState]:
        """Checked ``frames [b, t, 3, H, W]`` -> ``(encoded [b, t, n, d], state)`` with the
        recurrence and frame counts advanced (``feature_sum`` left for the head)."""
        t = frames.shape[1]
        first = state.num_frames == 0  # (b,)
        tokens = self.tokens(frames)  # (b, t, n, d)
        index = state.num_frames[:, None] + torch.arange(t, device=frames.device)  # (b, t)
        tokens = tokens + self.frame_embedding(index).to(tokens.dtype)[:, :, None]
        resets = first if torch.compiler.is_compiling() or bool(first.any()) else None
        return self.run(tokens, state, resets)


class PureLRU(VideoClassifier):
    """PureLRU: the whole (clip of the) video as one token sequence through RG-LRU residual blocks.

    Args:
        config: a :class:`PureLRUConfig` (default: its defaults, a B-sized model).

    ``self.encoder`` is the trunk (:class:`PureLRUEncoder`), ``self.head`` TRecViT's
    classification head with ``gap`` pooling. Streams frame by frame with :meth:`step`.
    """

    arch = "pure_lru"
    config_class = PureLRUConfig

    def __init__(self, config: PureLRUConfig | None = None):
        super().__init__(config if config is not None else PureLRUConfig())
        config = self.config
        self.encoder = PureLRUEncoder(config)
        self.head = ClassificationHead(config.width, config.rep_size, config.num_classes,
                                       config.pool_type, config.readout)
        init_weights_official(self)

    def num_clips(self, num_frames: int) -> int:
        """``max(num_frames // frames_per_clip, 1)``, as TRecViT."""
        return self.encoder.num_clips(num_frames)

    def forward(self, video: torch.Tensor) -> ClassifierOutput:
        """Classify ``video [b, t, 3, H, W]`` (float, RGB in [0, 1], channel-first)."""
        return super().forward(video)

    # -------------------------------------------------------------- streaming
    def init_state(self, batch_size: int, image_size: int | tuple[int, int] | None = None,
                   device: torch.device | str | None = None) -> TRecViTState:
        """An empty streaming state: a :class:`~trecvit.state.TRecViTState` with ``conv [depth,
        b, k-1, 1, l]``, ``lru [depth, b, 1, l]`` (one sequence position), ``feature_sum [b, r]``,
        ``num_frames [b]``; float32 (counts int64), of constant size."""
        return self.encoder.init_state(batch_size, image_size, device, feature_dim=self.head.feature_dim)

    def step(self, frame: torch.Tensor, state: TRecViTState
             ) -> tuple[TRecViTStepOutput, TRecViTState]:
        """Process one frame ``[b, 3, H, W]`` of ``b`` streams: its ``n`` tokens go through the
        recurrence after those of the frames before.

        Returns ``(output, new_state)``: ``output.encoded [b, n, d]`` equals frame ``t`` of
        ``forward_features`` of a one-clip video, ``output.logits`` is the head on the running
        mean of the per-frame features (after the last frame of a one-clip video: its
        ``logits``). A stream is one sequence: it never restarts at ``frames_per_clip`` (frames
        beyond get the last temporal embedding), so it matches ``forward`` only where that
        makes one clip (``t < 2 * frames_per_clip``). ``state.reset(mask)`` starts streams anew.
        """
        self.encoder.check_stream_input(frame, state, "frame", "B3HW", self.head.feature_dim)
        out, new_state = self._advance(frame[:, None], state)
        return TRecViTStepOutput(encoded=out.encoded[:, 0], logits=out.logits[:, 0],
                                 probs=out.probs[:, 0], pre_logits=out.pre_logits[:, 0]), new_state

    def step_chunk(self, frames: torch.Tensor, state: TRecViTState
                   ) -> tuple[TRecViTStepOutput, TRecViTState]:
        """The next ``t`` frames ``[b, t, 3, H, W]`` in one call, equal to ``t`` calls of
        :meth:`step`; the output fields get a frame axis after ``b``."""
        self.encoder.check_stream_input(frames, state, "frames", "BT3HW", self.head.feature_dim)
        return self._advance(frames, state)

    def _advance(self, frames: torch.Tensor, state: TRecViTState
                 ) -> tuple[TRecViTStepOutput, TRecViTState]:
        """The trunk on checked ``frames [b, t, 3, H, W]``, then the running mean of the head's
        per-frame features (:func:`trecvit.model.running_head`, as :class:`trecvit.TRecViT`)."""
        encoded, trunk_state = self.encoder.advance(frames, state)  # (b, t, n, d)
        return running_head(self.head, encoded, state, trunk_state)

    # ------------------------------------------------------------------ FLOPs
    @classmethod
    def analytic_flops(cls, config: PureLRUConfig, num_frames: int, batch_size: int = 1) -> int:
        """Forward FLOPs of ``batch_size`` videos of ``num_frames`` frames, from the config alone.

        What :func:`trecvit.tools.profiling.count_flops` counts (1 multiply-add = 2 FLOPs): per
        frame the patch embedding ``2 n d 3 p^2`` and the pre-logits ``2 d r``; per token and
        layer ``linear_x`` and ``linear_y`` ``4 d l``, the two block-diagonal gates
        ``4 l (l / h)`` (none with ``lru_gates=False``), ``linear_out`` ``2 l d``, the MLP
        ``4 d m``; per clip the classifier ``2 r classes``. Norms, activations, the causal
        convolution and the scan are elementwise, not counted.
        """
        n = config.grid_hw[0] * config.grid_hw[1]
        d, l, m, h = config.width, config.lru_width, config.mlp_dim, config.num_heads
        r = config.rep_size or d
        gates = 4 * l * (l // h) if config.lru_gates else 0
        per_token = 4 * d * l + gates + 2 * l * d + 4 * d * m
        per_frame = 2 * n * d * 3 * config.patch_size ** 2 + config.depth * n * per_token
        per_frame += 2 * d * r if config.rep_size else 0
        clips = max(num_frames // config.frames_per_clip, 1)
        return batch_size * (num_frames * per_frame + clips * 2 * r * config.num_classes)
