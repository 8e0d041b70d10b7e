"""The masked video autoencoder: a TRecViT encoder over the visible tubes, a small causal TRecViT decoder.

The encoder is :class:`~trecvit.encoder.TRecViTEncoder`, unchanged: frames are
tokenised (position embeddings added), then the masked patch positions are
dropped *before* the first layer, so each encoder layer runs its temporal
block (the recurrence) over the kept positions only and its spatial attention
over the kept tokens of each frame. At mask ratio 0.9 the encoder sees a tenth
of the tokens, which is what makes pre-training cheap.

The decoder (:class:`MAEDecoder`) is a small TRecViT (temporal and spatial
blocks, the same layers as the encoder's) over the full token grid: the
encoded visible tokens projected to its width and put back in their places, a
learnt mask token everywhere else, a fixed 2-D sin-cos position embedding on
all of them; a linear map then predicts the pixels of every patch of every
frame. Both halves are causal over time, so the whole autoencoder also runs
frame by frame (:meth:`MaskedAutoencoder.step`) and the reconstruction of
frame ``t`` depends on frames ``<= t`` only.

Default decoder size (VideoMAE's light decoder): half the encoder's width,
4 layers, half its heads, an MLP of 4x its width; for TRecViT-S (384 wide, 12
layers) that is 192 wide, 4 layers, 3 heads: 3.3 M parameters against the
encoder's 34.7 M.

Axis legend: ``b`` videos, ``c`` clips, ``t`` frames, ``N`` patches per frame,
``k`` kept patches, ``n`` encoder tokens per frame (``k`` plus the class
token), ``d`` width, ``P = p * p * 3`` pixel values per patch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from trecvit.checkpoints import pretrained as folder_format
from trecvit.config import TRecViTConfig
from trecvit.encoder import TRecViTEncoder, TRecViTLayer, run_layers
from trecvit.init import init_weights_official
from trecvit.mae.loss import pixels_from_prediction
from trecvit.mae.masking import check_keep, check_mask_ratio
from trecvit.validation import check_known_fields
from trecvit.tokenizer import sincos2d_posemb


@dataclass
class MAEConfig:
    """Hyper-parameters of :class:`MaskedAutoencoder`.

    Attributes:
        encoder: the TRecViT encoder's config (its head fields are not used here).
        decoder_width: width of the decoder (``None``: half the encoder's); divisible by 4
            and by ``decoder_heads``.
        decoder_depth: decoder layers, each a temporal and a spatial block (4).
        decoder_heads: attention heads of the decoder (``None``: half the encoder's, at least 1).
        decoder_mlp_dim: hidden width of the decoder's MLPs (``None``: 4x ``decoder_width``).
        mask_ratio: the fraction of patch tubes hidden in pre-training (0.9), the default of
            ``trecvit reconstruct``.
        norm_pix_loss: the targets are each patch's pixels normalised by their own mean and
            standard deviation (VideoMAE's variant) instead of plain pixels in [0, 1].
        masked_loss: the loss counts the masked patches only (VideoMAE's variant) instead of
            the entire frames (the paper's).
    """

    encoder: TRecViTConfig = dataclasses.field(default_factory=TRecViTConfig)
    decoder_width: int | None = None
    decoder_depth: int = 4
    decoder_heads: int | None = None
    decoder_mlp_dim: int | None = None
    mask_ratio: float = 0.9
    norm_pix_loss: bool = False
    masked_loss: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.encoder, dict):
            self.encoder = TRecViTConfig.from_dict(self.encoder)
        if not isinstance(self.encoder, TRecViTConfig):
            raise ValueError(f"MAEConfig.encoder must be a TRecViTConfig, got {type(self.encoder).__name__}")
        if self.decoder_width is None:
            self.decoder_width = self.encoder.width // 2
        if self.decoder_heads is None:
            self.decoder_heads = max(self.encoder.num_heads // 2, 1)
        if self.decoder_mlp_dim is None:
            self.decoder_mlp_dim = 4 * self.decoder_width
        self.mask_ratio = check_mask_ratio(self.mask_ratio, "MAEConfig.mask_ratio")
        for name in ("norm_pix_loss", "masked_loss"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"MAEConfig.{name} must be true or false, got {getattr(self, name)!r}")
        if self.decoder_width % 4:
            raise ValueError(f"MAEConfig.decoder_width ({self.decoder_width}) must be divisible by 4 "
                             "(the decoder's sin-cos position embedding)")
        try:
            self.decoder_config  # noqa: B018  (validates the decoder's sizes)
        except ValueError as err:
            raise ValueError(str(err).replace("TRecViTConfig.", "MAEConfig.decoder_")) from None

    @property
    def decoder_config(self) -> TRecViTConfig:
        """The decoder as a TRecViT config (its layers are TRecViT layers)."""
        enc = self.encoder
        return TRecViTConfig(width=self.decoder_width, depth=self.decoder_depth,
                             num_heads=self.decoder_heads, mlp_dim=self.decoder_mlp_dim,
                             patch_size=enc.patch_size, image_size=enc.image_size,
                             posemb="sincos2d", pool_type="gap", conv1d_width=enc.conv1d_width,
                             min_rad=enc.min_rad, max_rad=enc.max_rad, num_classes=1, rep_size=0,
                             frames_per_clip=enc.frames_per_clip)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["encoder"] = self.encoder.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MAEConfig":
        """Build from a dict (the encoder as a dict of TRecViTConfig fields), refusing unknown fields."""
        check_known_fields(data, cls, "MAEConfig field(s)")
        return cls(**data)

    def replace(self, **changes: Any) -> "MAEConfig":
        return self.from_dict({**self.to_dict(), **changes})


class MAEOutput(NamedTuple):
    """Output of :meth:`MaskedAutoencoder.forward`.

    Attributes:
        pred: ``[b, t, N, P]``: the predicted targets of every patch of every frame (pixels in
            [0, 1], or per-patch normalised pixels with ``norm_pix_loss``).
        encoded: ``[b * c, t / c, n, d]``: the encoder's output on the visible tokens.
    """

    pred: torch.Tensor
    encoded: torch.Tensor


class MAEState(NamedTuple):
    """The streaming state of :meth:`MaskedAutoencoder.step`: per layer, the conv and RG-LRU
    states of the encoder (over the kept tokens) and of the decoder (over all patches), and
    the frames seen."""

    encoder_conv: torch.Tensor  # [depth, b, K-1, n, l]
    encoder_lru: torch.Tensor  # [depth, b, n, l]
    decoder_conv: torch.Tensor  # [decoder_depth, b, K-1, N, l_dec]
    decoder_lru: torch.Tensor  # [decoder_depth, b, N, l_dec]
    num_frames: torch.Tensor  # [b] int64


def _run_layers(layers: nn.ModuleList, x: torch.Tensor, conv: torch.Tensor | None, lru: torch.Tensor | None,
                first: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`~trecvit.encoder.run_layers` with the new states stacked over layers."""
    x, convs, lrus = run_layers(layers, x, conv, lru, first)
    return x, torch.stack(convs), torch.stack(lrus)


class MAEDecoder(nn.Module):
    """The light causal decoder: visible encoded tokens + mask tokens -> pixels of every patch."""

    def __init__(self, config: MAEConfig):
        super().__init__()
        dec = config.decoder_config
        self.config = dec
        self.embed = nn.Linear(config.encoder.width, dec.width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, 1, dec.width))
        self.register_buffer("pos_embed", sincos2d_posemb(*dec.grid_hw, dec.width), persistent=False)
        self.blocks = nn.ModuleList(TRecViTLayer(dec) for _ in range(dec.depth))
        self.norm = nn.LayerNorm(dec.width, eps=1e-6)
        self.pred = nn.Linear(dec.width, dec.patch_size ** 2 * 3)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Xavier-uniform input and output maps, zero biases, mask token ``N(0, 0.02^2)``
        (VideoMAE's); the layers initialise as the encoder's."""
        for lin in (self.embed, self.pred):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)
        nn.init.normal_(self.mask_token, std=0.02)

    def position_embedding(self, grid_hw: tuple[int, int]) -> torch.Tensor:
        if tuple(grid_hw) == self.config.grid_hw:
            return self.pos_embed
        return sincos2d_posemb(*grid_hw, self.config.width, device=self.pos_embed.device)

    def fill(self, visible: torch.Tensor, keep: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
        """``visible [b, t, k, d_enc]`` (patch tokens, in ``keep``'s order) -> the full grid
        ``[b, t, N, d_dec]``: projected tokens at ``keep``, the mask token elsewhere, plus the
        position embedding."""
        b, t, k, _ = visible.shape
        num_patches = grid_hw[0] * grid_hw[1]
        x = self.embed(visible)  # (b, t, k, dd)
        full = self.mask_token.to(x.dtype).expand(b, t, num_patches, x.shape[-1])
        full = full.scatter(2, keep[:, None, :, None].expand(b, t, k, x.shape[-1]), x)
        return full + self.position_embedding(grid_hw).to(x.dtype)[:, None]

    def forward(self, visible: torch.Tensor, keep: torch.Tensor, grid_hw: tuple[int, int],
                conv: torch.Tensor | None = None, lru: torch.Tensor | None = None,
                first: torch.Tensor | None = None):
        """``(pred [b, t, N, P], conv state, lru state)``."""
        x, conv, lru = _run_layers(self.blocks, self.fill(visible, keep, grid_hw), conv, lru, first)
        return self.pred(self.norm(x)), conv, lru


class MaskedAutoencoder(nn.Module):
    """TRecViT masked video autoencoder (tube masking, VideoMAE's recipe).

    Args:
        config: the encoder's and decoder's sizes and the loss variant.

    ``forward(video, keep)`` takes ``video [b, t, 3, H, W]`` (RGB in [0, 1]) and
    ``keep [b, k]``, the patch positions each video shows (from
    :class:`~trecvit.mae.masking.TubeMasking`), and predicts every patch.
    ``self.encoder`` is a plain TRecViT trunk: its weights load into
    :class:`trecvit.TRecViT` as they are.
    """

    arch: ClassVar[str] = "trecvit_mae"

    def __init__(self, config: MAEConfig | None = None):
        super().__init__()
        self.config = config if config is not None else MAEConfig()
        if not isinstance(self.config, MAEConfig):
            raise TypeError(f"MaskedAutoencoder takes an MAEConfig, got {type(self.config).__name__}")
        self.encoder = TRecViTEncoder(self.config.encoder)
        self.decoder = MAEDecoder(self.config)
        init_weights_official(self)

    @property
    def device(self) -> torch.device:
        return self.encoder.device

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute the encoder layers' activations in the backward pass (less memory)."""
        self.encoder.grad_checkpointing = enable

    @property
    def patch_size(self) -> int:
        return self.config.encoder.patch_size

    def grid(self, video: torch.Tensor) -> tuple[int, int]:
        """The patch grid of ``video``'s frames."""
        return video.shape[-2] // self.patch_size, video.shape[-1] // self.patch_size

    def _kept_tokens(self, tokens: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """``tokens [b, t, prefix + N, d]`` -> ``[b, t, prefix + k, d]``: the class token (when
        there is one) and the kept patches, gathered after the position embedding was added."""
        b, t, _, d = tokens.shape
        prefix = self.encoder.tokenizer.num_prefix_tokens
        index = keep + prefix
        if prefix:  # the class token(s) first
            index = torch.cat([torch.arange(prefix, device=index.device).expand(b, prefix), index], dim=1)
        return tokens.gather(2, index[:, None, :, None].expand(b, t, index.shape[1], d))

    def encode_visible(self, video: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """The encoder on the visible tubes only: ``encoded [b * c, t / c, n, d]`` (class token
        first when the encoder has one, then the kept patches in ``keep``'s order). With every
        patch kept, in order, this is exactly ``self.encoder(video)``."""
        num_clips = self.encoder.check_clips(video)
        b, t = video.shape[:2]
        gh, gw = self.grid(video)
        check_keep(keep, b, gh * gw)
        kept = self._kept_tokens(self.encoder.tokens(video), keep.to(video.device).long())  # (b, t, n, d)
        kept = kept.reshape(b * num_clips, t // num_clips, *kept.shape[2:])  # (b c, t/c, n, d)
        encoded, _, _ = self.encoder.encode(kept)
        return encoded

    def forward(self, video: torch.Tensor, keep: torch.Tensor) -> MAEOutput:
        """Predict every patch of ``video [b, t, 3, H, W]`` from the patches at ``keep [b, k]``."""
        encoded = self.encode_visible(video, keep)  # (b c, t/c, n, d)
        b, t = video.shape[:2]
        clips = encoded.shape[0] // b
        keep = keep.to(video.device).long().repeat_interleave(clips, dim=0)  # (b c, k)
        prefix = self.encoder.tokenizer.num_prefix_tokens
        pred, _, _ = self.decoder(encoded[:, :, prefix:], keep, self.grid(video))  # (b c, t/c, N, P)
        return MAEOutput(pred=pred.reshape(b, t, *pred.shape[2:]), encoded=encoded)

    @torch.no_grad()
    def reconstruct(self, video: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Reconstructed frames ``[b, t, 3, H, W]``, pixels in [0, 1] (with ``norm_pix_loss``,
        each predicted patch is given the true patch's mean and spread, as VideoMAE shows them)."""
        pred = self.forward(video, keep).pred.float()
        return pixels_from_prediction(pred, video.float(), self.patch_size, self.config.norm_pix_loss)

    # -------------------------------------------------------------- streaming
    def init_state(self, batch_size: int, num_keep: int, image_size: int | tuple[int, int] | None = None,
                   device: torch.device | str | None = None) -> MAEState:
        """An empty state for ``batch_size`` streams showing ``num_keep`` patches each."""
        enc, dec = self.config.encoder, self.config.decoder_config
        probe = self.encoder.init_state(batch_size, image_size, device)  # checks the frame size
        num_patches = probe.lru.shape[2] - self.encoder.tokenizer.num_prefix_tokens
        n = num_keep + self.encoder.tokenizer.num_prefix_tokens
        device = probe.lru.device
        zeros = dict(dtype=torch.float32, device=device)
        return MAEState(
            encoder_conv=torch.zeros(enc.depth, batch_size, enc.conv1d_width - 1, n, enc.lru_width, **zeros),
            encoder_lru=torch.zeros(enc.depth, batch_size, n, enc.lru_width, **zeros),
            decoder_conv=torch.zeros(dec.depth, batch_size, dec.conv1d_width - 1, num_patches, dec.lru_width,
                                     **zeros),
            decoder_lru=torch.zeros(dec.depth, batch_size, num_patches, dec.lru_width, **zeros),
            num_frames=torch.zeros(batch_size, dtype=torch.int64, device=device))

    @torch.no_grad()
    def step(self, frame: torch.Tensor, keep: torch.Tensor, state: MAEState) -> tuple[torch.Tensor, MAEState]:
        """One frame ``[b, 3, H, W]`` of ``b`` streams with their fixed masks ``keep [b, k]`` ->
        ``(pred [b, N, P], new state)``; equal to frame ``t`` of :meth:`forward` on the whole clip."""
        self.encoder.check_video(frame[:, None], "frame")
        gh, gw = self.grid(frame)
        check_keep(keep, frame.shape[0], gh * gw)
        if state.encoder_lru.shape[2] != keep.shape[1] + self.encoder.tokenizer.num_prefix_tokens:
            raise ValueError(f"the state is for {state.encoder_lru.shape[2]} encoder tokens but keep shows "
                             f"{keep.shape[1]} patches; make it with init_state(num_keep={keep.shape[1]})")
        keep = keep.to(frame.device).long()
        first = state.num_frames == 0
        kept = self._kept_tokens(self.encoder.tokens(frame[:, None]), keep)  # (b, 1, n, d)
        x, enc_conv, enc_lru = _run_layers(self.encoder.blocks, kept, state.encoder_conv, state.encoder_lru,
                                           first)
        encoded = self.encoder.norm(x)
        prefix = self.encoder.tokenizer.num_prefix_tokens
        pred, dec_conv, dec_lru = self.decoder(encoded[:, :, prefix:], keep, (gh, gw), state.decoder_conv,
                                               state.decoder_lru, first)
        return pred[:, 0], MAEState(enc_conv, enc_lru, dec_conv, dec_lru, state.num_frames + 1)

    # ----------------------------------------------------------- serialisation
    def save_pretrained(self, directory: str | Path,
                        preprocessor: folder_format.PreprocessorConfig | None = None) -> Path:
        """Write ``config.json`` (``"arch": "trecvit_mae"``) and ``model.safetensors``."""
        return folder_format.save_pretrained(self, directory, preprocessor=preprocessor)

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str | torch.device = "cpu"
                        ) -> "MaskedAutoencoder":
        """Load a folder written by :meth:`save_pretrained` (e.g. a pre-training run's
        ``autoencoder/``); a folder of another architecture is refused, naming it."""
        return folder_format.load_folder(directory, MAEConfig.from_dict, cls, map_location, expect=(
            cls.arch, "a masked autoencoder", "pass the autoencoder/ folder of a `trecvit pretrain` run"))
