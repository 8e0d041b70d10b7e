"""Supervised video classification: the training loop behind ``trecvit train``.

One optimiser step takes ``batch_size`` clips, split over the processes and
``grad_accum`` micro-batches. Which clips, their augmentation and mixup are pure
functions of ``(seed, step)``; with the checkpointed model and optimiser state
this makes ``--resume`` continue exactly where the run stopped.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from trecvit.checkpoints.integrity import atomic_write
from trecvit.checkpoints.pretrained import PreprocessorConfig
from trecvit.training import distributed
from trecvit.training.checkpoint import latest_checkpoint, load_latest_checkpoint, save_checkpoint
from trecvit.training.config import TrainConfig
from trecvit.training.data import StepPlan, build_datasets, eval_loader, train_loader
from trecvit.training.metrics import (CSV_FIELDS, EvalResult, MetricsLog, per_class_table, plot_curves,
                                      write_per_class_csv)
from trecvit.training.optim import ModelEma, build_optimizer, lr_at

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Too many optimiser steps in a row had a non-finite loss or gradient."""


@dataclass
class TrainResult:
    """What a finished run produced."""

    out_dir: Path
    steps: int
    skipped_steps: int
    final_eval: EvalResult | None
    model_dir: Path | None
    classes: list[str]
    seconds: float


def build_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    """The model of ``cfg`` (architecture ``cfg.arch`` of the table, size ``cfg.variant``) for
    ``num_classes`` classes, initialised as ``cfg.init`` / ``cfg.vit_init`` say (seeded by
    ``cfg.seed``)."""
    from trecvit.architectures import get_architecture
    from trecvit.checkpoints.weights import checkpoint_config, init_model_weights, load_vit_weights

    row = get_architecture(cfg.arch)
    overrides = dict(cfg.model)
    given = overrides.get("num_classes")
    if given is not None and given != num_classes:
        raise ValueError(f"model.num_classes={given} but the data has {num_classes} classes")
    overrides["num_classes"] = num_classes
    overrides.setdefault("image_size", cfg.image_size)
    overrides.setdefault("frames_per_clip", cfg.num_frames)
    base = checkpoint_config(cfg.init) if cfg.init != "scratch" else None
    if base is not None:  # fine-tuning: the architecture's sizes come from the checkpoint
        if not isinstance(base, row.config_class):
            raise ValueError(f"--init {cfg.init} holds a {type(base).__name__}, but --arch {cfg.arch} "
                             f"takes a {row.config_class.__name__}")
        model_config = base.replace(**overrides)
    else:
        model_config = row.config(cfg.variant, **overrides)
    torch.manual_seed(cfg.seed)
    model = row.build(model_config)
    if cfg.init != "scratch":
        logger.info("init from %s: %s", cfg.init, init_model_weights(model, cfg.init).summary())
    if cfg.vit_init:
        norm = None if cfg.vit_input_norm == "none" else cfg.vit_input_norm
        report = load_vit_weights(model, cfg.vit_init, input_norm=norm)
        logger.info("ViT init from %s: %s", cfg.vit_init, report.summary())
    return model


