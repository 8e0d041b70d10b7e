"""ViViT model 1, "spatio-temporal attention" (Arnab et al. 2021, "ViViT: A Video Vision Transformer").

The paper's unfactorised model (its section 3.3, "Model 1"; ViViT-B/L of its Table 6 are this
model with 2x16x16 tubelets): the video is cut into non-overlapping tubelets of
``tubelet_frames x p x p`` pixels (section 3.2, "tubelet embedding", a 3-D convolution with kernel
= stride), a learnt spatio-temporal position embedding is added, a class token is prepended, and
``depth`` pre-norm transformer blocks run FULL self-attention over all ``t' * n (+ 1)`` tokens at
once (``t' = T / tubelet_frames`` tubelet-frames of ``n = (H / p) (W / p)`` tokens). Its cost is
quadratic in the length of the video; it is the reference the TRecViT paper compares against.

This module also holds what the four ViViT baselines share: :class:`ViViTConfig`, the tubelet
embedding (:class:`TubeletEmbedding`), the learnt position embedding resampled over time
(:class:`SpaceTimePositionEmbedding`) and the checks of the input video (:class:`ViViTTrunk`).
The factorised encoder (model 2) is :mod:`trecvit.baselines.vivit_fe`, factorised self-attention
(model 3) :mod:`trecvit.baselines.vivit_fsa`, the causal cViViT :mod:`trecvit.baselines.cvivit`.

Initialisation is the official (scenic) one: Xavier-uniform attention and MLP kernels (as
:class:`~trecvit.layers.SpatialBlock`), a LeCun-normal tubelet convolution with zero bias, position
embeddings ``N(0, 0.02)``, zero class tokens. A video whose number of tubelet-frames differs from
``frames_per_clip / tubelet_frames`` gets the temporal position embedding resampled to its length
(``posemb_resample``: nearest or linear, ``align_corners=False``); the frame size is fixed by the
learnt embedding. The model sees the whole video at once: it is not causal and has no ``step``.

Axis legend: ``b`` batch, ``t`` frames, ``t'`` tubelet-frames, ``n`` tokens per tubelet-frame,
``d`` width, ``r`` pre-logits width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from trecvit.base import ClassifierOutput, VideoClassifier
from trecvit.config import ViTConfigMixin
from trecvit.heads import ClassificationHead
from trecvit.init import init_weights_official, lecun_normal_
from trecvit.layers import SpatialBlock
from trecvit.validation import check_finite, check_frames

_POOL = ("tok", "gap")
_RESAMPLE = ("nearest", "linear")
POSEMB_STD = 0.02  # scenic's learnt position embeddings: N(0, 0.02)


@dataclass
class ViViTConfig(ViTConfigMixin):
    """Hyper-parameters of the ViViT baselines (defaults: ViViT-B/16x2, Kinetics-400).

    Attributes:
        width, depth, num_heads, mlp_dim: the transformer (``depth`` blocks of width ``width``;
            in ``vivit_fe`` the spatial transformer).
        patch_size: spatial side ``p`` of a tubelet.
        tubelet_frames: temporal extent of a tubelet (a tubelet is ``tubelet_frames x p x p``);
            a video must have a multiple of it frames.
        image_size: frame size (int or ``(H, W)``, multiples of ``patch_size``); fixes the
            learnt position embedding.
        frames_per_clip: the clip length the learnt temporal position embedding is built for
            (``frames_per_clip / tubelet_frames`` tubelet-frames); a multiple of ``tubelet_frames``.
        posemb_resample: ``"nearest"`` or ``"linear"``: how the temporal position embedding is
            resampled (``F.interpolate``, ``align_corners=False``) for a video of another length.
        pool_type: ``"tok"`` (a class token) or ``"gap"`` (mean over tokens).
        num_classes: classes of the classifier.
        rep_size: width of the ``tanh`` pre-logits layer; 0 for none.
        temporal_depth: blocks of the temporal transformer (``vivit_fe`` only).
        posemb: ``"learn"``, the only kind.
    """

    width: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_dim: int = 3072
    patch_size: int = 16
    tubelet_frames: int = 2
    image_size: int | tuple[int, int] = 224
    frames_per_clip: int = 32
    posemb_resample: str = "nearest"
    pool_type: str = "tok"
    num_classes: int = 400
    rep_size: int = 768
    temporal_depth: int = 4
    posemb: str = "learn"

    def __post_init__(self) -> None:
        if isinstance(self.image_size, (list, tuple)):
            self.image_size = tuple(int(s) for s in self.image_size)  # type: ignore[assignment]
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent field."""
        name = type(self).__name__
        for field in ("width", "depth", "num_heads", "mlp_dim", "patch_size", "tubelet_frames",
                      "frames_per_clip", "num_classes", "temporal_depth"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}.{field} must be a positive int, got {value!r}")
        if not isinstance(self.rep_size, int) or isinstance(self.rep_size, bool) or self.rep_size < 0:
            raise ValueError(f"{name}.rep_size must be an int >= 0, got {self.rep_size!r}")
        if self.width % self.num_heads:
            raise ValueError(f"{name}.width ({self.width}) must be divisible by num_heads ({self.num_heads})")
        if self.frames_per_clip % self.tubelet_frames:
            raise ValueError(f"{name}.frames_per_clip ({self.frames_per_clip}) must be a multiple of "
                             f"tubelet_frames ({self.tubelet_frames})")
        if self.posemb != "learn":
            raise ValueError(f"{name}.posemb must be 'learn' (learnt spatio-temporal position "
                             f"embedding), got {self.posemb!r}")
        if self.posemb_resample not in _RESAMPLE:
            raise ValueError(f"{name}.posemb_resample must be one of {_RESAMPLE}, got "
                             f"{self.posemb_resample!r}")
        if self.pool_type not in _POOL:
            raise ValueError(f"{name}.pool_type must be one of {_POOL}, got {self.pool_type!r}")
        h, w = self.image_hw
        if h < 1 or w < 1 or h % self.patch_size or w % self.patch_size:
            raise ValueError(f"{name}.image_size {self.image_size!r} must be positive multiples of "
                             f"patch_size ({self.patch_size})")

    @property
    def num_patches(self) -> int:
        """Tokens ``n`` per tubelet-frame at ``image_size``."""
        gh, gw = self.grid_hw
        return gh * gw

    @property
    def posemb_frames(self) -> int:
        """Tubelet-frames ``t'`` of the learnt temporal position embedding."""
        return self.frames_per_clip // self.tubelet_frames

    def tubelet_count(self, num_frames: int) -> int:
        """Tubelet-frames of a ``num_frames``-frame video (``ValueError`` unless a multiple)."""
        if num_frames < 1 or num_frames % self.tubelet_frames:
            raise ValueError(f"a video of {num_frames} frames does not cut into tubelets of "
                             f"{self.tubelet_frames} frames (config.tubelet_frames); use a multiple of "
                             f"{self.tubelet_frames} frames")
        return num_frames // self.tubelet_frames


