"""Training the point-tracking readout, the loop behind ``trecvit train-tracker``.

:class:`TrackerTrainer` is the supervised :class:`~trecvit.training.Trainer`
with the tracker's hooks: the same schedule, accumulation, bfloat16, DDP under
``torchrun``, atomic checkpoints and exact ``--resume``. The encoder comes from
any TRecViT ``save_pretrained`` folder (a masked-autoencoder run's ``model/``,
a ``trecvit train`` run's), an official ``.npz``, or ``random`` (the control);
it is frozen unless ``finetune``. Training clips are the built-in synthetic
videos (:class:`~trecvit.tracking.synthetic.SyntheticTracks`) or a TAP-Vid-format
file; held-out videos are scored with the TAP-Vid metrics (average Jaccard).

A run folder ends with ``model/``, the tracker as a ``save_pretrained`` folder
(``trecvit eval-tracker --checkpoint RUN/model``, ``trecvit track``), and
``tapvid.json``, the final held-out metrics per video.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trecvit.checkpoints.integrity import atomic_write
from trecvit.checkpoints.pretrained import PreprocessorConfig
from trecvit.tracking.data import TrackingDataset, load_tracking_data
from trecvit.tracking.evaluate import TrackingResult, evaluate_tracker, result_from_rows
from trecvit.tracking.loss import tracking_loss
from trecvit.tracking.model import PointTracker, TrackerConfig
from trecvit.training import distributed
from trecvit.training.config import TrainConfig, field_docs
from trecvit.training.trainer import Trainer

logger = logging.getLogger(__name__)

CSV_FIELDS = ("step", "epoch", "split", "loss", "average_jaccard", "occlusion_accuracy",
              "average_pts_within_thresh", "lr", "clips_per_s", "skipped")
QUERY_MODES = ("first", "strided")


@dataclass
class TrackerTrainConfig(TrainConfig):
    """Everything that defines a tracker training run: the fields of :class:`TrainConfig` (but the
    classification-only ones) and the tracker's. Defaults: the synthetic tracking videos.
    """

    data_formats = ("synthetic", "tapvid")
    unused_fields = ("arch", "eval_views", "mixup", "cutmix", "label_smoothing", "init", "vit_init",
                     "vit_input_norm", "hflip", "min_scale", "randaug_ops", "randaug_magnitude", "stride",
                     "labels", "video_root", "decode_threads", "decode_timeout")
    unused_by = "tracker training"

    out_dir: str = field(default="runs/tracker", metadata={"help": (
        "the run folder, which gets config.yaml, metrics.csv, checkpoints/, tensorboard/, curves.png, "
        "tapvid.json (the final held-out metrics) and model/ (the tracker, for trecvit eval-tracker "
        "and trecvit track)")})
    data: str = field(default="synthetic", metadata={"help": (
        "the training videos: synthetic (built in: textured objects moving over a moving background, "
        "exact tracks) or tapvid (a TAP-Vid-format file or folder given by --train-data)")})
    train_data: str | None = field(default=None, metadata={"help": (
        "for data=tapvid: the training tracks (a TAP-Vid DAVIS, Kinetics or RGB-Stacking pickle, a "
        "folder of Kinetics shards, or an .npz of tracks)")})
    val_data: str | None = field(default=None, metadata={"help": (
        "held-out tracks in a TAP-Vid format (any data); without it, synthetic data is scored on "
        "synthetic_val_size held-out synthetic videos")})
    allow_pickle: bool = field(default=False, metadata={"help": (
        "allow reading TAP-Vid pickle files (a pickle can run code when loaded: only for files you "
        "trust)")})
    num_frames: int = field(default=16, metadata={"help": "frames per training clip"})
    synthetic_train_size: int = field(default=4000, metadata={"help": (
        "synthetic training videos (data=synthetic)")})
    synthetic_val_size: int = field(default=50, metadata={"help": (
        "held-out synthetic videos scored with the TAP-Vid metrics (0: none); used when no "
        "--val-data is given")})
    encoder: str | None = field(default=None, metadata={"help": (
        "the TRecViT encoder: a save_pretrained folder (a trecvit pretrain run's model/, a trecvit "
        "train run's), its model.safetensors, an official .npz, or random (a randomly initialised "
        "TRecViT of --variant and --model, the control); required")})
    variant: str = field(default="S", metadata={"help": (
        "the size of a random encoder (with --encoder random only)")})
    model: dict[str, Any] = field(default_factory=dict, metadata={"help": (
        "TRecViTConfig fields of a random encoder, KEY=VALUE (with --encoder random only)")})
    finetune: bool = field(default=False, metadata={"help": (
        "train the encoder too (default: frozen, only the readout learns)")})
    readout_width: int = field(default=128, metadata={"help": "width of the readout's per-point state"})
    readout_depth: int = field(default=2, metadata={"help": (
        "cross-attention layers correcting each point's state at every frame")})
    readout_heads: int = field(default=4, metadata={"help": "attention heads of the readout"})
    readout_mlp_dim: int | None = field(default=None, metadata={"help": (
        "hidden width of the readout's MLPs (none: 4x readout_width)")})
    num_points: int = field(default=64, metadata={"help": "query points per training clip"})
    query_mode: str = field(default="first", metadata={"help": (
        "how held-out videos are queried: first (each point from its first visible frame) or strided "
        "(every 5th frame), as the TAP-Vid benchmark")})
    certainty_threshold: float = field(default=8.0, metadata={"help": (
        "pixels (in a 256 x 256 frame) within which a prediction counts as certain")})
    huber_delta: float = field(default=4.0, metadata={"help": (
        "the position loss's Huber range, in pixels of a 256 x 256 frame")})
    position_weight: float = field(default=0.1, metadata={"help": "weight of the position loss"})
    visibility_weight: float = field(default=1.0, metadata={"help": "weight of the visibility loss"})
    certainty_weight: float = field(default=1.0, metadata={"help": "weight of the certainty loss"})
    batch_size: int = field(default=16, metadata={"help": "clips per optimiser step (over all processes)"})
    lr: float = field(default=5e-4, metadata={"help": "peak learning rate of the cosine schedule"})
    epochs: int = field(default=1, metadata={"help": "passes over the training set"})
    warmup_steps: int = field(default=50, metadata={"help": "linear learning-rate warm-up steps"})

    def validate(self) -> None:
        super().validate()
        kind = type(self).__name__
        if self.arch != "trecvit":
            raise ValueError(f"{kind}.arch must be 'trecvit' (the encoder), got {self.arch!r}")
        if self.query_mode not in QUERY_MODES:
            raise ValueError(f"{kind}.query_mode must be one of {QUERY_MODES}, got {self.query_mode!r}")
        if self.num_points < 1:
            raise ValueError(f"{kind}.num_points must be >= 1, got {self.num_points}")
        for name in ("certainty_threshold", "huber_delta"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{kind}.{name} must be > 0, got {getattr(self, name)}")
        for name in ("position_weight", "visibility_weight", "certainty_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{kind}.{name} must be >= 0, got {getattr(self, name)}")
        if self.model and self.encoder is not None and self.encoder != "random":
            raise ValueError(f"{kind}.model configures a random encoder only; the config.json of "
                             f"--encoder {self.encoder} fixes its architecture")

    def tracker_config(self, encoder) -> TrackerConfig:
        """The tracker's config around the TRecViT ``encoder`` config."""
        return TrackerConfig(encoder=encoder, width=self.readout_width, depth=self.readout_depth,
                             num_heads=self.readout_heads, mlp_dim=self.readout_mlp_dim,
                             certainty_threshold=self.certainty_threshold)