def _views(video: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``[b, T, 3, H, W]`` or ``[b, V, T, 3, H, W]`` -> ``([b V, T, 3, H, W], V)``."""
    if video.dim() == 5:
        return video, 1
    b, v = video.shape[:2]
    return video.reshape(b * v, *video.shape[2:]), v  # (b V, T, 3, H, W)


@torch.no_grad()
def evaluate(model: nn.Module, dataset, *, device: torch.device, batch_size: int = 8, bf16: bool = False,
             num_workers: int = 0, info: distributed.DistInfo | None = None,
             progress: bool = False) -> EvalResult:
    """Video-level accuracy on ``dataset``: each video's views (temporal clips x
    spatial crops) are classified and their probabilities averaged.

    Under ``torchrun`` every process evaluates its share and all get the whole result.
    Videos that cannot be decoded are counted in ``num_failed`` and left out.
    """
    info = info or distributed.DistInfo()
    was_training = model.training
    model.eval()
    indices, probs, labels, failed = [], [], [], 0
    loader = eval_loader(dataset, batch_size, info.rank, info.world_size, num_workers)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    for batch in tqdm(loader, desc="evaluating", leave=False, disable=not (progress and info.is_main)):
        failed += len(batch.get("failed", []))
        if batch["video"] is None or batch["video"].shape[0] == 0:
            continue
        video, v = _views(batch["video"].to(device))
        with autocast:
            logits = model(video).logits
        p = logits.float().softmax(dim=-1).view(-1, v, logits.shape[-1]).mean(dim=1)  # (b, classes)
        probs.append(p.cpu())
        labels.append(batch["label"])
        indices.append(batch["index"])
    model.train(was_training)
    local = (torch.cat(indices) if indices else torch.zeros(0, dtype=torch.long),
             torch.cat(probs) if probs else torch.zeros(0, 0),
             torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long), failed)
    parts = distributed.all_gather_objects(local, info)
    idx = torch.cat([p[0] for p in parts])
    order = idx.argsort()
    all_probs = torch.cat([p[1] for p in parts if p[1].numel()]) if idx.numel() else torch.zeros(0, 0)
    all_labels = torch.cat([p[2] for p in parts])
    return EvalResult.from_scores(all_probs[order] if idx.numel() else all_probs,
                                  all_labels[order], sum(p[3] for p in parts))


class Trainer:
    """Runs one training job described by a :class:`TrainConfig`.

    The loop (schedule, accumulation, bfloat16, DDP, non-finite steps, checkpoints, exact
    resume, logs) is task-independent; a task subclasses it and overrides the hooks
    :meth:`build`, :meth:`batch_loss`, :meth:`evaluate_model`, :meth:`eval_row`,
    :meth:`eval_text`, :meth:`report_final` and :meth:`save_model` (as
    :class:`trecvit.mae.Pretrainer` does), and sets ``csv_fields`` / ``curve_metric``.
    This class is supervised classification.

    Args:
        config: the run. Its ``out_dir`` must not hold another run's checkpoints
            unless ``resume``.
        resume: continue from the newest complete checkpoint in
            ``out_dir/checkpoints`` (starts afresh, with a message, if there is none).
        model: an already-built model to train instead of building one from the
            config (its ``config.num_classes`` must match the data).
    """

    csv_fields: tuple[str, ...] = CSV_FIELDS  # the columns of metrics.csv
    train_metric: str | None = "top1"  # the per-clip training metric batch_loss sums, logged as this
    curve_metric: tuple[str, str, float, tuple[float, float] | None] = (
        "top1", "validation top-1 (%)", 100.0, (0.0, 100.0))  # curves.png's right panel

    def __init__(self, config: TrainConfig, *, resume: bool = False, model: nn.Module | None = None):
        self.cfg = config
        self.resume = resume
        self._model = model
        self.classes: list[str] = []  # the data's class names, once the run has started

    # ------------------------------------------------------------------ hooks
    def build(self, cfg: TrainConfig, classes: list[str]) -> nn.Module:
        """The model to train (unless one was given to the constructor)."""
        return build_model(cfg, len(classes))

    def build_datasets(self, cfg: TrainConfig, info: distributed.DistInfo):
        """``(train set, validation set or None, class names)``."""
        return build_datasets(cfg, log=info.is_main)

    def check_model(self, model: nn.Module, classes: list[str]) -> None:
        """Refuse a model that does not fit the data."""
        if model.config.num_classes != len(classes):
            raise ValueError(f"the model has {model.config.num_classes} classes, the data {len(classes)}")

    def batch_loss(self, runner: nn.Module, video: torch.Tensor, labels: torch.Tensor, batch: dict, *,
                   step: int, micro: int, info: distributed.DistInfo, autocast, empty: bool
                   ) -> tuple[torch.Tensor, float | None]:
        """``(loss, metric)`` of one micro-batch: the float32 loss to back-propagate (its mean over
        the clips) and the sum over its clips of the training metric (``None``: none)."""
        cfg = self.cfg
        targets = labels
        mixing = cfg.mixup > 0 or cfg.cutmix > 0
        if mixing and not empty:
            from trecvit.data.transforms import mixup_cutmix

            seed = ((cfg.seed * 1_000_003 + step) * 257 + info.rank) * 17 + micro
            video, targets = mixup_cutmix(
                video, labels, len(self.classes), mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix,
                label_smoothing=cfg.label_smoothing, generator=torch.Generator().manual_seed(seed))
            targets = targets.to(video.device)
        with autocast:
            logits = runner(video).logits
        loss = F.cross_entropy(logits.float(), targets,
                               label_smoothing=0.0 if mixing else cfg.label_smoothing)
        return loss, float((logits.detach().argmax(-1) == labels).sum().item())

    def evaluate_model(self, cfg: TrainConfig, info: distributed.DistInfo, device: torch.device,
                       model: nn.Module, val_set):
        """The held-out evaluation (of the weights in ``model``: the EMA's when there is one)."""
        micro = max(cfg.batch_size // (info.world_size * cfg.grad_accum), 1)
        return evaluate(model, val_set, device=device, batch_size=micro, bf16=cfg.bf16,
                        num_workers=cfg.num_workers, info=info, progress=cfg.progress)

    def eval_row(self, result) -> dict[str, float]:
        """The ``val`` row of metrics.csv for an evaluation result."""
        return dict(loss=result.loss, top1=result.top1, top5=result.top5)

    def eval_text(self, result) -> str:
        """One line for the console after an evaluation."""
        return (f"val loss {result.loss:.4f}, top-1 {100 * result.top1:.2f}%, top-5 "
                f"{100 * result.top5:.2f}% ({result.num_videos} videos)")

    def report_final(self, out: Path, result, classes: list[str]) -> None:
        """Log the final evaluation and write its files (main process only)."""
        logger.info("final: top-1 %.2f%%, top-5 %.2f%% on %d videos\n%s", 100 * result.top1,
                    100 * result.top5, result.num_videos, per_class_table(result, classes))
        write_per_class_csv(out / "per_class.csv", result, classes)

    def save_model(self, out: Path, model: nn.Module, classes: list[str]) -> Path:
        """Save the trained model (main process only); returns its folder."""
        cfg = self.cfg
        model_dir = out / "model"
        model.save_pretrained(model_dir, preprocessor=PreprocessorConfig(
            num_frames=cfg.num_frames, stride=cfg.stride, image_size=cfg.image_size))
        (model_dir / "classes.txt").write_text("\n".join(classes) + "\n", encoding="utf-8")
        return model_dir

    # ----------------------------------------------------------------- set-up
    def _check_out_dir(self, info: distributed.DistInfo) -> Path:
        out = Path(self.cfg.out_dir)
        ckpt_dir = out / "checkpoints"
        if latest_checkpoint(ckpt_dir) is not None and not self.resume:
            raise ValueError(f"{out} already holds a training run (checkpoints in {ckpt_dir}); pass "
                             "--resume to continue it, or choose another --out-dir")
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out-dir {out} exists and is not a directory")
        return out

    def _write_config(self, out: Path, info: distributed.DistInfo) -> None:
        """Create the run folder with its ``config.yaml`` (once the data and model are built, so a
        bad option leaves nothing behind)."""
        if info.is_main:
            out.mkdir(parents=True, exist_ok=True)
            text = self.cfg.to_yaml()
            atomic_write(out / "config.yaml", lambda tmp: tmp.write_text(text, encoding="utf-8"))
        distributed.barrier(info)

    def fit(self) -> TrainResult:
        """Train, evaluate, save; returns a :class:`TrainResult` (on every process)."""
        cfg = self.cfg
        info, device = distributed.setup(cfg.device)
        try:
            return self._fit(cfg, info, device)
        finally:
            distributed.cleanup()

    def _fit(self, cfg: TrainConfig, info: distributed.DistInfo, device: torch.device) -> TrainResult:
        t_start = time.perf_counter()
        out = self._check_out_dir(info)
        train_set, val_set, classes = self.build_datasets(cfg, info)
        self.classes = classes
        plan = StepPlan(len(train_set), cfg.batch_size, info.world_size, cfg.grad_accum, cfg.seed)
        total_steps = cfg.max_steps or cfg.epochs * plan.steps_per_epoch

        model = self._model if self._model is not None else self.build(cfg, classes)
        self.check_model(model, classes)
        self._write_config(out, info)
        model.to(device)
        if cfg.grad_checkpointing:
            model.set_grad_checkpointing(True)
        optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2))
        ema = ModelEma(model, cfg.ema_decay) if cfg.ema_decay else None
        step, skipped = 0, 0
        metrics = MetricsLog(out, tensorboard=cfg.tensorboard and info.is_main,
                             fields=self.csv_fields) if info.is_main else None

        loaded = None
        if self.resume:  # the newest checkpoint that reads back intact
            loaded = load_latest_checkpoint(out / "checkpoints", device, move_aside=info.is_main)
        if loaded is not None:
            resume_from, payload = loaded
            saved = type(cfg).from_dict(payload["config"], source=str(resume_from))
            changed = saved.semantic_differences(cfg)
            if changed:
                raise ValueError(f"cannot resume {out}: the configuration differs from the "
                                 f"checkpoint's in {'; '.join(changed)}")
            try:
                model.load_state_dict(payload["model"])
                optimizer.load_state_dict(payload["optimizer"])
                if ema is not None:
                    ema.load_state_dict(payload["ema"])
            except (RuntimeError, ValueError, KeyError, TypeError) as err:
                raise ValueError(f"{resume_from} does not fit the model and optimiser of this run: "
                                 f"{err}") from err
            step, skipped = int(payload["step"]), int(payload.get("skipped_steps", 0))
            if metrics is not None:
                metrics.truncate_after(step)
            if info.is_main:
                logger.info("resumed from %s (step %d of %d)", resume_from, step, total_steps)
        elif self.resume and info.is_main:
            logger.info("no checkpoint in %s: starting a new run", out / "checkpoints")
            if metrics is not None:  # rows logged by a run killed before its first checkpoint
                metrics.truncate_after(0)

        runner: nn.Module = model
        if info.enabled:
            runner = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
        if cfg.compile:
            runner = torch.compile(runner)
        if info.is_main:
            logger.info("model: %s, %s parameters; %d steps of %d clips (%d per epoch), %d process(es)",
                        cfg.arch, f"{sum(p.numel() for p in model.parameters()):,}", total_steps,
                        cfg.batch_size, plan.steps_per_epoch, info.world_size)

        skipped = self._loop(cfg, info, device, model, runner, optimizer, ema, metrics, plan, train_set,
                             val_set, classes, step, total_steps, skipped, out)
        final = None
        model_dir = None
        if val_set is not None:
            final = self._evaluate(cfg, info, device, model, ema, val_set)
        if info.is_main:
            if final is not None:
                self.report_final(out, final, classes)
                metrics.log(total_steps, total_steps / plan.steps_per_epoch, "val", **self.eval_row(final))
            with ema.swap_into(model) if ema is not None else contextlib.nullcontext():
                model_dir = self.save_model(out, model, classes)
            metrics.close()
            name, label, scale, ylim = self.curve_metric
            plot_curves({cfg.arch: out / "metrics.csv"}, out / "curves.png", title=f"{cfg.arch} ({out.name})",
                        metric=name, metric_label=label, scale=scale, ylim=ylim)
            logger.info("saved %s, %s and %s", model_dir, out / "metrics.csv", out / "curves.png")
        distributed.barrier(info)
        return TrainResult(out, total_steps, skipped, final, model_dir, classes,
                           time.perf_counter() - t_start)

    def _evaluate(self, cfg, info, device, model, ema, val_set):
        with ema.swap_into(model) if ema is not None else contextlib.nullcontext():
            return self.evaluate_model(cfg, info, device, model, val_set)

    # ------------------------------------------------------------------- loop
    def _loop(self, cfg, info, device, model, runner, optimizer, ema, metrics, plan, train_set, val_set,
              classes, start_step, total_steps, skipped, out) -> int:
        loader = train_loader(train_set, plan, start_step, total_steps, info.rank, cfg.num_workers,
                              pin_memory=device.type == "cuda")
        batches = iter(loader)
        params = [p for p in model.parameters() if p.requires_grad]
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16)
        consecutive = 0
        failed_videos: list[tuple[int, str]] = []
        window = {"loss": 0.0, "clips": 0, "t": time.perf_counter(), "top1": 0.0}
        bar = tqdm(total=total_steps, initial=start_step, desc="training", unit="step", dynamic_ncols=True,
                   disable=not (cfg.progress and info.is_main))
        model.train()
        for step in range(start_step, total_steps):
            lr = lr_at(step, total_steps=total_steps, warmup_steps=cfg.warmup_steps, lr=cfg.lr,
                       min_lr=cfg.min_lr)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            stats = torch.zeros(4, dtype=torch.float64)  # loss sum, clips, metric sum, non-finite flag
            for a in range(cfg.grad_accum):
                batch = next(batches)
                failed_videos.extend(batch.get("failed", []))
                sync = a == cfg.grad_accum - 1 or not info.enabled
                empty = batch["video"] is None or batch["video"].shape[0] == 0
                if empty:
                    # every clip of this micro-batch failed to decode: run a zero-weighted dummy clip,
                    # so that the gradient is zero and every process still joins the all-reduce
                    video = torch.zeros(1, cfg.num_frames, 3, cfg.image_size, cfg.image_size, device=device)
                    labels = torch.zeros(1, dtype=torch.long, device=device)
                else:
                    video = batch["video"].to(device, non_blocking=True)
                    labels = batch["label"].to(device)
                skip_sync = not sync and hasattr(runner, "no_sync")  # DDP: all-reduce on the last micro-batch
                with runner.no_sync() if skip_sync else contextlib.nullcontext():
                    loss, metric = self.batch_loss(runner, video, labels, batch, step=step, micro=a,
                                                   info=info, autocast=autocast, empty=empty)
                    ((loss * 0.0 if empty else loss) / cfg.grad_accum).backward()
                if empty:
                    continue
                n = labels.shape[0]
                value = loss.detach().item()
                if math.isfinite(value):
                    stats[0] += value * n
                else:
                    stats[3] = 1
                stats[1] += n
                stats[2] += metric or 0.0
            if cfg.clip_grad:
                grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad)
            else:
                grad_norm = torch.linalg.vector_norm(
                    torch.stack([p.grad.norm() for p in params if p.grad is not None]))
            if not torch.isfinite(grad_norm):
                stats[3] = 1
            stats = distributed.all_reduce_sum(stats.to(device), info).cpu()
            if stats[3] > 0:
                skipped += 1
                consecutive += 1
                optimizer.zero_grad(set_to_none=True)
                if info.is_main:
                    logger.warning("step %d: non-finite loss or gradient; step skipped (%d in a row, "
                                   "%d in all)", step, consecutive, skipped)
                if consecutive >= cfg.max_nonfinite:
                    raise NonFiniteLossError(
                        f"{consecutive} optimiser steps in a row (up to step {step}) had a non-finite "
                        f"loss or gradient; stopping. The weights were not updated by those steps; the "
                        f"last checkpoint in {out / 'checkpoints'} is intact. Lower the learning rate "
                        f"(lr={cfg.lr}), enable clip_grad, or check the data for NaNs.")
            else:
                consecutive = 0
                optimizer.step()
                if ema is not None:
                    ema.update(model)
            window["loss"] += float(stats[0])
            window["clips"] += int(stats[1])
            window["top1"] += float(stats[2])
            done = step + 1
            epoch_f = done / plan.steps_per_epoch
            if info.is_main:
                bar.update(1)
            if done % cfg.log_every == 0 or done == total_steps:
                elapsed = time.perf_counter() - window["t"]
                clips = max(window["clips"], 1)
                mean_loss = window["loss"] / clips
                rate = window["clips"] / max(elapsed, 1e-9)
                if info.is_main:
                    bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.2e}", clips_s=f"{rate:.1f}")
                    train_metric = {self.train_metric: window["top1"] / clips} if self.train_metric else {}
                    metrics.log(done, epoch_f, "train", loss=mean_loss, lr=lr, clips_per_s=rate,
                                skipped=skipped, **train_metric)
                    if not cfg.progress:
                        logger.info("step %d/%d  loss %.4f  lr %.2e  %.1f clips/s", done, total_steps,
                                    mean_loss, lr, rate)
                window = {"loss": 0.0, "clips": 0, "t": time.perf_counter(), "top1": 0.0}
            epoch_end = done % plan.steps_per_epoch == 0
            if (cfg.save_every and done % cfg.save_every == 0) or (not cfg.save_every and epoch_end) \
                    or done == total_steps:
                if info.is_main:
                    save_checkpoint(out / "checkpoints", done, {
                        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "ema": ema.state_dict() if ema is not None else None,
                        "config": cfg.to_dict(), "skipped_steps": skipped, "classes": classes,
                    }, keep_last=cfg.keep_last)
                distributed.barrier(info)
            if epoch_end and failed_videos:
                self._warn_failed(failed_videos, done // plan.steps_per_epoch, info)
                failed_videos = []
            if epoch_end and val_set is not None and done < total_steps \
                    and (done // plan.steps_per_epoch) % cfg.eval_every == 0:
                result = self._evaluate(cfg, info, device, model, ema, val_set)
                if info.is_main:
                    metrics.log(done, epoch_f, "val", **self.eval_row(result))
                    bar.write(f"epoch {done // plan.steps_per_epoch}: {self.eval_text(result)}")
                model.train()
                window["t"] = time.perf_counter()  # throughput counts training time only
        bar.close()
        if failed_videos:
            self._warn_failed(failed_videos, None, info)
        return skipped

    @staticmethod
    def _warn_failed(failed: list[tuple[int, str]], epoch: int | None, info) -> None:
        examples = "; ".join(err for _, err in failed[:3])
        where = f"in epoch {epoch}" if epoch is not None else "in the last partial epoch"
        warnings.warn(f"{len(failed)} training video(s) could not be decoded {where} (process "
                      f"{info.rank}) and were skipped, e.g. {examples}", RuntimeWarning, stacklevel=2)
