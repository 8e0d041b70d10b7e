"""Datasets and loaders for a training run: the order of the clips is a pure function of
``(seed, step)``, so a resumed run and a distributed run see exactly the same batches."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset

from trecvit.data.datasets import build_dataset, collate_videos, worker_init_fn
from trecvit.data.workers import VideoLoader, describe_item
from trecvit.training.config import TrainConfig

logger = logging.getLogger(__name__)


class ClipTensorDataset(Dataset):
    """Clips held in memory as ``uint8 [N, T, 3, H, W]`` with labels ``[N]`` (the
    materialised synthetic dataset); items are float32 in [0, 1], as from a video file."""

    def __init__(self, videos: torch.Tensor, labels: torch.Tensor, classes: list[str]):
        if videos.dtype != torch.uint8 or videos.dim() != 5 or videos.shape[0] != labels.shape[0]:
            raise ValueError(f"expected uint8 videos [N, T, 3, H, W] and labels [N], got "
                             f"{videos.dtype} {tuple(videos.shape)} and {tuple(labels.shape)}")
        self.videos, self.labels, self.classes = videos, labels, classes
        self.num_classes = len(classes)

    def __len__(self) -> int:
        return self.videos.shape[0]

    def set_epoch(self, epoch: int) -> None:  # no randomness: clips are used as generated
        pass

    def __getitem__(self, i: int) -> dict:
        return {"video": self.videos[i].float() / 255.0, "label": int(self.labels[i]), "index": i}


class _EpochItems(Dataset):
    """Wraps a dataset so that the sampler passes ``(epoch, index)``: the item's random
    augmentation then depends on the epoch it is drawn in, whatever worker loads it."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        self.dataset.set_epoch(epoch)  # type: ignore[attr-defined]
        return self.dataset[index]

    def item_source(self, key: tuple[int, int]) -> str:
        return describe_item(self.dataset, key[1])


