"""Classifying videos with a trained model: clip settings, full-clip and streaming runs.

These are the functions behind ``trecvit classify``; they are usable from
Python as well. Each takes a model, or a model prepared for a precision
(:func:`trecvit.tools.precision.prepare_model`: fp32, bf16 or int8, eager or
compiled, as ``classify --precision ... --compile`` does)::

    runner = prepare_model(load_model(checkpoint), "int8")
    classify_video(runner, "clip.mp4", labels)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from trecvit.base import VideoClassifier
from trecvit.checkpoints.auto import CHECKPOINT_ENV, load_model, model_folder
from trecvit.checkpoints.pretrained import PreprocessorConfig, read_preprocessor
from trecvit.classification.labels import top_k
from trecvit.io import iter_frames, read_video
from trecvit.model import TRecViT

if TYPE_CHECKING:
    from trecvit.tools.precision import InferenceModel

__all__ = ["CHECKPOINT_ENV", "Prediction", "StreamUpdate", "classify_stream", "classify_video",
           "clip_settings", "format_top", "load_model", "stream_video"]

def clip_settings(model: VideoClassifier, checkpoint: str | Path | None = None) -> PreprocessorConfig:
    """The clip settings to run ``model`` with: those it was trained with (the
    ``preprocessor_config.json`` of its ``checkpoint`` folder, written by ``trecvit train``), or
    else its own: ``frames_per_clip`` frames (when the config has it), stride 1, its frame size."""
    folder = model_folder(checkpoint) if checkpoint is not None else None
    saved = read_preprocessor(folder) if folder is not None else None
    if saved is not None:
        return saved
    cfg = model.config
    return PreprocessorConfig(num_frames=getattr(cfg, "frames_per_clip", 16), stride=1,
                              image_size=cfg.image_hw)


@dataclass
class Prediction:
    """Top-k classes of one video: ``(index, name, probability)`` triples, best first."""

    path: str
    top: list[tuple[int, str, float]]
    num_frames: int
    seconds: float

    def to_dict(self) -> dict:
        return {"video": self.path, "frames": self.num_frames, "seconds": round(self.seconds, 4),
                "top": [{"index": i, "label": n, "prob": round(p, 6)} for i, n, p in self.top]}


@torch.inference_mode()
def classify_video(model: VideoClassifier | InferenceModel, path: str | Path, labels: list[str], *,
                   num_frames: int | None = None, top: int = 5, image_size: tuple[int, int] | None = None,
                   **read_kwargs) -> Prediction:
    """Classify one video file as a whole: ``num_frames`` frames (default: the model's
    ``frames_per_clip``) sampled as ``read_kwargs`` say (:func:`trecvit.io.read_video`),
    resized and centre-cropped to ``image_size`` (default: the model's). ``model`` may be
    an :class:`~trecvit.tools.precision.InferenceModel`; ``seconds`` is its call alone."""
    cfg = model.config
    num_frames = num_frames or clip_settings(model).num_frames
    device = model.device
    video = read_video(path, num_frames, image_size or cfg.image_hw, **read_kwargs).to(device)  # (t, 3, H, W)
    start = time.perf_counter()
    out = model(video[None])
    seconds = time.perf_counter() - start
    return Prediction(str(path), top_k(out.probs[0], labels, top), num_frames, seconds)


@dataclass
class StreamUpdate:
    """One frame of a streamed video: its index, the running top-k, and timings."""

    frame: int
    top: list[tuple[int, str, float]]
    step_seconds: float


@torch.inference_mode()
def stream_video(model: TRecViT | InferenceModel, path: str | Path, labels: list[str], *, top: int = 5,
                 stride: int = 1, offset: int = 0, max_frames: int | None = None,
                 image_size: tuple[int, int] | None = None) -> Iterator[StreamUpdate]:
    """Decode ``path`` lazily and run it frame by frame through :meth:`TRecViT.step` (or
    the step of an :class:`~trecvit.tools.precision.InferenceModel`, in its precision),
    yielding the running prediction after every frame."""
    model.require_streaming("streaming a video (classify it as a whole instead)")
    device = model.device
    image_size = image_size or model.config.image_hw
    state = model.init_state(1, image_size=image_size, device=device)
    frames = iter_frames(path, image_size, stride=stride, offset=offset, max_frames=max_frames)
    for index, frame in enumerate(frames):
        start = time.perf_counter()
        out, state = model.step(frame.to(device)[None], state)
        probs = out.probs[0].cpu()
        yield StreamUpdate(index, top_k(probs, labels, top), time.perf_counter() - start)


def format_top(top: list[tuple[int, str, float]]) -> str:
    """The top-k lines of ``trecvit classify``."""
    return "\n".join(f"  {rank:>2}. {name:<40s} {prob:7.2%}  (class {index})"
                     for rank, (index, name, prob) in enumerate(top, 1))


def classify_stream(model: TRecViT | InferenceModel, path: str | Path, labels: list[str], *, top: int = 5,
                    stride: int = 1, offset: int = 0, max_frames: int | None = None,
                    image_size: tuple[int, int] | None = None, print_every: int = 1,
                    json_lines: bool = False, write: Callable[[str], None] = print) -> StreamUpdate:
    """:func:`stream_video` with a report (``trecvit classify --stream``): the running top-1 every
    ``print_every`` frames (or one JSON object per frame with ``json_lines``), then the final
    top-k and the frames per second, each line passed to ``write``. Returns the last update;
    ``ValueError`` when the video yields no frame."""
    start = time.perf_counter()
    step_seconds = 0.0
    update = None
    for update in stream_video(model, path, labels, top=top, stride=stride, offset=offset,
                               max_frames=max_frames, image_size=image_size):
        step_seconds += update.step_seconds
        n = update.frame + 1
        best = update.top[0]
        if json_lines:
            write(json.dumps({"video": str(path), "frame": update.frame, "index": best[0],
                              "label": best[1], "prob": round(best[2], 6)}))
        elif n % print_every == 0:
            write(f"{path} frame {update.frame:5d}  top-1: {best[1]} ({best[2]:.1%})  "
                  f"{n / step_seconds:6.1f} frames/s")
    if update is None:
        raise ValueError(f"{path}: no frames to stream (offset {offset} beyond the end?)")
    n = update.frame + 1
    wall = time.perf_counter() - start
    if not json_lines:
        write(f"{path}: after {n} frames (streamed)\n{format_top(update.top)}")
        write(f"{n} frames: {n / step_seconds:.1f} frames/s in model.step, "
              f"{n / wall:.1f} frames/s with decoding")
    return update
