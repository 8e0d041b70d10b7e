"""TRecViT: a causal video transformer with recurrence over time.

Each encoder layer is a temporal block (gated linear recurrence over the
frames, per token position) followed by a spatial block (ViT self-attention
over the tokens of each frame). The model is causal: the output at frame ``t``
depends on frames ``<= t`` only, so it runs on a live stream, frame by frame,
with a state of constant size (:meth:`TRecViT.step`).

Input convention: videos are float tensors ``[B, T, 3, H, W]`` (channel-first
frames, PyTorch's convention; the official JAX model takes ``[B, T, H, W, 3]``)
with RGB values in ``[0, 1]`` and no mean/std normalisation.

Axis legend: ``b`` batch, ``t`` frames, ``c`` clips, ``n`` tokens per frame,
``d`` width, ``k`` conv width, ``l`` recurrence width, ``r`` pre-logits width.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from trecvit.config import TRecViTConfig
from trecvit.heads import ClassificationHead
from trecvit.init import init_weights_official
from trecvit.layers import SpatialBlock, TemporalBlock
from trecvit.state import TRecViTState
from trecvit.tokenizer import Tokenizer
from trecvit.validation import check_finite, check_frames, check_state_values, int_at_least


@dataclass
class TRecViTOutput:
    """Output of :meth:`TRecViT.forward` for a batch of ``b`` videos split into ``c`` clips.

    Attributes:
        logits: ``[b, classes]``, the mean of the per-clip logits.
        probs: ``[b, classes]``, the mean of the per-clip softmax probabilities.
        pre_logits: ``[b, c, r]``, per-clip features (``tanh`` layer, mean over frames).
        encoded: ``[b * c, t / c, n, d]``, the encoder output after the final norm.
    """

    logits: torch.Tensor
    probs: torch.Tensor
    pre_logits: torch.Tensor
    encoded: torch.Tensor


@dataclass
class TRecViTStepOutput:
    """Output of :meth:`TRecViT.step` for one frame of ``b`` streams (of
    :meth:`TRecViT.step_chunk`: the same fields with a frame axis after ``b``).

    Attributes:
        encoded: ``[b, n, d]``, this frame's encoder output after the final norm.
        logits: ``[b, classes]``, the prediction from the frames seen so far: the
            head applied to the running mean of the per-frame features.
        probs: ``[b, classes]``, ``softmax(logits)``.
        pre_logits: ``[b, r]``, that running mean of the per-frame features.
    """

    encoded: torch.Tensor
    logits: torch.Tensor
    probs: torch.Tensor
    pre_logits: torch.Tensor


class TRecViTLayer(nn.Module):
    """One encoder layer: temporal block (over ``t``), then spatial block (over ``n``)."""

    def __init__(self, config: TRecViTConfig):
        super().__init__()
        self.temporal = TemporalBlock(config.width, config.lru_width, config.num_heads,
                                      config.conv1d_width, config.min_rad, config.max_rad)
        self.spatial = SpatialBlock(config.width, config.num_heads, config.mlp_dim)

    def forward(self, x: torch.Tensor, conv_state: torch.Tensor | None = None,
                lru_state: torch.Tensor | None = None, first: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x [b, t, n, d]`` -> ``(x, conv_state, lru_state)``; see :class:`TemporalBlock`."""
        x, conv_state, lru_state = self.temporal(x, conv_state, lru_state, first)
        return self.spatial(x), conv_state, lru_state