def block_flops(tokens: int, width: int, mlp_dim: int, keys: int | None = None) -> int:
    """What ``count_flops`` counts in one pre-norm block on ``tokens`` queries attending to
    ``keys`` (default: the same) tokens: qkv and out projections ``8 d^2``, the MLP ``4 d m`` per
    token, the two attention products ``4 d keys`` per query."""
    keys = tokens if keys is None else keys
    return tokens * (8 * width * width + 4 * width * mlp_dim) + 4 * tokens * keys * width


def embed_and_head_flops(config: ViViTConfig, num_frames: int, head_frames: int) -> int:
    """The tubelet convolution of a ``num_frames`` video and a head reading ``head_frames``
    frames (pre-logits on each, the classifier once)."""
    t = config.tubelet_count(num_frames)
    d, r = config.width, config.rep_size or config.width
    embed = 2 * t * config.num_patches * d * 3 * config.tubelet_frames * config.patch_size ** 2
    pre_logits = head_frames * 2 * d * r if config.rep_size else 0
    return embed + pre_logits + 2 * r * config.num_classes


class TubeletEmbedding(nn.Module):
    """Non-overlapping ``tubelet_frames x p x p`` tubelets projected to width ``d``: a ``Conv3d``
    with kernel = stride. ``video [b, t, 3, H, W]`` -> tokens ``[b, t / kt, (H/p)(W/p), d]``
    (row-major over the patch grid).

    Args:
        width: token width ``d``.
        patch_size: ``p``.
        tubelet_frames: ``kt``.
    """

    def __init__(self, width: int, patch_size: int, tubelet_frames: int):
        super().__init__()
        kernel = (tubelet_frames, patch_size, patch_size)
        self.proj = nn.Conv3d(3, width, kernel_size=kernel, stride=kernel)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """LeCun-normal kernel (fan-in ``3 kt p^2``), zero bias."""
        lecun_normal_(self.proj.weight, fan_in=self.proj.weight[0].numel())
        nn.init.zeros_(self.proj.bias)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        x = self.proj(video.transpose(1, 2))  # (b, d, t', H/p, W/p)
        return x.flatten(3).permute(0, 2, 3, 1)  # (b, t', n, d)


