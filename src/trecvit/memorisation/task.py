"""Training and evaluation of the long-video memorisation task (paper section 5.4, Table 6).

The task: after ``T`` frames, reconstruct the ``k``-th frame (1-based; the paper's ``k = 16``)
from the model's output. The loss is the mean squared error over the target frame's pixels;
the metric is the PSNR ``10 log10(1 / MSE)`` on pixels in [0, 1] (the reconstruction clipped to
[0, 1]), computed **per video and then averaged** over the held-out videos.

Training (:func:`train_model`): AdamW (weight decay on matrices only), linear warm-up then a
cosine decay of the learning rate, gradient-norm clipping, one fresh batch of videos a step (the
same videos for every model of a run). Evaluation (:func:`evaluate`): the PSNR of each held-out
video, the reconstructions, and which input frame each reconstruction resembles most (a model
that reconstructs the wrong frame, as ViViT does with a resampled position embedding, shows it
there). :func:`baseline_psnr` gives the PSNR of two reconstructions that remember nothing:
the last frame seen and the mean of the clip; :func:`oracle_psnr` that of two coarse copies of the
target (its mean colour, its patches' mean colours).

Axis legend: ``V`` held-out videos, ``b`` batch, ``T`` frames, ``H, W`` frame size.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from trecvit.training.optim import build_optimizer, lr_at

logger = logging.getLogger(__name__)

RESAMPLINGS = ("nearest", "linear")


@dataclass
class MemoriseConfig:
    """The settings of a ``trecvit memorise`` run (defaults: the CPU-sized reproduction).

    Attributes:
        models: the models to train, "trecvit" and/or "vivit".
        train_frames: ``T`` of training (the paper: 64 for the generalisation rows).
        test_frames: the test lengths of the table (the paper: 64 and 96).
        target_frame: ``k``, the 1-based index of the frame to reconstruct (the paper: 16).
        image_size: frame side in pixels.
        patch_size: patch side ``p``.
        trecvit_variant, vivit_variant: model sizes (:func:`~trecvit.memorisation.models.build_config`).
        trecvit_overrides, vivit_overrides: config fields set on top of the variants.
        steps: optimiser steps per model.
        batch_size: videos per step.
        lr: peak learning rate; ``warmup_steps`` of linear warm-up, then a cosine to ``lr / 100``.
        weight_decay: AdamW's decay of the weight matrices.
        grad_clip: largest gradient norm (0: no clipping).
        seed: seeds the model initialisation and the videos.
        data: "synthetic" (walking tours made on the fly) or "folder" (``data_dir``).
        data_dir: the folder of real videos for ``data="folder"``.
        data_stride: keep every n-th frame of the folder's videos.
        val_videos: held-out videos of every evaluation.
        sweep_lengths: test lengths of the sweep's length panel.
        sweep_distances: distances ``T - k`` of the sweep's distance panel.
        device: "cpu" or "cuda".
    """

    models: tuple[str, ...] = ("trecvit", "vivit")
    train_frames: int = 64
    test_frames: tuple[int, ...] = (64, 96)
    target_frame: int = 16
    image_size: int = 16
    patch_size: int = 8
    trecvit_variant: str = "mem"
    vivit_variant: str = "mem"
    trecvit_overrides: dict = field(default_factory=dict)
    vivit_overrides: dict = field(default_factory=dict)
    steps: int = 3000
    batch_size: int = 8
    lr: float = 3e-3
    warmup_steps: int = 50
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    seed: int = 0
    data: str = "synthetic"
    data_dir: str | None = None
    data_stride: int = 1
    val_videos: int = 32
    sweep_lengths: tuple[int, ...] = (64, 96, 128, 192, 256)
    sweep_distances: tuple[int, ...] = (0, 8, 16, 32, 48, 80, 112, 176, 240)
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in ("models", "test_frames", "sweep_lengths", "sweep_distances"):
            setattr(self, name, tuple(getattr(self, name)))
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the option and the value that do not fit."""
        bad = [m for m in self.models if m not in ("trecvit", "vivit")]
        if not self.models or bad or len(set(self.models)) != len(self.models):
            raise ValueError(f"--models must be trecvit and/or vivit, each once, got "
                             f"{','.join(self.models)!r}")
        for name in ("train_frames", "target_frame", "image_size", "patch_size", "steps", "batch_size",
                     "val_videos", "data_stride"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        k, t = self.target_frame, self.train_frames
        if k >= t:
            raise ValueError(f"--target-frame {k} must be smaller than --train-frames {t}: the model has to "
                             f"remember frame {k} for some frames after it (the paper: k = 16 of 64)")
        for name in ("test_frames", "sweep_lengths"):
            values = getattr(self, name)
            short = [v for v in values if v < k]
            if short:
                raise ValueError(f"--{name.replace('_', '-')} {','.join(map(str, short))} is shorter than "
                                 f"--target-frame {k}: a test video must contain the frame to reconstruct")
        if not self.test_frames:
            raise ValueError("--test-frames needs at least one length")
        if any(d < 0 for d in self.sweep_distances):
            raise ValueError(f"--sweep-distances must be >= 0, got {self.sweep_distances}")
        if self.image_size % self.patch_size:
            raise ValueError(f"--image-size {self.image_size} must be a multiple of --patch-size "
                             f"{self.patch_size}")
        if not self.lr > 0 or self.weight_decay < 0 or self.grad_clip < 0 or self.warmup_steps < 0:
            raise ValueError(f"need --lr > 0, --weight-decay >= 0, --grad-clip >= 0, --warmup-steps >= 0, "
                             f"got {self.lr}, {self.weight_decay}, {self.grad_clip}, {self.warmup_steps}")
        if self.data not in ("synthetic", "folder"):
            raise ValueError(f"--data must be synthetic or folder, got {self.data!r}")
        if self.data == "folder" and not self.data_dir:
            raise ValueError("--data folder needs --data-dir DIR, a folder of long videos")

    @property
    def eval_lengths(self) -> list[int]:
        """Every test length of the run: the table's and the sweep's, sorted."""
        lengths = set(self.test_frames) | set(self.sweep_lengths)
        lengths |= {self.target_frame + d for d in self.sweep_distances}
        return sorted(lengths)

    def training_settings(self, kind: str) -> dict:
        """What a trained model of ``kind`` depends on (besides its config): a resumed run
        reuses a model only if these are equal."""
        keys = ("train_frames", "target_frame", "steps", "batch_size", "lr", "warmup_steps", "weight_decay",
                "grad_clip", "seed", "data", "data_dir", "data_stride", "image_size", "patch_size")
        settings = {key: getattr(self, key) for key in keys}
        settings["variant"] = getattr(self, f"{kind}_variant")
        settings["overrides"] = dict(getattr(self, f"{kind}_overrides"))
        return settings

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class TrainLog:
    """What :func:`train_model` did: the loss and learning rate of every step, the time taken."""

    losses: list[float]
    lrs: list[float]
    seconds: float

    @property
    def final_loss(self) -> float:
        """Mean loss of the last tenth of the steps."""
        tail = self.losses[-max(1, len(self.losses) // 10):]
        return sum(tail) / len(tail)


def train_model(model: nn.Module, source, cfg: MemoriseConfig, *, desc: str = "train",
                show_progress: bool = True) -> TrainLog:
    """Train ``model`` to reconstruct frame ``cfg.target_frame`` of ``cfg.train_frames``-frame
    videos from ``source`` (a :mod:`~trecvit.memorisation.data` source). Returns its log."""
    from tqdm.auto import tqdm

    device = torch.device(cfg.device)
    model.to(device).train()
    optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay)
    k = cfg.target_frame - 1
    losses, lrs = [], []
    start = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc=desc, disable=not show_progress, dynamic_ncols=True)
    for step in bar:
        lr = lr_at(step, total_steps=cfg.steps, warmup_steps=cfg.warmup_steps, lr=cfg.lr, min_lr=cfg.lr / 100)
        for group in optimizer.param_groups:
            group["lr"] = lr
        video = source.train_batch(step, cfg.batch_size, cfg.train_frames).to(device)  # (b, T, 3, H, W)
        loss = F.mse_loss(model(video).float(), video[:, k].float())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{desc}: the loss became {loss.item()} at step {step}; try a "
                                     "smaller --lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        losses.append(loss.item())
        lrs.append(lr)
        if step % 10 == 0 or step == cfg.steps - 1:
            recent = losses[-10:]
            bar.set_postfix(loss=f"{sum(recent) / len(recent):.4f}",
                            psnr=f"{-10 * math.log10(max(sum(recent) / len(recent), 1e-10)):.1f}dB")
    model.eval()
    return TrainLog(losses=losses, lrs=lrs, seconds=time.perf_counter() - start)


def frame_psnr(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``[...]``: PSNR in dB of frames ``recon`` against ``target`` (``[..., 3, H, W]``), the
    reconstruction clipped to [0, 1] first (capped at 100 dB)."""
    mse = (recon.float().clamp(0, 1) - target.float()).pow(2).flatten(-3).mean(dim=-1)
    return 10.0 * torch.log10(1.0 / mse.clamp_min(1e-10))


@dataclass
class EvalResult:
    """One model on the held-out videos at one test length.

    Attributes:
        psnr: ``[V]`` per-video PSNR (dB) of the reconstruction against frame ``k``.
        recon: ``[V, 3, H, W]`` the reconstructions (clipped to [0, 1]).
        matched: ``[V]`` the 1-based index of the input frame the reconstruction is closest to.
    """

    psnr: torch.Tensor
    recon: torch.Tensor
    matched: torch.Tensor

    @property
    def mean(self) -> float:
        return float(self.psnr.mean())

    @property
    def sem(self) -> float:
        """Standard error of the mean PSNR over videos."""
        n = self.psnr.numel()
        return float(self.psnr.std(unbiased=True) / math.sqrt(n)) if n > 1 else 0.0


@torch.no_grad()
def evaluate(model: nn.Module, videos: torch.Tensor, num_frames: int, target_frame: int, *,
             batch_size: int = 8, device: str | torch.device = "cpu") -> EvalResult:
    """Reconstruct frame ``target_frame`` of the first ``num_frames`` frames of each held-out
    video ``videos [V, T_max, 3, H, W]`` (``T_max >= num_frames``)."""
    if num_frames > videos.shape[1] or target_frame > num_frames:
        raise ValueError(f"cannot reconstruct frame {target_frame} of {num_frames} frames from videos of "
                         f"{videos.shape[1]} frames")
    model.eval()
    clips = videos[:, :num_frames]
    recon = torch.cat([model(clips[i: i + batch_size].to(device)).float().cpu()
                       for i in range(0, clips.shape[0], batch_size)]).clamp(0, 1)  # (V, 3, H, W)
    psnr = frame_psnr(recon, clips[:, target_frame - 1])
    matched = frame_psnr(recon[:, None], clips).argmax(dim=1) + 1  # (V,), 1-based
    return EvalResult(psnr=psnr, recon=recon, matched=matched)


def baseline_psnr(videos: torch.Tensor, num_frames: int, target_frame: int) -> dict[str, torch.Tensor]:
    """Per-video PSNR ``[V]`` of reconstructions that remember nothing: the last frame seen
    ("last frame") and the per-pixel mean of the clip ("clip mean")."""
    clips = videos[:, :num_frames].float()
    target = clips[:, target_frame - 1]
    return {"last frame": frame_psnr(clips[:, -1], target),
            "clip mean": frame_psnr(clips.mean(dim=1), target)}


def oracle_psnr(videos: torch.Tensor, target_frame: int, patch_size: int) -> dict[str, torch.Tensor]:
    """Per-video PSNR ``[V]`` of two coarse copies of the target frame itself, to read the models'
    numbers against: its mean colour ("frame-colour oracle") and the mean colour of each of its
    patches ("patch-colour oracle"), what a model that remembers only colours can reach."""
    target = videos[:, target_frame - 1].float()  # (V, 3, H, W)
    frame = target.mean(dim=(2, 3), keepdim=True).expand_as(target)
    p = patch_size
    patches = F.avg_pool2d(target, p).repeat_interleave(p, dim=2).repeat_interleave(p, dim=3)
    return {"frame-colour oracle": frame_psnr(frame, target),
            "patch-colour oracle": frame_psnr(patches, target)}
