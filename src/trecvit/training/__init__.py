"""Training TRecViT: supervised video classification (``trecvit train``).

- :class:`TrainConfig`: every option of a run, from YAML and the command line.
- :class:`Trainer`: the loop (AdamW, warm-up + cosine, clipping, accumulation,
  bfloat16, EMA, activation checkpointing, ``torch.compile``, DDP under
  ``torchrun``), atomic checkpoints and exact ``--resume``; other tasks subclass
  it and override its hooks (``trecvit pretrain``: :class:`trecvit.mae.Pretrainer`).
- :func:`evaluate`: multi-view, video-level accuracy.
"""

from trecvit.training.config import TrainConfig
from trecvit.training.metrics import EvalResult
from trecvit.training.trainer import NonFiniteLossError, Trainer, TrainResult, build_model, evaluate

__all__ = ["EvalResult", "NonFiniteLossError", "TrainConfig", "TrainResult", "Trainer", "build_model",
           "evaluate"]
