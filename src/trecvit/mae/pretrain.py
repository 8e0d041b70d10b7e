"""Masked-autoencoder pre-training, the loop behind ``trecvit pretrain``.

:class:`Pretrainer` is the supervised :class:`~trecvit.training.Trainer` with
the masked autoencoder's hooks: the same data pipeline, schedule, accumulation,
bfloat16, DDP under ``torchrun``, atomic checkpoints and exact ``--resume``;
the labels of the data are ignored. Tube masks are drawn in the loop, outside
the model, from ``(seed, step, video index)`` (:class:`~trecvit.mae.masking.TubeMasking`),
so a resumed run sees the masks of an uninterrupted one. Held-out clips are
scored by reconstruction PSNR against the trivial mean-colour baseline, with
fixed masks (seeded by ``seed + 1``).

A run folder ends with ``model/``, the encoder alone as a plain TRecViT
``save_pretrained`` folder (its classification head is untrained: ``trecvit
train --init RUN/model`` fine-tunes it, ``trecvit probe`` reads its features),
and ``autoencoder/``, encoder and decoder, for ``trecvit reconstruct``.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from trecvit.checkpoints.pretrained import PreprocessorConfig
from trecvit.mae.loss import mean_colour_baseline, pixels_from_prediction, psnr, reconstruction_loss
from trecvit.mae.masking import TubeMasking, check_mask_ratio
from trecvit.mae.model import MAEConfig, MaskedAutoencoder
from trecvit.training import distributed
from trecvit.training.config import DATA_FORMATS, TrainConfig, field_docs
from trecvit.training.data import build_datasets, clip_options, eval_loader, train_augmentation
from trecvit.training.trainer import Trainer, build_model

logger = logging.getLogger(__name__)

CSV_FIELDS = ("step", "epoch", "split", "loss", "psnr", "baseline_psnr", "lr", "clips_per_s", "skipped")
EVAL_MASK_SEED_OFFSET = 1  # held-out clips are masked with seed + 1, the same masks at every evaluation


@dataclass
class PretrainConfig(TrainConfig):
    """Everything that defines a pre-training run: the fields of :class:`TrainConfig` (but the
    classification-only ones) and the masked autoencoder's. Defaults: the synthetic clips.
    """

    data_formats = (*DATA_FORMATS, "videos")
    unused_fields = ("arch", "eval_views", "mixup", "cutmix", "label_smoothing", "ema_decay")
    unused_by = "masked-autoencoder pre-training (it has no labels or views)"

    out_dir: str = field(default="runs/mae", metadata={"help": (
        "the run folder, which gets config.yaml, metrics.csv, checkpoints/, tensorboard/, curves.png, "
        "model/ (the encoder as a TRecViT save_pretrained folder) and autoencoder/ (encoder and "
        "decoder, for trecvit reconstruct)")})
    data: str = field(default="synthetic", metadata={"help": (
        "the dataset format; its labels are ignored: videos (every video file under --train-data), "
        "synthetic (built in, no files), folder, csv, kinetics or ssv2 (as trecvit train)")})
    beta2: float = field(default=0.95, metadata={"help": (
        "AdamW's beta2, the decay of the squared gradient's moving average (0.95 as VideoMAE)")})
    mask_ratio: float = field(default=0.9, metadata={"help": (
        "the fraction of patch tubes hidden from the encoder, in [0, 1): one random mask over the "
        "patch grid per video, the same in every frame")})
    decoder_width: int | None = field(default=None, metadata={"help": (
        "width of the decoder, divisible by 4 and decoder_heads (none: half the encoder's width)")})
    decoder_depth: int = field(default=4, metadata={"help": (
        "layers of the decoder, each a temporal and a spatial block")})
    decoder_heads: int | None = field(default=None, metadata={"help": (
        "attention heads of the decoder (none: half the encoder's, at least 1)")})
    decoder_mlp_dim: int | None = field(default=None, metadata={"help": (
        "hidden width of the decoder's MLPs (none: 4x decoder_width)")})
    norm_pix_loss: bool = field(default=False, metadata={"help": (
        "reconstruct each patch's pixels normalised by their own mean and standard deviation "
        "(VideoMAE's variant) instead of plain pixels")})
    masked_loss: bool = field(default=False, metadata={"help": (
        "compute the loss on the masked patches only (VideoMAE's variant) instead of the entire "
        "frames (the paper's)")})

    def validate(self) -> None:
        super().validate()
        if self.arch != "trecvit":
            raise ValueError(f"PretrainConfig.arch must be 'trecvit' (the encoder pre-trained), "
                             f"got {self.arch!r}")
        check_mask_ratio(self.mask_ratio, "PretrainConfig.mask_ratio")

    def mae_config(self, encoder) -> MAEConfig:
        """The autoencoder's config around the TRecViT ``encoder`` config."""
        return MAEConfig(encoder=encoder, decoder_width=self.decoder_width, decoder_depth=self.decoder_depth,
                         decoder_heads=self.decoder_heads, decoder_mlp_dim=self.decoder_mlp_dim,
                         mask_ratio=self.mask_ratio, norm_pix_loss=self.norm_pix_loss,
                         masked_loss=self.masked_loss)