class TRecViT(nn.Module):
    """TRecViT, numerically identical to the official JAX model.

    Args:
        config: the hyper-parameters; ``TRecViTConfig()`` is TRecViT-B for
            Kinetics-400. Weights are initialised as in the official release.

    Example::

        model = TRecViT(TRecViTConfig.from_variant("S", num_classes=10))
        out = model(video)                      # video [B, T, 3, H, W] in [0, 1]
        state = model.init_state(batch_size=B)
        for frame in video.unbind(1):           # frame [B, 3, H, W]
            step_out, state = model.step(frame, state)
    """

    def __init__(self, config: TRecViTConfig | None = None):
        super().__init__()
        config = config if config is not None else TRecViTConfig()
        self.config = config
        self.tokenizer = Tokenizer(config.width, config.patch_size, config.grid_hw,
                                   config.posemb, class_token=config.pool_type == "tok")
        self.blocks = nn.ModuleList(TRecViTLayer(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.width, eps=1e-6)  # official: encoder_norm
        self.head = ClassificationHead(config.width, config.rep_size, config.num_classes,
                                       config.pool_type)
        self.grad_checkpointing = False
        init_weights_official(self, depth=config.depth)

    # ------------------------------------------------------------------ helpers
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each encoder layer's activations in the backward pass instead of
        keeping them (activation checkpointing: less memory, about a third more compute)."""
        self.grad_checkpointing = enable

    def num_clips(self, num_frames: int) -> int:
        """Clips a video of ``num_frames`` frames is split into (the official rule)."""
        return max(num_frames // self.config.frames_per_clip, 1)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _param_dtype(self) -> torch.dtype:
        return self.tokenizer.patch_embed.weight.dtype

    def _check_video(self, video: torch.Tensor) -> int:
        """Validate ``video [b, t, 3, H, W]``; returns the number of clips."""
        check_frames(video, name="video", layout="BT3HW", patch_size=self.config.patch_size)
        num_frames = video.shape[1]
        num_clips = self.num_clips(num_frames)
        if num_frames % num_clips:
            raise ValueError(
                f"video has {num_frames} frames, which do not split into {num_clips} equal clips "
                f"(num_clips = max(T // frames_per_clip, 1) with frames_per_clip = "
                f"{self.config.frames_per_clip}); use a multiple of {num_clips} frames")
        self._check_grid(video.shape[-2:], "video")
        self._check_device(video, "video")
        check_finite(video, name="video", dtype=self._param_dtype())
        return num_clips

    def _check_device(self, x: torch.Tensor, name: str) -> None:
        device = self.tokenizer.patch_embed.weight.device
        if x.device != device:
            raise ValueError(f"{name} is on {x.device} but the model is on {device}; move it with "
                             f"{name}.to({str(device)!r})")

    def _check_grid(self, hw: tuple[int, int], name: str) -> None:
        grid = (hw[0] // self.config.patch_size, hw[1] // self.config.patch_size)
        if self.config.posemb == "learn" and grid != self.config.grid_hw:
            raise ValueError(
                f"{name} frames are {hw[0]}x{hw[1]} but this model's learnt position embedding "
                f"is for {self.config.image_hw[0]}x{self.config.image_hw[1]} frames "
                f"(config.image_size); resize the frames to that size")

    def _encode(self, tokens: torch.Tensor, state: TRecViTState | None = None,
                first: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Run the encoder on ``tokens [b, t, n, d]``; returns ``(encoded, conv states,
        lru states)``, one state per layer."""
        x = tokens
        conv_states, lru_states = [], []
        for i, layer in enumerate(self.blocks):
            conv_in = None if state is None else state.conv[i]
            lru_in = None if state is None else state.lru[i]
            if self.grad_checkpointing and torch.is_grad_enabled() and state is None:
                x, conv_state, lru_state = torch.utils.checkpoint.checkpoint(
                    layer, x, None, None, first, use_reentrant=False)
            else:
                x, conv_state, lru_state = layer(x, conv_in, lru_in, first)
            conv_states.append(conv_state)
            lru_states.append(lru_state)
        return self.norm(x), conv_states, lru_states

    # ------------------------------------------------------------- full clips
    def embed(self, video: torch.Tensor) -> torch.Tensor:
        """Tokenizer output ``[b * c, t / c, n, d]`` for ``video [b, t, 3, H, W]``."""
        num_clips = self._check_video(video)
        b, t = video.shape[:2]
        frames = video.to(self._param_dtype()).reshape(b * t, *video.shape[2:])  # (b t, 3, H, W)
        tokens = self.tokenizer(frames)  # (b t, n, d)
        return tokens.view(b * num_clips, t // num_clips, *tokens.shape[1:])  # (b c, t/c, n, d)

    def forward_features(self, video: torch.Tensor) -> torch.Tensor:
        """The trunk: ``video [b, t, 3, H, W]`` -> ``encoded [b * c, t / c, n, d]``.

        The video is cut into ``c = max(t // frames_per_clip, 1)`` consecutive
        clips; the recurrence starts afresh in each.
        """
        encoded, _, _ = self._encode(self.embed(video))
        return encoded

    def forward_head(self, encoded: torch.Tensor, num_clips: int = 1) -> TRecViTOutput:
        """The classifier on ``encoded [b * c, t / c, n, d]`` of ``b`` videos of ``c`` clips."""
        if encoded.dim() != 4 or encoded.shape[0] % num_clips:
            raise ValueError(f"encoded must be [b * clips, t, n, d] with clips = {num_clips}, "
                             f"got shape {tuple(encoded.shape)}")
        features = self.head.frame_features(encoded).mean(dim=1)  # (b c, r)
        clip_logits = self.head(features)  # (b c, classes)
        b = encoded.shape[0] // num_clips
        clip_logits = clip_logits.view(b, num_clips, -1)  # (b, c, classes)
        return TRecViTOutput(
            logits=clip_logits.mean(dim=1),
            probs=clip_logits.float().softmax(dim=-1).mean(dim=1),
            pre_logits=features.view(b, num_clips, -1),
            encoded=encoded,
        )

    def forward(self, video: torch.Tensor) -> TRecViTOutput:
        """Classify ``video [b, t, 3, H, W]`` (float, RGB in [0, 1], channel-first)."""
        encoded = self.forward_features(video)  # validates the video
        return self.forward_head(encoded, self.num_clips(video.shape[1]))

    # -------------------------------------------------------------- streaming
    def init_state(self, batch_size: int, image_size: int | tuple[int, int] | None = None,
                   device: torch.device | str | None = None) -> TRecViTState:
        """An empty streaming state for ``batch_size`` streams of frames of
        ``image_size`` (default: ``config.image_size``). See :class:`TRecViTState`."""
        batch_size = int_at_least(batch_size, "batch_size")
        cfg = self.config
        if image_size is None:
            h, w = cfg.image_hw
        elif isinstance(image_size, (tuple, list)):
            if len(image_size) != 2:
                raise ValueError(f"image_size must be an int or an (H, W) pair, got {image_size!r}")
            h, w = (int_at_least(side, f"image_size[{i}]") for i, side in enumerate(image_size))
        else:
            h = w = int_at_least(image_size, "image_size")
        if h < cfg.patch_size or w < cfg.patch_size:
            raise ValueError(f"image_size {h}x{w} is smaller than one {cfg.patch_size}x{cfg.patch_size} "
                             "patch; both sides must be multiples of the patch size")
        if h % cfg.patch_size or w % cfg.patch_size:
            raise ValueError(f"image_size {h}x{w} must be multiples of the patch size "
                             f"{cfg.patch_size}")
        self._check_grid((h, w), "init_state")
        if device is None:
            device = self.tokenizer.patch_embed.weight.device
        n = (h // cfg.patch_size) * (w // cfg.patch_size) + self.tokenizer.num_prefix_tokens
        f32 = dict(dtype=torch.float32, device=device)
        return TRecViTState(
            conv=torch.zeros(cfg.depth, batch_size, cfg.conv1d_width - 1, n, cfg.lru_width, **f32),
            lru=torch.zeros(cfg.depth, batch_size, n, cfg.lru_width, **f32),
            feature_sum=torch.zeros(batch_size, self.head.feature_dim, **f32),
            num_frames=torch.zeros(batch_size, dtype=torch.int64, device=device),
        )

    def _check_state(self, state: TRecViTState, batch: int, hw: tuple[int, int], what: str,
                     device: torch.device) -> None:
        """Static checks of ``state`` for ``batch`` streams of ``hw`` frames (``what`` names them)."""
        if not isinstance(state, TRecViTState):
            hint = (" (wrap a tuple of its four tensors with TRecViTState(*state))"
                    if isinstance(state, tuple) and len(state) == 4 else "")
            raise ValueError(f"state must be a TRecViTState (from model.init_state), got "
                             f"{type(state).__name__}{hint}")
        for field, value in zip(TRecViTState._fields, state):
            if not isinstance(value, torch.Tensor):
                raise ValueError(f"state.{field} must be a torch.Tensor, got {type(value).__name__}")
        cfg = self.config
        n = (hw[0] // cfg.patch_size) * (hw[1] // cfg.patch_size) + self.tokenizer.num_prefix_tokens
        expected = {
            "conv": (cfg.depth, batch, cfg.conv1d_width - 1, n, cfg.lru_width),
            "lru": (cfg.depth, batch, n, cfg.lru_width),
            "feature_sum": (batch, self.head.feature_dim),
            "num_frames": (batch,),
        }
        wrong = [f"state.{field} is {tuple(getattr(state, field).shape)}, expected {shape}"
                 for field, shape in expected.items() if tuple(getattr(state, field).shape) != shape]
        if wrong:
            streams = state.num_frames.shape[0] if state.num_frames.dim() == 1 else None
            lead = (f"it holds {streams} streams but {what} has {batch}; "
                    if streams is not None and streams != batch else "")
            raise ValueError(
                f"state does not fit {what} of shape {(batch, 3, *hw)}: {lead}" + "; ".join(wrong)
                + f" (make it with model.init_state(batch_size={batch}, image_size={tuple(hw)}))")
        for field, value in zip(TRecViTState._fields, state):
            want = torch.int64 if field == "num_frames" else torch.float32
            if value.dtype != want:
                raise ValueError(f"state.{field} must be {want}, got {value.dtype} (the state is "
                                 "float32, frame counts int64, whatever the model's dtype; make it "
                                 "with model.init_state)")
            if value.device != device:
                raise ValueError(f"state.{field} is on {value.device} but the frames are on {device}; "
                                 f"move the state with state.to({str(device)!r})")

    def step(self, frame: torch.Tensor, state: TRecViTState
             ) -> tuple[TRecViTStepOutput, TRecViTState]:
        """Process one frame of ``b`` streams.

        Args:
            frame: ``[b, 3, H, W]`` float, RGB in [0, 1].
            state: from :meth:`init_state` or the previous call.

        Returns:
            ``(output, new_state)``. For frame ``t`` of a stream, ``output.encoded``
            equals ``forward_features(video)[:, t]`` of the full clip, and after
            the last frame of a one-clip video ``output.logits`` equals its
            full-clip ``logits``. The stream never resets by itself; use
            ``state.reset(mask)`` to start new streams.
        """
        self._check_stream_input(frame, state, "frame", "B3HW")
        out, new_state = self._advance(frame[:, None], state)
        return TRecViTStepOutput(encoded=out.encoded[:, 0], logits=out.logits[:, 0],
                                 probs=out.probs[:, 0], pre_logits=out.pre_logits[:, 0]), new_state

    def step_chunk(self, frames: torch.Tensor, state: TRecViTState
                   ) -> tuple[TRecViTStepOutput, TRecViTState]:
        """Process the next ``t`` frames of ``b`` streams in one call.

        Equal (to float rounding) to ``t`` calls of :meth:`step`, and a state
        from either method goes on with the other; the recurrence runs as one
        scan over the chunk, so buffered frames go faster this way.

        Args:
            frames: ``[b, t, 3, H, W]`` float, RGB in [0, 1].
            state: from :meth:`init_state`, :meth:`step` or :meth:`step_chunk`.

        Returns:
            ``(output, new_state)``; the fields of ``output`` have a frame axis
            after the batch axis (``encoded [b, t, n, d]``, ``logits`` and
            ``probs [b, t, classes]``, ``pre_logits [b, t, r]``), and frame ``i``
            holds what :meth:`step` returns for that frame.
        """
        self._check_stream_input(frames, state, "frames", "BT3HW")
        return self._advance(frames, state)

    def _check_stream_input(self, x: torch.Tensor, state: TRecViTState, name: str, layout: str) -> None:
        """The checks of :meth:`step` (``layout`` "B3HW") and :meth:`step_chunk` ("BT3HW")."""
        check_frames(x, name=name, layout=layout, patch_size=self.config.patch_size)
        self._check_grid(x.shape[-2:], name)
        self._check_device(x, name)
        self._check_state(state, x.shape[0], tuple(x.shape[-2:]), name, x.device)
        check_finite(x, name=name, dtype=self._param_dtype())
        check_state_values(state)

    def _advance(self, frames: torch.Tensor, state: TRecViTState
                 ) -> tuple[TRecViTStepOutput, TRecViTState]:
        """:meth:`step_chunk` on checked ``frames [b, t, 3, H, W]``."""
        b, t = frames.shape[:2]
        first = state.num_frames == 0  # (b,)
        tokens = self.tokenizer(frames.to(self._param_dtype()).reshape(b * t, *frames.shape[2:]))
        tokens = tokens.view(b, t, *tokens.shape[1:])  # (b, t, n, d)
        # When no stream starts here, skip the per-layer resets (eager only: a traced graph
        # must not depend on the data).
        resets = first if torch.compiler.is_compiling() or bool(first.any()) else None
        encoded, conv_states, lru_states = self._encode(tokens, state, resets)  # (b, t, n, d)
        features = self.head.frame_features(encoded)  # (b, t, r)
        start = torch.where(first[:, None], 0.0, state.feature_sum)  # (b, r)
        # The running sum, frame after frame, continuing the state's sum.
        feature_sum = torch.cat([start[:, None], features.float()], dim=1).cumsum(dim=1)[:, 1:]
        num_frames = state.num_frames[:, None] + torch.arange(1, t + 1, device=frames.device)  # (b, t)
        pre_logits = feature_sum / num_frames[..., None]  # running means (b, t, r)
        logits = self.head(pre_logits.to(features.dtype))
        new_state = TRecViTState(
            conv=torch.stack(conv_states), lru=torch.stack(lru_states),
            feature_sum=feature_sum[:, -1], num_frames=num_frames[:, -1],
        )
        out = TRecViTStepOutput(encoded=encoded, logits=logits,
                                probs=logits.float().softmax(dim=-1), pre_logits=pre_logits)
        return out, new_state

    # ----------------------------------------------------------- serialisation
    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``config.json`` and ``model.safetensors`` to ``directory``."""
        from trecvit.checkpoints.pretrained import save_pretrained

        save_pretrained(self, directory)

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str | torch.device = "cpu"
                        ) -> "TRecViT":
        """Load a model written by :meth:`save_pretrained`."""
        from trecvit.checkpoints.pretrained import load_pretrained

        return load_pretrained(directory, map_location=map_location)
