"""Frozen-feature probes (``trecvit probe``): how much a trunk's features say about the classes.

The encoder of a checkpoint (or a randomly initialised one, the control every
probe result needs) is frozen; its features are computed once per clip, without
augmentation, and cached in memory as float32 (:func:`extract_features`). Two
small classifiers are then trained on the cached features alone, so no gradient
can reach the encoder:

* :class:`AttentiveProbe`, V-JEPA's: learnt queries cross-attend to the tokens,
  then a residual MLP block and a linear classifier;
* :class:`LinearProbe`, MAE's: the mean of the tokens, a BatchNorm without
  affine parameters, a linear classifier.

:func:`train_probe` trains one with AdamW and a warm-up + cosine schedule and
reports held-out top-1 / top-5; :func:`run_probe` does it all for a model and
two datasets (:func:`build_probe_datasets`).

Axis legend: ``N`` clips, ``b`` batch, ``t`` frames, ``c`` clips per video,
``n`` tokens per frame, ``m`` feature tokens per clip, ``q`` queries, ``d`` width.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from trecvit.checkpoints.auto import load_model, model_folder, resolve_checkpoint
from trecvit.checkpoints.pretrained import PreprocessorConfig, read_config_json, read_preprocessor
from trecvit.config import TRecViTConfig
from trecvit.model import TRecViT
from trecvit.training.data import ClipTensorDataset, eval_loader, read_class_names
from trecvit.training.metrics import topk_correct
from trecvit.training.optim import build_optimizer, lr_at

logger = logging.getLogger(__name__)

TOKEN_CHOICES = ("all", "last")
PROBE_CHOICES = ("attentive", "linear")
RANDOM = "random"  # the checkpoint name of a randomly initialised encoder
DEFAULT_NUM_FRAMES = 8  # frames per clip when the checkpoint records none
WARMUP_FRACTION = 0.1  # of the optimiser steps, linear warm-up from 0


# ----------------------------------------------------------------------------
# the frozen encoder
# ----------------------------------------------------------------------------
def freeze(model: nn.Module) -> nn.Module:
    """``model`` in eval mode with every parameter ``requires_grad_(False)``."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def load_probe_encoder(checkpoint: str | Path, *, variant: str = "S",
                       model_overrides: dict[str, Any] | None = None,
                       image_size: int | tuple[int, int] | None = None, num_frames: int | None = None,
                       seed: int = 0, device: str | torch.device = "cpu") -> TRecViT:
    """The TRecViT whose frozen trunk is probed, in eval mode with no parameter requiring grad.

    Args:
        checkpoint: a ``save_pretrained`` folder of a TRecViT (e.g. a masked-autoencoder
            run's ``RUN/model``, or a ``trecvit train`` run's), its ``model.safetensors``,
            an official ``.npz``, or ``"random"``: a TRecViT of
            ``TRecViTConfig.from_variant(variant, **model_overrides)`` initialised after
            ``torch.manual_seed(seed)``, the control of every probe result.
        variant, model_overrides: the config of ``"random"`` (refused with a checkpoint,
            whose ``config.json`` fixes the architecture).
        image_size, num_frames: for ``"random"``, the ``image_size`` and ``frames_per_clip``
            of the config when given (a field in ``model_overrides`` takes precedence);
            ignored otherwise.
        seed: seeds the initialisation of ``"random"``.
        device: where the model goes.

    Raises:
        FileNotFoundError: the checkpoint does not exist.
        ValueError: a folder of another architecture (named; for the masked autoencoder
            ``"trecvit_mae"``, saying to pass the run's ``model/`` folder instead), or
            ``model_overrides`` with a checkpoint.
    """
    overrides = dict(model_overrides or {})
    if str(checkpoint) == RANDOM:
        if image_size is not None:
            overrides.setdefault("image_size", image_size)
        if num_frames is not None:
            overrides.setdefault("frames_per_clip", num_frames)
        config = TRecViTConfig.from_variant(variant, **overrides)
        torch.manual_seed(seed)
        return freeze(TRecViT(config).to(device))
    if overrides:
        raise ValueError(f"model overrides ({', '.join(sorted(overrides))}) configure the random "
                         f"encoder only; the config.json of checkpoint {checkpoint} fixes its "
                         "architecture")
    path = resolve_checkpoint(checkpoint)
    folder = model_folder(path)
    if folder is not None:  # before load_model, whose error for an unknown arch is unclear here
        arch, _ = read_config_json(folder)
        if arch == "trecvit_mae":
            raise ValueError(f"{folder} holds a masked autoencoder ('trecvit_mae': encoder and decoder), "
                             "not a TRecViT encoder; pass the run's model/ folder (the encoder alone) "
                             "instead of autoencoder/")
        if arch != TRecViT.arch:
            raise ValueError(f"{folder} holds a {arch!r} model; the probes take the trunk of a TRecViT "
                             f"({TRecViT.arch!r}) checkpoint")
    model = load_model(path, device=device)
    if not isinstance(model, TRecViT):  # pragma: no cover - an .npz is always a TRecViT
        raise ValueError(f"{path} holds a {model.arch!r} model, not a TRecViT")
    return freeze(model)