PretrainConfig.__doc__ = f"{inspect.cleandoc(PretrainConfig.__doc__ or '')}\n\n{field_docs(PretrainConfig)}"


@dataclass
class ReconstructionResult:
    """Held-out reconstruction quality (means over videos)."""

    loss: float
    psnr: float
    baseline_psnr: float  # every pixel predicted as the mean colour of its frame's visible pixels
    num_videos: int
    num_failed: int = 0


@torch.no_grad()
def evaluate_reconstruction(model: MaskedAutoencoder, dataset, masking: TubeMasking, *, device: torch.device,
                            batch_size: int = 8, bf16: bool = False, num_workers: int = 0,
                            info: distributed.DistInfo | None = None, progress: bool = False
                            ) -> ReconstructionResult:
    """Reconstruction loss and PSNR on ``dataset`` with ``masking``'s step-0 masks (video ``i``
    always gets the same mask), against the mean-colour baseline. Under ``torchrun`` every
    process scores its share and all get the whole result."""
    info = info or distributed.DistInfo()
    was_training = model.training
    model.eval()
    cfg = model.config
    rows: list[tuple[int, float, float, float]] = []  # (index, loss, psnr, baseline psnr)
    failed = 0
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    loader = eval_loader(dataset, batch_size, info.rank, info.world_size, num_workers)
    for batch in tqdm(loader, desc="reconstructing", leave=False, disable=not (progress and info.is_main)):
        failed += len(batch.get("failed", []))
        if batch["video"] is None or batch["video"].shape[0] == 0:
            continue
        video = batch["video"].to(device)
        if video.dim() == 6:  # evaluation views [b, V, T, 3, H, W]: the first view
            video = video[:, 0]
        keep = masking.batch(0, batch["index"]).to(device)
        with autocast:
            pred = model(video, keep).pred
        p = model.patch_size
        scores = psnr(pixels_from_prediction(pred, video, p, cfg.norm_pix_loss), video).tolist()
        baselines = psnr(mean_colour_baseline(video, keep, p), video).tolist()
        for i, index in enumerate(batch["index"].tolist()):  # the loss of each video on its own
            loss = reconstruction_loss(pred[i:i + 1], video[i:i + 1], keep[i:i + 1], p,
                                       norm_pix=cfg.norm_pix_loss, masked_only=cfg.masked_loss)
            rows.append((index, float(loss), scores[i], baselines[i]))
    model.train(was_training)
    parts = distributed.all_gather_objects((rows, failed), info)
    every = sorted(r for part, _ in parts for r in part)
    num_failed = sum(f for _, f in parts)
    if not every:
        return ReconstructionResult(math.nan, math.nan, math.nan, 0, num_failed)
    n = len(every)
    return ReconstructionResult(sum(r[1] for r in every) / n, sum(r[2] for r in every) / n,
                                sum(r[3] for r in every) / n, n, num_failed)


