"""Architectures other than TRecViT, for comparison: one file per architecture.

Each baseline takes the same input as TRecViT (videos ``[B, T, 3, H, W]`` with
RGB in ``[0, 1]``), returns the same output dataclass, and is a row of the
architecture table (:mod:`trecvit.architectures`), so ``trecvit train --arch``,
``evaluate``, ``classify``, ``save_pretrained`` / ``from_pretrained`` and the
weight initialisers work for it unchanged. Today:
:class:`~trecvit.baselines.frame_average.FrameAverageViT`, the order-blind
per-frame ViT of ``trecvit demo``.
"""

from trecvit.baselines.frame_average import FrameAverageViT

__all__ = ["FrameAverageViT"]