def probe_clip_settings(model: TRecViT, checkpoint: str | Path, *, num_frames: int | None = None,
                        stride: int | None = None, image_size: int | tuple[int, int] | None = None
                        ) -> PreprocessorConfig:
    """The clips to probe with: each setting given, else the one the checkpoint was trained with
    (its folder's ``preprocessor_config.json``), else 8 frames, stride 1, the config's frame size."""
    folder = model_folder(checkpoint) if str(checkpoint) != RANDOM else None
    saved = read_preprocessor(folder) if folder is not None else None
    return PreprocessorConfig(
        num_frames=num_frames or (saved.num_frames if saved else DEFAULT_NUM_FRAMES),
        stride=stride or (saved.stride if saved else 1),
        image_size=image_size or (saved.image_size if saved else model.config.image_hw))


# ----------------------------------------------------------------------------
# data and features
# ----------------------------------------------------------------------------
def build_probe_datasets(data: str, clips: PreprocessorConfig, *, train_data: str | None = None,
                         val_data: str | None = None, video_root: str | None = None,
                         labels: str | None = None, synthetic_train_size: int = 1200,
                         synthetic_val_size: int = 600, seed: int = 0
                         ) -> tuple[Dataset, Dataset, list[str]]:
    """``(train, val, class names)`` for probing: clips as ``clips`` says, without augmentation.

    ``data`` is a format of ``trecvit train``: ``"synthetic"`` (``SyntheticMotion`` clips, seeds
    ``seed`` and ``seed + 1000``, as ``trecvit train``), or ``"folder"``, ``"csv"``,
    ``"kinetics"``, ``"ssv2"`` (one centre view per video; the validation labels use the
    training set's class order; for csv, ``labels`` is an optional class-name file)."""
    if data == "synthetic":
        from trecvit.data.synthetic import SyntheticMotion

        h, w = clips.image_size
        if h != w:
            raise ValueError(f"the synthetic data has square frames; got image size {h}x{w}")
        if synthetic_val_size < 1:
            raise ValueError(f"the probes need held-out clips; synthetic_val_size is {synthetic_val_size}")
        sets = []
        for size, offset in ((synthetic_train_size, 0), (synthetic_val_size, 1000)):
            src = SyntheticMotion(size, seed=seed + offset, num_frames=clips.num_frames, image_size=h)
            sets.append(ClipTensorDataset(*src.materialize(), classes=list(src.classes)))
        return sets[0], sets[1], list(sets[0].classes)

    from trecvit.data.datasets import build_dataset

    if not train_data or not val_data:
        raise ValueError(f"data {data!r} needs both train_data and val_data (the probes are trained on "
                         "one split and scored on the other)")
    classes = None
    if data == "csv" and labels:
        classes, labels = read_class_names(labels), None
    common = dict(num_frames=clips.num_frames, stride=clips.stride, image_size=clips.image_size,
                  video_root=video_root, labels=labels, train=False, views="1x1", seed=seed)
    train = build_dataset(data, train_data, classes=classes, **common)
    val = build_dataset(data, val_data, classes=list(train.classes), **common)
    return train, val, list(train.classes)


