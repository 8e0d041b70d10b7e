"""Classifying videos with a trained TRecViT: loading, labels, full-clip and streaming runs.

These are the functions behind ``trecvit classify``; they are usable from
Python as well.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from trecvit.checkpoints.official import OFFICIAL_CHECKPOINT_URL, load_official_checkpoint
from trecvit.classification.labels import top_k
from trecvit.io import iter_frames, read_video
from trecvit.model import TRecViT

CHECKPOINT_ENV = "TRECVIT_CHECKPOINT"


def how_to_get_checkpoint() -> str:
    """Where the official checkpoint is published and how to prepare it."""
    return (f"The official TRecViT-B Kinetics-400 checkpoint is published at\n"
            f"  {OFFICIAL_CHECKPOINT_URL}\n"
            f"Download it, convert it once with\n"
            f"  trecvit convert trecvit_B_k400.npz checkpoints/trecvit_B_k400\n"
            f"then pass --checkpoint checkpoints/trecvit_B_k400 (or set {CHECKPOINT_ENV}).")


def load_model(checkpoint: str | Path | None, device: str | torch.device = "cpu") -> TRecViT:
    """Load a model from a ``save_pretrained`` folder or an official ``.npz`` file.

    ``None`` falls back to the ``TRECVIT_CHECKPOINT`` environment variable. A
    missing checkpoint raises ``FileNotFoundError`` saying how to get one.
    """
    if checkpoint is None:
        checkpoint = os.environ.get(CHECKPOINT_ENV) or None
    if checkpoint is None:
        raise FileNotFoundError("no checkpoint given (--checkpoint).\n" + how_to_get_checkpoint())
    path = Path(checkpoint)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} not found.\n" + how_to_get_checkpoint())
    if path.is_file() and path.suffix == ".safetensors":
        model = TRecViT.from_pretrained(path.parent)  # the weights file of a converted folder
    elif path.is_file():
        model = load_official_checkpoint(path)
    else:
        model = TRecViT.from_pretrained(path)
    return model.to(device).eval()


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
def classify_video(model: TRecViT, path: str | Path, labels: list[str], *, num_frames: int | None = None,
                   top: int = 5, **read_kwargs) -> Prediction:
    """Classify one video file as a whole (``num_frames`` sampled, default ``frames_per_clip``)."""
    cfg = model.config
    num_frames = num_frames or cfg.frames_per_clip
    device = model.tokenizer.patch_embed.weight.device
    video = read_video(path, num_frames, cfg.image_hw, **read_kwargs).to(device)  # (t, 3, H, W)
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
def stream_video(model: TRecViT, path: str | Path, labels: list[str], *, top: int = 5,
                 stride: int = 1, offset: int = 0, max_frames: int | None = None
                 ) -> Iterator[StreamUpdate]:
    """Decode ``path`` lazily and run it frame by frame through :meth:`TRecViT.step`,
    yielding the running prediction after every frame."""
    cfg = model.config
    device = model.tokenizer.patch_embed.weight.device
    state = model.init_state(1, device=device)
    frames = iter_frames(path, cfg.image_hw, stride=stride, offset=offset, max_frames=max_frames)
    for index, frame in enumerate(frames):
        start = time.perf_counter()
        out, state = model.step(frame.to(device)[None], state)
        probs = out.probs[0].cpu()
        yield StreamUpdate(index, top_k(probs, labels, top), time.perf_counter() - start)
