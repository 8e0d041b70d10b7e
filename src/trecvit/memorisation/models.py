"""The two models of the long-video memorisation task (paper section 5.4, Table 6).

Both reconstruct one past frame of the video (the ``k``-th) from their outputs as a frame
``[b, 3, H, W]``:

* :class:`TRecViTMemoriser`: a :class:`~trecvit.encoder.TRecViTEncoder` over the whole video
  (causal, one clip however long: the clip split of ``frames_per_clip`` is bypassed), of whose
  output only the **last frame's** patch tokens are kept (a class token, if any, is dropped);
  a linear map per token gives its patch's ``p * p * 3`` pixels, reshaped to the frame. All
  the model knows of frame ``k`` after frame ``T`` is what its recurrent state kept.
* :class:`ViViTMemoriser`: ViViT model 1 (:class:`~trecvit.baselines.vivit.ViViTEncoder`, full
  spatio-temporal attention, one-frame tubelets by default) whose outputs at **all** time steps
  are averaged over time (temporal pooling) before the same per-token linear map (the paper's
  "1 x 1 convolution"). Its learnt temporal position embedding has ``frames_per_clip`` entries
  (the training length); a longer test video gets it resampled by nearest neighbour (the
  paper's choice) or linearly, switchable on a trained model (:meth:`ViViTMemoriser.resampling`).

The reconstruction head starts at zero weights and a bias of 0.5, so both models start from the
mid-grey frame (a random head adds a large error the trunk first has to undo; with zero weights
a 200-step TRecViT run reached 16.8 dB instead of 14.4 dB). The trunks keep their own
(official) initialisation.

Axis legend: ``b`` videos, ``t`` frames, ``n`` tokens per frame, ``N`` patches per frame,
``d`` width, ``P = p * p * 3`` pixel values per patch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import ClassVar

import torch
from torch import nn

from trecvit.baselines.vivit import ViViTConfig, ViViTEncoder
from trecvit.config import VARIANTS, TRecViTConfig
from trecvit.encoder import TRecViTEncoder
from trecvit.init import init_weights_official
from trecvit.mae.loss import unpatchify

# Sizes (width, depth, mlp_dim, num_heads) of this task's defaults, besides the ViT sizes of
# trecvit.config.VARIANTS: "mem" is "mu" three layers deep, small enough to train on 2 CPU cores
# in minutes; the ViViT "mem" (five layers) has about as many parameters as the TRecViT one.
TRECVIT_SIZES: dict[str, tuple[int, int, int, int]] = {"mem": (32, 3, 128, 2)}
VIVIT_SIZES: dict[str, tuple[int, int, int, int]] = {"mem": (32, 5, 128, 2)}
# TRecViT's RG-LRU eigenvalue range at initialisation for this task (the paper's Figure 2 compares
# ranges on it): [0.99, 0.9999] instead of the classifier's [0.5, 0.999]. With the classifier's
# range the state forgets frame k within a few frames at initialisation and a 1,500-step run does
# not learn the task at all (13.9 dB at T = 64, the clip-mean baseline); with this one it reaches 17.7 dB.
TRECVIT_TASK_FIELDS = {"min_rad": 0.99, "max_rad": 0.9999}


class PixelHead(nn.Module):
    """The per-token linear map to a patch's pixels (a 1 x 1 convolution over the patch grid):
    ``tokens [b, N, d]`` -> ``frame [b, 3, H, W]``.

    Args:
        width: ``d``.
        patch_size: ``p``.
        grid_hw: the patch grid ``(H / p, W / p)``.
    """

    def __init__(self, width: int, patch_size: int, grid_hw: tuple[int, int]):
        super().__init__()
        self.patch_size = patch_size
        self.grid_hw = tuple(grid_hw)
        self.proj = nn.Linear(width, patch_size * patch_size * 3)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Zero weights, bias 0.5: the untrained head outputs a mid-grey frame."""
        nn.init.zeros_(self.proj.weight)
        nn.init.constant_(self.proj.bias, 0.5)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        lead = tokens.shape[:-2]
        patches = self.proj(tokens).reshape(-1, 1, tokens.shape[-2], self.proj.out_features)  # (B, 1, N, P)
        frames = unpatchify(patches, self.patch_size, self.grid_hw)  # (B, 1, 3, H, W)
        return frames.reshape(*lead, *frames.shape[2:])  # (..., 3, H, W)


class TRecViTMemoriser(nn.Module):
    """TRecViT with the last-step readout: ``video [b, T, 3, H, W]`` -> frame ``[b, 3, H, W]``.

    Args:
        config: the encoder's :class:`~trecvit.config.TRecViTConfig` (its head fields and
            ``frames_per_clip`` are not used: the video is always one clip).
    """

    arch: ClassVar[str] = "trecvit_memoriser"
    config_class: ClassVar[type] = TRecViTConfig

    def __init__(self, config: TRecViTConfig):
        super().__init__()
        self.config = config
        self.encoder = TRecViTEncoder(config)
        self.head = PixelHead(config.width, config.patch_size, config.grid_hw)
        init_weights_official(self)

    def readout(self, video: torch.Tensor) -> torch.Tensor:
        """The reconstruction after **every** frame: ``[b, T, 3, H, W]``; entry ``t`` depends on
        frames ``<= t`` only (the encoder is causal), so it is the prediction of the first
        ``t + 1`` frames alone."""
        return self.head(self._patch_tokens(video))  # (b, T, 3, H, W)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """The frame reconstructed from the last frame's tokens: ``[b, 3, H, W]``."""
        return self.head(self._patch_tokens(video)[:, -1])  # (b, 3, H, W)

    def _patch_tokens(self, video: torch.Tensor) -> torch.Tensor:
        """The encoder's patch tokens of every frame, ``[b, T, N, d]``: the checked video as one
        clip (however long), the class token dropped."""
        self.encoder.check_video(video)
        encoded, _, _ = self.encoder.encode(self.encoder.tokens(video))  # (b, T, n, d)
        return encoded[:, :, self.encoder.tokenizer.num_prefix_tokens:]