@torch.no_grad()
def extract_features(model: TRecViT, dataset: Dataset, *, tokens: str = "all", batch_size: int = 16,
                     device: str | torch.device = "cpu", num_workers: int = 0, progress: bool = False,
                     failed: list[tuple[int, str]] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen trunk's features of every clip of ``dataset``, computed once, as float32 on the CPU.

    Items are ``{"video": [T, 3, H, W] or [1, T, 3, H, W], "label", "index"}``. A video of ``c``
    clips (``model.num_clips(T)``) gives ``forward_features`` ``[c, T / c, n, d]``, of which
    ``tokens`` keeps ``"all"``: every token of every frame, ``[N, T * n, d]``, or ``"last"``:
    the tokens of the video's last frame, ``[N, n, d]``.

    Undecodable videos are left out (a warning says how many); their ``(index, error)`` pairs
    are appended to ``failed`` when given. Returns ``(features, labels [N])``.
    """
    if tokens not in TOKEN_CHOICES:
        raise ValueError(f"tokens must be one of {TOKEN_CHOICES}, got {tokens!r}")
    model.eval()
    device = torch.device(device)
    features, labels, skipped = [], [], []
    loader = eval_loader(dataset, batch_size, 0, 1, num_workers)
    for batch in tqdm(loader, desc="extracting features", leave=False, disable=not progress):
        skipped += batch.get("failed", [])
        video = batch["video"]
        if video is None or video.shape[0] == 0:
            continue
        if video.dim() == 6:  # (b, V, T, 3, H, W) from an evaluation dataset
            if video.shape[1] != 1:
                raise ValueError(f"expected one view per video, got {video.shape[1]} (use views='1x1')")
            video = video[:, 0]
        b, t = video.shape[:2]
        c = model.num_clips(t)
        encoded = model.forward_features(video.to(device))  # (b c, t/c, n, d)
        encoded = encoded.view(b, c, *encoded.shape[1:])  # (b, c, t/c, n, d)
        kept = encoded.flatten(1, 3) if tokens == "all" else encoded[:, -1, -1]  # (b, m, d)
        features.append(kept.float().cpu())
        labels.append(batch["label"])
    if skipped:
        logger.warning("%d video(s) could not be decoded and were left out, e.g. %s", len(skipped),
                       skipped[0][1])
        if failed is not None:
            failed.extend(skipped)
    if not features:
        raise ValueError(f"no clip of {len(dataset)} could be read: no features")  # type: ignore[arg-type]
    return torch.cat(features), torch.cat(labels).long()


# ----------------------------------------------------------------------------
# the probes
# ----------------------------------------------------------------------------
def default_num_heads(dim: int) -> int:
    """The largest of 8, 4, 2, 1 dividing ``dim``."""
    return next(h for h in (8, 4, 2, 1) if dim % h == 0)


class AttentiveProbe(nn.Module):
    """V-JEPA's attentive probe: ``features [b, m, d]`` -> ``logits [b, num_classes]``.

    ``num_queries`` learnt query tokens cross-attend (``num_heads`` heads, default
    :func:`default_num_heads`) to the LayerNorm-ed feature tokens, with a residual; a residual
    MLP block (LayerNorm, MLP with GELU of ``mlp_ratio * d`` hidden units) follows; the mean
    over the queries goes through a linear classifier. Its width is the features' ``d``.
    """

    def __init__(self, dim: int, num_classes: int, *, num_queries: int = 1, num_heads: int | None = None,
                 mlp_ratio: float = 4.0):
        super().__init__()
        num_heads = num_heads or default_num_heads(dim)
        if num_queries < 1:
            raise ValueError(f"num_queries must be >= 1, got {num_queries}")
        if dim % num_heads:
            raise ValueError(f"the feature width {dim} is not divisible by num_heads {num_heads}")
        self.query = nn.Parameter(torch.zeros(1, num_queries, dim))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.mlp_norm = nn.LayerNorm(dim, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.head = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.query, std=0.02)
        for m in (*self.mlp, self.head):
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        kv = self.norm(features)  # (b, m, d)
        q = self.query.expand(features.shape[0], -1, -1)  # (b, q, d)
        x = q + self.attn(q, kv, kv, need_weights=False)[0]  # (b, q, d)
        x = x + self.mlp(self.mlp_norm(x))
        return self.head(x.mean(dim=1))  # (b, classes)


class LinearProbe(nn.Module):
    """MAE's linear probe: ``features [b, m, d]`` -> the mean over the ``m`` tokens -> a
    BatchNorm without affine parameters (it only rescales the channels to a common scale,
    so the classifier stays linear in the features) -> a linear classifier."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.norm = nn.BatchNorm1d(dim, affine=False, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(features.mean(dim=1)))  # (b, classes)


def build_probe(kind: str, dim: int, num_classes: int, *, num_queries: int = 1,
                num_heads: int | None = None) -> nn.Module:
    """An :class:`AttentiveProbe` (``kind="attentive"``) or a :class:`LinearProbe` (``"linear"``)."""
    if kind == "attentive":
        return AttentiveProbe(dim, num_classes, num_queries=num_queries, num_heads=num_heads)
    if kind == "linear":
        return LinearProbe(dim, num_classes)
    raise ValueError(f"unknown probe {kind!r}; expected one of {PROBE_CHOICES}")


# ----------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------
@dataclass
class ProbeResult:
    """A trained probe's held-out accuracy (fractions in [0, 1]) and its last epoch's mean
    training loss."""

    top1: float
    top5: float
    num_train: int
    num_val: int
    train_loss: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_features(features: torch.Tensor, labels: torch.Tensor, what: str) -> None:
    if features.dim() != 3 or labels.shape != (features.shape[0],):
        raise ValueError(f"{what}: expected features [N, m, d] and labels [N], got "
                         f"{tuple(features.shape)} and {tuple(labels.shape)}")
    if features.shape[0] == 0:
        raise ValueError(f"{what}: no clips")


@torch.no_grad()
def predict(probe: nn.Module, features: torch.Tensor, *, batch_size: int = 256,
            device: str | torch.device = "cpu") -> torch.Tensor:
    """``probe``'s logits ``[N, classes]`` (float32, CPU) for ``features [N, m, d]``, in eval mode."""
    probe.eval()
    out = [probe(features[i:i + batch_size].to(device)).float().cpu()
           for i in range(0, features.shape[0], batch_size)]
    return torch.cat(out)


def train_probe(probe: nn.Module, train_features: torch.Tensor, train_labels: torch.Tensor,
                val_features: torch.Tensor, val_labels: torch.Tensor, *, epochs: int = 20,
                batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 0.05, seed: int = 0,
                device: str | torch.device = "cpu", progress: bool = False) -> ProbeResult:
    """Train ``probe`` (in place) on cached features and score it on the held-out ones.

    AdamW (decay on matrices only, :func:`trecvit.training.optim.build_optimizer`), a linear
    warm-up over the first tenth of the steps, then a cosine to 0 (``lr_at``); cross-entropy;
    ``batch_size`` clips a step (at most the training set), shuffled each epoch by a
    ``torch.Generator`` seeded with ``seed`` (the incomplete last batch is dropped). The same
    inputs and seed give the same result on the CPU.
    """
    _check_features(train_features, train_labels, "training features")
    _check_features(val_features, val_labels, "held-out features")
    if train_features.shape[2] != val_features.shape[2]:
        raise ValueError(f"the training features are {train_features.shape[2]} wide but the held-out "
                         f"ones {val_features.shape[2]}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    num_train = train_features.shape[0]
    batch_size = min(batch_size, num_train)
    if batch_size < 2 and isinstance(probe, LinearProbe):
        raise ValueError("the linear probe's BatchNorm needs batches of >= 2 clips; "
                         f"got {num_train} training clip(s) and batch_size {batch_size}")
    device = torch.device(device)
    probe.to(device).train()
    optimizer = build_optimizer(probe, lr=lr, weight_decay=weight_decay)
    steps_per_epoch = num_train // batch_size
    total = epochs * steps_per_epoch
    warmup = math.ceil(WARMUP_FRACTION * total)
    generator = torch.Generator().manual_seed(seed)
    step, loss_sum = 0, 0.0
    bar = tqdm(total=total, desc=f"training {type(probe).__name__}", leave=False, disable=not progress)
    for _ in range(epochs):
        order = torch.randperm(num_train, generator=generator)
        loss_sum = 0.0
        for k in range(steps_per_epoch):
            idx = order[k * batch_size:(k + 1) * batch_size]
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total_steps=total, warmup_steps=warmup, lr=lr, min_lr=0.0)
            logits = probe(train_features[idx].to(device))
            loss = F.cross_entropy(logits.float(), train_labels[idx].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item()
            step += 1
            bar.update()
    bar.close()
    logits = predict(probe, val_features, batch_size=max(batch_size, 256), device=device)
    return ProbeResult(top1=topk_correct(logits, val_labels, 1).float().mean().item(),
                       top5=topk_correct(logits, val_labels, 5).float().mean().item(),
                       num_train=num_train, num_val=int(val_labels.shape[0]),
                       train_loss=loss_sum / steps_per_epoch)


# ----------------------------------------------------------------------------
# everything
# ----------------------------------------------------------------------------
@dataclass
class ProbeReport:
    """What :func:`run_probe` measured: a result per probe (in the order run), the clips whose
    video could not be decoded (left out), and the class names."""

    results: dict[str, ProbeResult]
    num_failed_train: int
    num_failed_val: int
    classes: list[str]


def run_probe(model: TRecViT, train_set: Dataset, val_set: Dataset, classes: list[str], *,
              probes: tuple[str, ...] = PROBE_CHOICES, tokens: str = "all", epochs: int = 20,
              batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 0.05, num_queries: int = 1,
              num_heads: int | None = None, seed: int = 0, device: str | torch.device = "cpu",
              num_workers: int = 0, progress: bool = False) -> ProbeReport:
    """Probe ``model``'s frozen trunk: extract the features of both sets once
    (:func:`extract_features`), then train each of ``probes`` (``"attentive"``, ``"linear"``) on
    the training features (:func:`train_probe`, each probe initialised after
    ``torch.manual_seed(seed)``) and score it on the held-out ones. ``num_heads`` of the
    attentive probe defaults to the encoder's; ``batch_size`` is also the extraction batch."""
    for kind in probes:
        if kind not in PROBE_CHOICES:
            raise ValueError(f"unknown probe {kind!r}; expected one of {PROBE_CHOICES}")
    freeze(model)
    opts = dict(tokens=tokens, batch_size=batch_size, device=device, num_workers=num_workers,
                progress=progress)
    failed_train: list[tuple[int, str]] = []
    failed_val: list[tuple[int, str]] = []
    train_x, train_y = extract_features(model, train_set, failed=failed_train, **opts)
    val_x, val_y = extract_features(model, val_set, failed=failed_val, **opts)
    logger.info("features: %d training and %d held-out clips of %s", train_x.shape[0], val_x.shape[0],
                "x".join(map(str, train_x.shape[1:])))
    results = {}
    for kind in probes:
        torch.manual_seed(seed)
        probe = build_probe(kind, train_x.shape[-1], len(classes), num_queries=num_queries,
                            num_heads=num_heads or model.config.num_heads)
        results[kind] = train_probe(probe, train_x, train_y, val_x, val_y, epochs=epochs,
                                    batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed,
                                    device=device, progress=progress)
    return ProbeReport(results, len(failed_train), len(failed_val), list(classes))


__all__ = ["AttentiveProbe", "LinearProbe", "ProbeReport", "ProbeResult", "build_probe",
           "build_probe_datasets", "extract_features", "freeze", "load_probe_encoder",
           "probe_clip_settings", "run_probe", "train_probe"]
