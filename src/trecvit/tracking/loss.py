"""The point-tracking losses (TAPIR's, Doersch et al., 2023): positions, visibility, certainty.

For each query point, the frames after its query frame count (up to its query
frame, a causal tracker's outputs are the query itself):

* **position**: Huber loss (``delta`` pixels) on the predicted ``(x, y)`` in the
  pixels of a 256 x 256 frame, summed over ``x`` and ``y``, on the frames where
  the point is visible;
* **visibility**: binary cross-entropy of the visibility logit against "visible";
* **certainty**: binary cross-entropy of the certainty logit against "the
  predicted position is within ``certainty_threshold`` pixels of the truth"
  (the position detached: this loss teaches the tracker to know when it is
  right, not to move), on the frames where the point is visible.

Each term is a mean over the clips of its mean over the entries (points x frames)
it counts in the clip; the total is their weighted sum.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from trecvit.tracking.model import TrackingOutput

FRAME_PIXELS = 256.0  # TAP-Vid's frame: positions and thresholds are in pixels of a 256 x 256 frame


class TrackingLoss(NamedTuple):
    """The weighted total (to back-propagate) and its float32 terms."""

    total: torch.Tensor
    position: torch.Tensor
    visibility: torch.Tensor
    certainty: torch.Tensor


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean over clips of each clip's mean over its counted entries (``x``, ``mask [b, n, t]``):
    every clip weighs the same, so the mean over a batch split between processes is the mean of
    their means."""
    per_clip = (x * mask).sum(dim=(1, 2)) / mask.sum(dim=(1, 2)).clamp(min=1)
    return per_clip.mean()


def tracking_loss(out: TrackingOutput, target_points: torch.Tensor, occluded: torch.Tensor,
                  query_points: torch.Tensor, valid: torch.Tensor | None = None, *, huber_delta: float = 4.0,
                  certainty_threshold: float = 8.0, position_weight: float = 0.1,
                  visibility_weight: float = 1.0, certainty_weight: float = 1.0) -> TrackingLoss:
    """The losses of ``out`` (``positions [b, n, t, 2]``, logits ``[b, n, t]``).

    Args:
        target_points: ``[b, n, t, 2]`` the true normalised ``(x, y)``.
        occluded: ``[b, n, t]`` bool, the true occlusion flags.
        query_points: ``[b, n, 3]`` ``(t, x, y)``; frames up to ``t`` do not count.
        valid: ``[b, n]`` bool, the rows that are real points (``False``: padding); all by default.
        huber_delta: the Huber loss's quadratic range, in pixels of a 256 x 256 frame.
        certainty_threshold: pixels (256 x 256) within which a prediction counts as certain.
        position_weight, visibility_weight, certainty_weight: the terms' weights.
    """
    b, n, t = occluded.shape
    if out.positions.shape != (b, n, t, 2) or target_points.shape != (b, n, t, 2):
        raise ValueError(f"tracks {tuple(out.positions.shape)} and targets {tuple(target_points.shape)} "
                         f"must both be [b, n, t, 2] with occluded {tuple(occluded.shape)}")
    frames = torch.arange(t, device=occluded.device)
    counted = frames[None, None] > query_points[..., :1].round().long()  # (b, n, t)
    if valid is not None:
        counted = counted & valid[..., None].bool()
    visible = ~occluded.bool()
    scored = (counted & visible).float()
    pred = out.positions.float() * FRAME_PIXELS
    truth = target_points.float() * FRAME_PIXELS
    huber = F.huber_loss(pred, truth, reduction="none", delta=huber_delta).sum(-1)  # (b, n, t)
    position = _masked_mean(huber, scored)
    visibility = _masked_mean(F.binary_cross_entropy_with_logits(
        out.visibility.float(), visible.float(), reduction="none"), counted.float())
    close = (torch.linalg.vector_norm(pred.detach() - truth, dim=-1) < certainty_threshold).float()
    certainty = _masked_mean(F.binary_cross_entropy_with_logits(
        out.certainty.float(), close, reduction="none"), scored)
    total = position_weight * position + visibility_weight * visibility + certainty_weight * certainty
    return TrackingLoss(total, position.detach(), visibility.detach(), certainty.detach())