class ViViTMemoriser(nn.Module):
    """ViViT model 1 with temporal pooling: ``video [b, T, 3, H, W]`` -> frame ``[b, 3, H, W]``.

    Args:
        config: the encoder's :class:`~trecvit.baselines.vivit.ViViTConfig`; ``frames_per_clip``
            is the length of the learnt temporal position embedding (the training length),
            ``posemb_resample`` how it is resampled for other lengths.
    """

    arch: ClassVar[str] = "vivit_memoriser"
    config_class: ClassVar[type] = ViViTConfig

    def __init__(self, config: ViViTConfig):
        super().__init__()
        self.config = config
        self.encoder = ViViTEncoder(config)
        self.head = PixelHead(config.width, config.patch_size, config.grid_hw)
        init_weights_official(self)

    @property
    def posemb_resample(self) -> str:
        """How the temporal position embedding is resampled now: "nearest" or "linear"."""
        return self.encoder.posemb.resample

    def set_posemb_resample(self, mode: str) -> None:
        """Switch the resampling of the temporal position embedding (no weight changes)."""
        config = self.config.replace(posemb_resample=mode)  # validates the mode
        self.config = self.encoder.config = config
        self.encoder.posemb.resample = mode

    @contextlib.contextmanager
    def resampling(self, mode: str) -> Iterator["ViViTMemoriser"]:
        """``with model.resampling("linear"): ...`` evaluates with that resampling, then restores."""
        previous = self.posemb_resample
        self.set_posemb_resample(mode)
        try:
            yield self
        finally:
            self.set_posemb_resample(previous)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """All outputs, averaged over time, through the pixel head: ``[b, 3, H, W]``."""
        encoded = self.encoder(video)[:, 0]  # (b, (1 +) t' n, d)
        if self.encoder.cls_token is not None:
            encoded = encoded[:, 1:]  # the class token is not a patch
        b, n = encoded.shape[0], self.config.num_patches
        per_frame = encoded.reshape(b, -1, n, encoded.shape[-1])  # (b, t', n, d)
        return self.head(per_frame.mean(dim=1))  # (b, 3, H, W)


MODEL_CLASSES: dict[str, type[nn.Module]] = {"trecvit": TRecViTMemoriser, "vivit": ViViTMemoriser}
_SIZES = {"trecvit": TRECVIT_SIZES, "vivit": VIVIT_SIZES}


def size_names(kind: str) -> list[str]:
    """The variant names ``build_config`` accepts for model ``kind``."""
    return [*_SIZES[kind], *VARIANTS]


def build_config(kind: str, variant: str, *, image_size: int, patch_size: int, train_frames: int,
                 overrides: dict | None = None) -> TRecViTConfig | ViViTConfig:
    """The config of memorisation model ``kind`` ("trecvit" or "vivit") of size ``variant`` (a
    name of :data:`TRECVIT_SIZES` / :data:`VIVIT_SIZES` or a ViT size of
    :data:`~trecvit.config.VARIANTS`), with ``overrides`` (config fields) applied last.

    TRecViT: no class token (``pool_type="gap"``), the eigenvalue range
    :data:`TRECVIT_TASK_FIELDS`. ViViT: one-frame tubelets, no class token, the temporal position
    embedding learnt for ``train_frames`` frames (``frames_per_clip``)."""
    if kind not in MODEL_CLASSES:
        raise ValueError(f"unknown memorisation model {kind!r}; expected one of {', '.join(MODEL_CLASSES)}")
    sizes = {**VARIANTS, **_SIZES[kind]}
    if variant not in sizes:
        raise ValueError(f"unknown {kind} variant {variant!r} for the memorisation task; known: "
                         f"{', '.join(size_names(kind))}")
    width, depth, mlp_dim, num_heads = sizes[variant]
    fields = dict(width=width, depth=depth, mlp_dim=mlp_dim, num_heads=num_heads, patch_size=patch_size,
                  image_size=image_size, pool_type="gap", num_classes=1, rep_size=0,
                  frames_per_clip=train_frames)
    if kind == "vivit":
        fields["tubelet_frames"] = 1
    else:
        fields.update(TRECVIT_TASK_FIELDS)
    fields.update(overrides or {})
    return MODEL_CLASSES[kind].config_class.from_dict(fields)


def build_model(kind: str, config: TRecViTConfig | ViViTConfig) -> nn.Module:
    """A freshly initialised :class:`TRecViTMemoriser` or :class:`ViViTMemoriser`."""
    return MODEL_CLASSES[kind](config)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