TrackerTrainConfig.__doc__ = (f"{inspect.cleandoc(TrackerTrainConfig.__doc__ or '')}\n\n"
                              f"{field_docs(TrackerTrainConfig)}")


def build_tracker(cfg: TrackerTrainConfig) -> PointTracker:
    """The tracker of ``cfg``: the encoder loaded (or drawn at random) and frozen unless
    ``finetune``, the readout initialised after ``torch.manual_seed(cfg.seed)``."""
    from trecvit.mae.probe import load_probe_encoder

    if not cfg.encoder:
        raise ValueError("TrackerTrainConfig.encoder is required (--encoder): a TRecViT save_pretrained "
                         "folder (e.g. a trecvit pretrain run's model/), an official .npz, or random")
    classifier = load_probe_encoder(cfg.encoder, variant=cfg.variant, model_overrides=cfg.model or None,
                                    image_size=cfg.image_size, num_frames=cfg.num_frames, seed=cfg.seed)
    enc = classifier.config
    if enc.posemb == "learn" and tuple(enc.image_hw) != (cfg.image_size, cfg.image_size):
        raise ValueError(f"the encoder's learnt position embedding is for "
                         f"{enc.image_hw[0]}x{enc.image_hw[1]} frames but image_size is {cfg.image_size}; "
                         f"pass --image-size {enc.image_hw[0]}")
    torch.manual_seed(cfg.seed)
    model = PointTracker(cfg.tracker_config(enc))
    model.encoder.load_state_dict(classifier.encoder.state_dict())
    return model.freeze_encoder(not cfg.finetune)