class Pretrainer(Trainer):
    """Runs one masked-autoencoder pre-training job described by a :class:`PretrainConfig`."""

    csv_fields = CSV_FIELDS
    train_metric = None
    curve_metric = ("psnr", "held-out reconstruction PSNR (dB)", 1.0, None)

    def __init__(self, config: PretrainConfig, *, resume: bool = False):
        if not isinstance(config, PretrainConfig):
            raise TypeError(f"Pretrainer takes a PretrainConfig, got {type(config).__name__}")
        super().__init__(config, resume=resume)
        self.classifier: nn.Module | None = None
        self.masking: TubeMasking | None = None

    def build_datasets(self, cfg: PretrainConfig, info: distributed.DistInfo):
        if cfg.data != "videos":
            return build_datasets(cfg, log=info.is_main)
        from trecvit.data.unlabelled import UNLABELLED_CLASS, unlabelled_video_dataset

        train = unlabelled_video_dataset(cfg.train_data, train=True, **train_augmentation(cfg),
                                         **clip_options(cfg))
        val = None
        if cfg.val_data:
            val = unlabelled_video_dataset(cfg.val_data, train=False, views="1x1", **clip_options(cfg))
        if info.is_main:
            logger.info("data: %d unlabelled training videos%s", len(train),
                        f", {len(val)} held-out videos" if val is not None else "")
        return train, val, [UNLABELLED_CLASS]

    def build(self, cfg: PretrainConfig, classes: list[str]) -> nn.Module:
        """The TRecViT of ``cfg`` (initialised as ``trecvit train`` would: ``--init``,
        ``--vit-init``), whose encoder the autoencoder starts from."""
        self.classifier = build_model(cfg, len(classes))
        model = MaskedAutoencoder(cfg.mae_config(self.classifier.config))
        model.encoder.load_state_dict(self.classifier.encoder.state_dict())
        gh, gw = model.config.encoder.grid_hw
        self.masking = TubeMasking(gh * gw, cfg.mask_ratio, cfg.seed)
        return model

    def check_model(self, model: nn.Module, classes: list[str]) -> None:
        if not isinstance(model, MaskedAutoencoder):
            raise TypeError(f"Pretrainer trains a MaskedAutoencoder, got {type(model).__name__}")

    def batch_loss(self, runner, video, labels, batch, *, step, micro, info, autocast, empty):
        indices = [0] * video.shape[0] if empty else batch["index"]
        keep = self.masking.batch(step, indices).to(video.device)
        cfg = self.cfg
        with autocast:
            pred = runner(video, keep).pred
        loss = reconstruction_loss(pred, video, keep, self.classifier.config.patch_size,
                                   norm_pix=cfg.norm_pix_loss, masked_only=cfg.masked_loss)
        return loss, None

    def evaluate_model(self, cfg, info, device, model, val_set) -> ReconstructionResult:
        micro = max(cfg.batch_size // (info.world_size * cfg.grad_accum), 1)
        masking = dataclasses.replace(self.masking, seed=cfg.seed + EVAL_MASK_SEED_OFFSET)
        return evaluate_reconstruction(model, val_set, masking, device=device, batch_size=micro,
                                       bf16=cfg.bf16, num_workers=cfg.num_workers, info=info,
                                       progress=cfg.progress)

    def eval_row(self, result: ReconstructionResult) -> dict[str, float]:
        return dict(loss=result.loss, psnr=result.psnr, baseline_psnr=result.baseline_psnr)

    def eval_text(self, result: ReconstructionResult) -> str:
        return (f"held-out loss {result.loss:.4f}, PSNR {result.psnr:.2f} dB (mean-colour baseline "
                f"{result.baseline_psnr:.2f} dB, {result.num_videos} videos)")

    def report_final(self, out: Path, result: ReconstructionResult, classes: list[str]) -> None:
        logger.info("final: %s", self.eval_text(result))

    def save_model(self, out: Path, model: nn.Module, classes: list[str]) -> Path:
        """``autoencoder/`` (the whole model) and ``model/`` (the encoder in a TRecViT folder)."""
        cfg = self.cfg
        preprocessor = PreprocessorConfig(num_frames=cfg.num_frames, stride=cfg.stride,
                                          image_size=cfg.image_size)
        model.save_pretrained(out / "autoencoder", preprocessor=preprocessor)
        classifier = self.classifier
        classifier.encoder.load_state_dict(model.encoder.state_dict())
        return classifier.save_pretrained(out / "model", preprocessor=preprocessor)