class SpaceTimePositionEmbedding(nn.Module):
    """A learnt position embedding ``pos_embed [1, t', n, d]`` of the tubelet tokens (and a learnt
    ``cls_pos [1, 1, d]`` for the class token's position, with ``class_token``).

    For a video of another number of tubelet-frames the embedding is resampled over time with
    ``F.interpolate`` (``resample``: "nearest" or "linear", ``align_corners=False``): nearest on a
    video twice as long repeats each temporal embedding twice.

    Args:
        width: ``d``.
        num_frames: ``t'``, tubelet-frames of the learnt embedding.
        num_tokens: ``n``, tokens per tubelet-frame.
        class_token: also learn ``cls_pos``.
        resample: "nearest" or "linear".
    """

    def __init__(self, width: int, num_frames: int, num_tokens: int, class_token: bool = False,
                 resample: str = "nearest"):
        super().__init__()
        if resample not in _RESAMPLE:
            raise ValueError(f"unknown posemb_resample {resample!r}; expected one of {_RESAMPLE}")
        self.resample = resample
        self.pos_embed = nn.Parameter(torch.empty(1, num_frames, num_tokens, width))
        self.cls_pos = nn.Parameter(torch.empty(1, 1, width)) if class_token else None
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """``N(0, 0.02)``, as scenic."""
        for p in (self.pos_embed, self.cls_pos):
            if p is not None:
                nn.init.normal_(p, std=POSEMB_STD)

    @property
    def num_frames(self) -> int:
        return self.pos_embed.shape[1]

    def resampled(self, num_frames: int) -> torch.Tensor:
        """``[1, num_frames, n, d]``: the learnt embedding, resampled over time if needed."""
        if num_frames == self.num_frames:
            return self.pos_embed
        _, t, n, d = self.pos_embed.shape
        x = self.pos_embed.reshape(1, t, n * d).transpose(1, 2)  # (1, n d, t')
        if self.resample == "nearest":
            x = F.interpolate(x, size=num_frames, mode="nearest")
        else:
            x = F.interpolate(x, size=num_frames, mode="linear", align_corners=False)
        return x.transpose(1, 2).reshape(1, num_frames, n, d)

    def clamped(self, index: torch.Tensor) -> torch.Tensor:
        """``[..., n, d]`` for tubelet-frame indices ``index [...]``: the learnt embedding of that
        index, the last learnt one beyond it (cViViT's rule, the same for a forward and a stream)."""
        return self.pos_embed[0][index.clamp(max=self.num_frames - 1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [b, t', n, d]`` plus the (resampled) embedding."""
        return x + self.resampled(x.shape[1]).to(x.dtype)


class ViViTTrunk(nn.Module):
    """What the ViViT trunks share: the :class:`TubeletEmbedding` (``tokenizer``), the checks of
    a video, ``grad_checkpointing``, ``device`` and ``param_dtype`` (the conventions of
    :class:`~trecvit.encoder.FrameTrunk`, whose one-frame tokenizer does not fit tubelets).

    Args:
        config: a :class:`ViViTConfig`.
    """

    def __init__(self, config: ViViTConfig):
        super().__init__()
        self.config = config
        self.tokenizer = TubeletEmbedding(config.width, config.patch_size, config.tubelet_frames)
        self.grad_checkpointing = False

    @property
    def param_dtype(self) -> torch.dtype:
        return self.tokenizer.proj.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.tokenizer.proj.weight.device

    def check_device(self, x: torch.Tensor, name: str) -> None:
        if x.device != self.device:
            raise ValueError(f"{name} is on {x.device} but the model is on {self.device}; move it with "
                             f"{name}.to({str(self.device)!r})")

    def check_grid(self, hw: tuple[int, int], name: str) -> None:
        """The learnt position embedding fixes the frame size."""
        p = self.config.patch_size
        if (hw[0] // p, hw[1] // p) != self.config.grid_hw:
            h, w = self.config.image_hw
            raise ValueError(f"{name} frames are {hw[0]}x{hw[1]} but this model's learnt position "
                             f"embedding is for {h}x{w} frames (config.image_size); resize the frames")

    def check_video(self, video: torch.Tensor, name: str = "video") -> None:
        """Validate ``video [b, t, 3, H, W]``: shape, frame size, a multiple of ``tubelet_frames``
        frames, device, finite values."""
        check_frames(video, name=name, layout="BT3HW", patch_size=self.config.patch_size)
        self.check_grid(tuple(video.shape[-2:]), name)
        self.config.tubelet_count(video.shape[1])
        self.check_device(video, name)
        check_finite(video, name=name, dtype=self.param_dtype)

    def tokens(self, video: torch.Tensor) -> torch.Tensor:
        """Checked ``video [b, t, 3, H, W]`` -> tubelet tokens ``[b, t', n, d]``."""
        return self.tokenizer(video.to(self.param_dtype))

    def run(self, block: nn.Module, x: torch.Tensor, *args) -> torch.Tensor:
        """``block(x, *args)``, its activations recomputed in the backward pass with
        ``grad_checkpointing``."""
        if self.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint(block, x, *args, use_reentrant=False)
        return block(x, *args)


class ViViTEncoder(ViViTTrunk):
    """The ViViT model 1 trunk: tubelets + position embedding, a class token (``tok``),
    ``depth`` blocks of full self-attention over all tokens, final LayerNorm.

    ``forward(video [b, t, 3, H, W])`` -> ``encoded [b, 1, (1 +) t' n, d]``: every token as one
    "frame", the class token first (so the head reads token 0, or averages all with ``gap``).
    """

    def __init__(self, config: ViViTConfig):
        super().__init__(config)
        tok = config.pool_type == "tok"
        self.posemb = SpaceTimePositionEmbedding(config.width, config.posemb_frames, config.num_patches,
                                                 class_token=tok, resample=config.posemb_resample)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.width)) if tok else None
        self.blocks = nn.ModuleList(SpatialBlock(config.width, config.num_heads, config.mlp_dim)
                                    for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.width, eps=1e-6)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The class token only (the layers initialise themselves): zeros."""
        if self.cls_token is not None:
            nn.init.zeros_(self.cls_token)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        self.check_video(video)
        x = self.posemb(self.tokens(video))  # (b, t', n, d)
        b, d = x.shape[0], x.shape[-1]
        x = x.reshape(b, -1, d)  # (b, t' n, d), tubelet-frame after tubelet-frame
        if self.cls_token is not None:
            cls = (self.cls_token + self.posemb.cls_pos).to(x.dtype).expand(b, -1, -1)
            x = torch.cat([cls, x], dim=1)  # (b, 1 + t' n, d)
        for block in self.blocks:
            x = self.run(block, x)
        return self.norm(x)[:, None]  # (b, 1, (1 +) t' n, d)


class ViViT(VideoClassifier):
    """ViViT model 1 (unfactorised spatio-temporal attention), Arnab et al. 2021.

    Args:
        config: a :class:`ViViTConfig` (default: ViViT-B/16x2 for Kinetics-400).

    ``self.encoder`` is :class:`ViViTEncoder`, ``self.head`` TRecViT's classification head on the
    class token (``tok``) or the mean of all tokens (``gap``). A video is one clip of any multiple
    of ``tubelet_frames`` frames. Not causal; no ``step``.
    """

    arch = "vivit"
    config_class = ViViTConfig

    def __init__(self, config: ViViTConfig | None = None):
        super().__init__(config if config is not None else ViViTConfig())
        config = self.config
        self.encoder = ViViTEncoder(config)
        self.head = ClassificationHead(config.width, config.rep_size, config.num_classes, config.pool_type)
        init_weights_official(self)

    def forward(self, video: torch.Tensor) -> ClassifierOutput:
        """Classify ``video [b, t, 3, H, W]`` (float, RGB in [0, 1], channel-first)."""
        return super().forward(video)

    @classmethod
    def analytic_flops(cls, config: ViViTConfig, num_frames: int, batch_size: int = 1) -> int:
        """Forward FLOPs of ``batch_size`` videos of ``num_frames`` frames, from the config alone.

        What :func:`trecvit.tools.profiling.count_flops` counts (1 multiply-add = 2 FLOPs): the
        tubelet convolution ``2 t' n d 3 kt p^2``; per block on ``N = t' n (+ 1)`` tokens the
        projections ``N (8 d^2 + 4 d m)`` and full attention ``4 N^2 d``; the head ``2 d r +
        2 r classes``. Norms, activations and the softmax are not counted.
        """
        tokens = config.tubelet_count(num_frames) * config.num_patches + int(config.pool_type == "tok")
        trunk = config.depth * block_flops(tokens, config.width, config.mlp_dim)
        return batch_size * (trunk + embed_and_head_flops(config, num_frames, head_frames=1))


__all__ = ["SpaceTimePositionEmbedding", "TubeletEmbedding", "ViViT", "ViViTConfig", "ViViTEncoder",
           "ViViTTrunk"]
