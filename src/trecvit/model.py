"""TRecViT, the video classifier: the TRecViT trunk (:mod:`trecvit.encoder`) and the official head.

The model is causal: the output at frame ``t`` depends on frames ``<= t``
only, so it runs on a live stream, frame by frame, with a state of constant
size (:meth:`TRecViT.step`), whose running prediction after the last frame of a
clip equals the full-clip prediction.

Input convention: videos are float tensors ``[B, T, 3, H, W]`` (channel-first
frames, PyTorch's convention; the official JAX model takes ``[B, T, H, W, 3]``)
with RGB values in ``[0, 1]`` and no mean/std normalisation.

Axis legend: ``b`` batch, ``t`` frames, ``c`` clips, ``n`` tokens per frame,
``d`` width, ``r`` pre-logits width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trecvit.base import ClassifierOutput, VideoClassifier
from trecvit.config import TRecViTConfig
from trecvit.encoder import TRecViTEncoder
from trecvit.heads import ClassificationHead
from trecvit.init import init_weights_official
from trecvit.state import TRecViTState


@dataclass
class TRecViTOutput(ClassifierOutput):
    """Output of :meth:`TRecViT.forward` for a batch of ``b`` videos split into ``c`` clips.

    Attributes:
        logits: ``[b, classes]``, the mean of the per-clip logits.
        probs: ``[b, classes]``, the mean of the per-clip softmax probabilities.
        pre_logits: ``[b, c, r]``, per-clip features (``tanh`` layer, mean over frames).
        encoded: ``[b * c, t / c, n, d]``, the encoder output after the final norm.
    """


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


class TRecViT(VideoClassifier):
    """TRecViT, numerically identical to the official JAX model.

    Args:
        config: the hyper-parameters; ``TRecViTConfig()`` is TRecViT-B for
            Kinetics-400. Weights are initialised as in the official release.

    ``self.encoder`` is the trunk (:class:`~trecvit.encoder.TRecViTEncoder`),
    ``self.head`` the official classification head.

    Example::

        model = TRecViT(TRecViTConfig.from_variant("S", num_classes=10))
        out = model(video)                      # video [B, T, 3, H, W] in [0, 1]
        state = model.init_state(batch_size=B)
        for frame in video.unbind(1):           # frame [B, 3, H, W]
            step_out, state = model.step(frame, state)
    """

    arch = "trecvit"
    config_class = TRecViTConfig
    output_class = TRecViTOutput

    def __init__(self, config: TRecViTConfig | None = None):
        super().__init__(config if config is not None else TRecViTConfig())
        config = self.config
        self.encoder = TRecViTEncoder(config)
        self.head = ClassificationHead(config.width, config.rep_size, config.num_classes,
                                       config.pool_type, config.readout)
        init_weights_official(self)

    @classmethod
    def analytic_flops(cls, config: TRecViTConfig, num_frames: int, batch_size: int = 1,
                       image_size: int | tuple[int, int] | None = None) -> int:
        """Forward FLOPs of the full-clip model, from the configuration alone.

        Counts what :func:`trecvit.tools.profiling.count_flops` counts: the patch embedding,
        every linear layer, the block-diagonal gates, the two attention products and the head
        (one multiply-add = 2 FLOPs). Elementwise work (norms, activations, the causal
        convolution and the scan) is not counted by either.
        """
        if image_size is None:
            gh, gw = config.grid_hw
        else:
            hw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
            gh, gw = hw[0] // config.patch_size, hw[1] // config.patch_size
        grid = gh * gw
        n = grid + (1 if config.pool_type == "tok" else 0)
        d, l, m, heads = config.width, config.lru_width, config.mlp_dim, config.num_heads
        embed = 2 * grid * d * 3 * config.patch_size ** 2
        gates = 2 * n * l * (l // heads) * 2 if config.lru_gates else 0
        temporal = 2 * n * d * l * 2 + gates + 2 * n * l * d
        spatial = 2 * n * d * 3 * d + 4 * n * n * d + 2 * n * d * d + 4 * n * d * m
        r = config.rep_size or d
        per_frame = embed + config.depth * (temporal + spatial) + (2 * d * r if config.rep_size else 0)
        clips = max(num_frames // config.frames_per_clip, 1)  # as TRecViT.num_clips
        return batch_size * (num_frames * per_frame + clips * 2 * r * config.num_classes)

    def num_clips(self, num_frames: int) -> int:
        """Clips a video of ``num_frames`` frames is split into (the official rule:
        ``max(num_frames // frames_per_clip, 1)``)."""
        return self.encoder.num_clips(num_frames)

    def embed(self, video: torch.Tensor) -> torch.Tensor:
        """Tokenizer output ``[b * c, t / c, n, d]`` for ``video [b, t, 3, H, W]``."""
        return self.encoder.embed(video)

    def forward(self, video: torch.Tensor) -> TRecViTOutput:
        """Classify ``video [b, t, 3, H, W]`` (float, RGB in [0, 1], channel-first)."""
        return super().forward(video)

    # -------------------------------------------------------------- streaming
    def init_state(self, batch_size: int, image_size: int | tuple[int, int] | None = None,
                   device: torch.device | str | None = None) -> TRecViTState:
        """An empty streaming state for ``batch_size`` streams of frames of
        ``image_size`` (default: ``config.image_size``). See :class:`TRecViTState`."""
        return self.encoder.init_state(batch_size, image_size, device, feature_dim=self.head.feature_dim)

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
        self.encoder.check_stream_input(frame, state, "frame", "B3HW", self.head.feature_dim)
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
        self.encoder.check_stream_input(frames, state, "frames", "BT3HW", self.head.feature_dim)
        return self._advance(frames, state)

    def _advance(self, frames: torch.Tensor, state: TRecViTState
                 ) -> tuple[TRecViTStepOutput, TRecViTState]:
        """:meth:`step_chunk` on checked ``frames [b, t, 3, H, W]``: the trunk, then the
        running mean of the head's per-frame features."""
        encoded, trunk_state = self.encoder.advance(frames, state)  # (b, t, n, d)
        return running_head(self.head, encoded, state, trunk_state)


def running_head(head: ClassificationHead, encoded: torch.Tensor, state, trunk_state):
    """The streaming classifier of every architecture with a ``step``: ``head``'s per-frame
    features of ``encoded [b, t, n, d]`` (the trunk's output for the next ``t`` frames), their
    running mean continuing ``state.feature_sum`` (restarting where ``state.num_frames`` is 0),
    and the head on it (on the current frame's features with ``head.readout == "last"``).
    Returns ``(TRecViTStepOutput, trunk_state with the new feature_sum)``;
    ``state`` is the state before these frames, ``trunk_state`` the one the trunk returned."""
    t = encoded.shape[1]
    first = state.num_frames == 0  # (b,)
    features = head.frame_features(encoded)  # (b, t, r)
    start = torch.where(first[:, None], 0.0, state.feature_sum)  # (b, r)
    # The running sum, frame after frame, continuing the state's sum.
    feature_sum = torch.cat([start[:, None], features.float()], dim=1).cumsum(dim=1)[:, 1:]
    num_frames = state.num_frames[:, None] + torch.arange(1, t + 1, device=encoded.device)  # (b, t)
    if head.readout == "last":  # the current frame's features (the sum is kept all the same)
        pre_logits = features.float()
    else:
        pre_logits = feature_sum / num_frames[..., None]  # running means (b, t, r)
    logits = head(pre_logits.to(features.dtype))
    out = TRecViTStepOutput(encoded=encoded, logits=logits, probs=logits.float().softmax(dim=-1),
                            pre_logits=pre_logits)
    return out, trunk_state._replace(feature_sum=feature_sum[:, -1])