class TrackerTrainer(Trainer):
    """Runs one tracker training job described by a :class:`TrackerTrainConfig`."""

    csv_fields = CSV_FIELDS
    train_metric = None
    curve_metric = ("average_jaccard", "held-out average Jaccard (%)", 100.0, (0.0, 100.0))

    def __init__(self, config: TrackerTrainConfig, *, resume: bool = False,
                 model: PointTracker | None = None):
        if not isinstance(config, TrackerTrainConfig):
            raise TypeError(f"TrackerTrainer takes a TrackerTrainConfig, got {type(config).__name__}")
        super().__init__(config, resume=resume, model=model)

    def build_datasets(self, cfg: TrackerTrainConfig, info: distributed.DistInfo):
        from trecvit.tracking.synthetic import SyntheticTracks

        if cfg.data == "synthetic":
            records = SyntheticTracks(cfg.synthetic_train_size, num_frames=cfg.num_frames,
                                      image_size=cfg.image_size, num_points=max(cfg.num_points, 64),
                                      seed=cfg.seed)
        else:
            records = list(load_tracking_data(cfg.train_data, allow_pickle=cfg.allow_pickle).values())
        train = TrackingDataset(records, num_frames=cfg.num_frames, image_size=cfg.image_size,
                                num_points=cfg.num_points, train=True, seed=cfg.seed)
        if cfg.val_data:
            val = load_tracking_data(cfg.val_data, allow_pickle=cfg.allow_pickle)
        elif cfg.data == "synthetic" and cfg.synthetic_val_size:
            val = SyntheticTracks(cfg.synthetic_val_size, num_frames=cfg.num_frames,
                                  image_size=cfg.image_size, num_points=max(cfg.num_points, 64),
                                  seed=cfg.seed + 1000).records()
        else:
            val = None
        if info.is_main:
            logger.info("data: %d training videos (%s)%s", len(train), cfg.data,
                        f", {len(val)} held-out videos" if val is not None else "")
        return train, val, ["tracks"]

    def build(self, cfg: TrackerTrainConfig, classes: list[str]) -> nn.Module:
        return build_tracker(cfg)

    def check_model(self, model: nn.Module, classes: list[str]) -> None:
        if not isinstance(model, PointTracker):
            raise TypeError(f"TrackerTrainer trains a PointTracker, got {type(model).__name__}")

    def batch_loss(self, runner, video, labels, batch, *, step, micro, info, autocast, empty):
        cfg = self.cfg
        b, t = video.shape[:2]
        device = video.device
        if empty:  # a zero-weighted dummy: one query at the centre of frame 0
            queries = torch.tensor([[[0.0, 0.5, 0.5]]], device=device).expand(b, 1, 3)
            targets = queries[..., None, 1:].expand(b, 1, t, 2)
            occluded = torch.zeros(b, 1, t, dtype=torch.bool, device=device)
            valid = None
        else:
            queries = batch["query_points"].to(device)
            targets = batch["target_points"].to(device)
            occluded = batch["occluded"].to(device)
            valid = batch["valid"].to(device)
        with autocast:
            out = runner(video, queries)
        loss = tracking_loss(out, targets, occluded, queries, valid, huber_delta=cfg.huber_delta,
                             certainty_threshold=cfg.certainty_threshold, position_weight=cfg.position_weight,
                             visibility_weight=cfg.visibility_weight, certainty_weight=cfg.certainty_weight)
        return loss.total, None

    def evaluate_model(self, cfg, info, device, model, val_set) -> TrackingResult:
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16)
        with autocast:
            mine = evaluate_tracker(model, val_set, query_mode=cfg.query_mode,
                                    image_size=cfg.image_size, progress=cfg.progress and info.is_main,
                                    rank=info.rank, world_size=info.world_size)
        parts = distributed.all_gather_objects(mine, info)
        rows = sorted(((name, {k: float(v[i]) for k, v in part.per_video.items()})
                       for part in parts for i, name in enumerate(part.names)), key=lambda r: r[0])
        return result_from_rows(rows, cfg.query_mode, sum(p.num_queries for p in parts),
                                mine.frames_per_second, [s for p in parts for s in p.skipped])

    def eval_row(self, result: TrackingResult) -> dict[str, float]:
        m = result.mean
        return dict(average_jaccard=m["average_jaccard"], occlusion_accuracy=m["occlusion_accuracy"],
                    average_pts_within_thresh=m["average_pts_within_thresh"])

    def eval_text(self, result: TrackingResult) -> str:
        m = result.mean
        return (f"held-out average Jaccard {100 * m['average_jaccard']:.1f}%, <δ avg "
                f"{100 * m['average_pts_within_thresh']:.1f}%, occlusion accuracy "
                f"{100 * m['occlusion_accuracy']:.1f}% ({m['num_videos']} videos, {result.query_mode} mode)")

    def report_final(self, out: Path, result: TrackingResult, classes: list[str]) -> None:
        logger.info("final: %s", self.eval_text(result))
        text = json.dumps(result.to_dict(), indent=2) + "\n"
        atomic_write(out / "tapvid.json", lambda p: p.write_text(text, encoding="utf-8"))

    def save_model(self, out: Path, model: nn.Module, classes: list[str]) -> Path:
        cfg = self.cfg
        return model.save_pretrained(out / "model", preprocessor=PreprocessorConfig(
            num_frames=cfg.num_frames, stride=1, image_size=cfg.image_size))


def mean_text(result: TrackingResult) -> str:
    """One line: AJ, <δ avg and OA of a result, in percent."""
    m = result.mean
    parts = [f"{label} {100 * m[k]:.1f}%" if not math.isnan(m[k]) else f"{label} -"
             for label, k in (("AJ", "average_jaccard"), ("<δ avg", "average_pts_within_thresh"),
                              ("OA", "occlusion_accuracy"))]
    return ", ".join(parts)