@dataclass(frozen=True)
class StepPlan:
    """How optimiser steps map to clips: ``batch_size`` clips per step, split over
    ``world_size`` processes and ``grad_accum`` micro-batches; an epoch is
    ``len(dataset) // batch_size`` steps (the incomplete last batch is dropped)."""

    num_items: int
    batch_size: int
    world_size: int
    grad_accum: int
    seed: int

    def __post_init__(self) -> None:
        if self.batch_size % (self.world_size * self.grad_accum):
            raise ValueError(f"batch_size {self.batch_size} must be divisible by world_size "
                             f"({self.world_size}) x grad_accum ({self.grad_accum})")
        if self.num_items < self.batch_size:
            raise ValueError(f"the training set has {self.num_items} clips, fewer than one batch "
                             f"of {self.batch_size}")

    @property
    def steps_per_epoch(self) -> int:
        return self.num_items // self.batch_size

    @property
    def micro_batch(self) -> int:
        return self.batch_size // (self.world_size * self.grad_accum)

    def epoch_order(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return torch.randperm(self.num_items, generator=g)

    def micro_batches(self, start_step: int, end_step: int, rank: int) -> Iterator[list[tuple[int, int]]]:
        """This process's micro-batches of steps ``[start_step, end_step)``, as
        ``(epoch, index)`` lists, ``grad_accum`` per step."""
        per_rank = self.batch_size // self.world_size
        order, order_epoch = None, -1
        for step in range(start_step, end_step):
            epoch, k = divmod(step, self.steps_per_epoch)
            if epoch != order_epoch:
                order, order_epoch = self.epoch_order(epoch), epoch
            batch = order[k * self.batch_size:(k + 1) * self.batch_size]
            mine = batch[rank * per_rank:(rank + 1) * per_rank].tolist()
            for a in range(self.grad_accum):
                yield [(epoch, i) for i in mine[a * self.micro_batch:(a + 1) * self.micro_batch]]


class _PlanSampler:
    """A lazy batch sampler over :meth:`StepPlan.micro_batches` (no list of every batch)."""

    def __init__(self, plan: StepPlan, start_step: int, end_step: int, rank: int):
        self.plan, self.start, self.end, self.rank = plan, start_step, end_step, rank

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        return self.plan.micro_batches(self.start, self.end, self.rank)

    def __len__(self) -> int:
        return max(self.end - self.start, 0) * self.plan.grad_accum


def build_datasets(cfg: TrainConfig, log: bool = True) -> tuple[Dataset, Dataset | None, list[str]]:
    """The training and validation datasets of ``cfg`` and the class names."""
    if cfg.data == "synthetic":
        from trecvit.data.synthetic import SyntheticMotion

        opts = dict(num_frames=cfg.num_frames, image_size=cfg.image_size)
        train_src = SyntheticMotion(cfg.synthetic_train_size, seed=cfg.seed, **opts)
        train = ClipTensorDataset(*train_src.materialize(), classes=list(train_src.classes))
        val = None
        if cfg.synthetic_val_size:
            val_src = SyntheticMotion(cfg.synthetic_val_size, seed=cfg.seed + 1000, **opts)
            val = ClipTensorDataset(*val_src.materialize(), classes=list(val_src.classes))
        return train, val, list(train.classes)

    common = clip_options(cfg)
    labels = cfg.labels
    classes = None
    if cfg.data == "csv" and labels:
        classes = read_class_names(labels)
        labels = None
    train = build_dataset(cfg.data, cfg.train_data, video_root=cfg.video_root, labels=labels,
                          classes=classes, train=True, **train_augmentation(cfg), **common)
    val = None
    if cfg.val_data:
        val = build_dataset(cfg.data, cfg.val_data, video_root=cfg.video_root, labels=labels,
                            classes=list(train.classes), train=False, views=cfg.eval_views, **common)
    if log:
        logger.info("data: %d training videos%s, %d classes", len(train),
                    f", {len(val)} validation videos" if val is not None else "", train.num_classes)
    return train, val, list(train.classes)


def clip_options(cfg: TrainConfig) -> dict:
    """The :class:`~trecvit.data.VideoClipDataset` options of ``cfg`` shared by both splits."""
    return dict(num_frames=cfg.num_frames, stride=cfg.stride, image_size=cfg.image_size,
                decode_threads=cfg.decode_threads, decode_timeout=cfg.decode_timeout, seed=cfg.seed)


def train_augmentation(cfg: TrainConfig) -> dict:
    """The training split's augmentation options of ``cfg``."""
    return dict(hflip=cfg.hflip, min_scale=cfg.min_scale, randaug_ops=cfg.randaug_ops,
                randaug_magnitude=cfg.randaug_magnitude)


def read_class_names(path: str) -> list[str]:
    with open(path, encoding="utf-8") as fh:
        names = [line.strip() for line in fh if line.strip()]
    if not names:
        raise ValueError(f"class-name file {path} is empty")
    return names


def loader_timeout(dataset: Dataset, clips: int, num_workers: int) -> float:
    """Seconds a ``DataLoader`` waits for one batch of ``clips`` before it reports stalled workers:
    every clip may take the dataset's ``decode_timeout``, plus a minute (0: no limit)."""
    decode_timeout = getattr(dataset, "decode_timeout", None)
    if not num_workers or decode_timeout is None:
        return 0
    return clips * decode_timeout + 60.0


def collate_for(dataset: Dataset):
    """The dataset's own ``collate`` (e.g. point tracks), else :func:`collate_videos`."""
    return getattr(dataset, "collate", collate_videos)


def train_loader(dataset: Dataset, plan: StepPlan, start_step: int, end_step: int, rank: int,
                 num_workers: int, pin_memory: bool = False) -> DataLoader:
    """Micro-batches of steps ``[start_step, end_step)`` for process ``rank``.

    With workers, a worker that dies or stalls (see :func:`loader_timeout`) raises
    :class:`~trecvit.data.WorkerFailedError` naming the video it was decoding."""
    return VideoLoader(_EpochItems(dataset), batch_sampler=_PlanSampler(plan, start_step, end_step, rank),
                       num_workers=num_workers, collate_fn=collate_for(dataset),
                       worker_init_fn=worker_init_fn if num_workers else None, pin_memory=pin_memory,
                       timeout=loader_timeout(dataset, plan.micro_batch, num_workers))


def eval_loader(dataset: Dataset, batch_size: int, rank: int, world_size: int, num_workers: int
                ) -> DataLoader:
    """This process's share (every ``world_size``-th video) of an evaluation set, in order."""
    indices = list(range(rank, len(dataset), world_size))  # type: ignore[arg-type]
    batches = [[(0, i) for i in indices[j:j + batch_size]] for j in range(0, len(indices), batch_size)]
    return VideoLoader(_EpochItems(dataset), batch_sampler=batches, num_workers=num_workers,
                       collate_fn=collate_for(dataset),
                       worker_init_fn=worker_init_fn if num_workers else None,
                       timeout=loader_timeout(dataset, batch_size, num_workers))
