"""Tube masking (VideoMAE): one random 2-D mask over the patch grid per video, the same in every frame.

A masked *tube* is a patch position hidden in all frames of the video, so the
encoder never sees it and, in TRecViT, the recurrence over time never runs for
it. Masks are made outside the model, from ``(seed, step, video index)`` alone:
every video of a batch keeps the same number of patches (so kept tokens stack
into a tensor), a resumed run sees exactly the masks of an uninterrupted one,
and a distributed run the same masks as a single process.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch


def check_mask_ratio(ratio: float, name: str = "mask_ratio") -> float:
    """``ratio`` as a float if it is in ``[0, 1)``; ``ValueError`` naming ``name`` otherwise."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 <= float(ratio) < 1.0:
        raise ValueError(f"{name} must be a fraction in [0, 1) (0.9 hides 90% of the patch tubes; 1 "
                         f"would hide all of them), got {ratio!r}")
    return float(ratio)


def num_kept(num_patches: int, ratio: float) -> int:
    """Patches kept per video: ``num_patches - int(ratio * num_patches)`` (VideoMAE's rule),
    at least one for any ratio below 1."""
    return num_patches - int(check_mask_ratio(ratio) * num_patches)


@dataclass(frozen=True)
class TubeMasking:
    """Tube masks for videos with ``num_patches`` patches per frame.

    Attributes:
        num_patches: patches per frame (the patch grid's ``H/p * W/p``).
        ratio: fraction of the patch positions hidden, in ``[0, 1)`` (0.9 by default).
        seed: the run's seed; masks depend on ``(seed, step, video index)`` only.

    :meth:`keep` gives the kept patch positions of one video, :meth:`batch` of a batch
    (``[b, num_keep]``, ascending, the same for all frames of a video).
    """

    num_patches: int
    ratio: float = 0.9
    seed: int = 0

    def __post_init__(self) -> None:
        n = self.num_patches
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"num_patches must be a positive int, got {self.num_patches!r}")
        object.__setattr__(self, "ratio", check_mask_ratio(self.ratio))

    @property
    def num_keep(self) -> int:
        return num_kept(self.num_patches, self.ratio)

    def generator(self, step: int, index: int) -> torch.Generator:
        """The random stream of video ``index`` at optimiser step ``step``."""
        key = ((int(self.seed) * 1_000_003 + int(step)) * 998_244_353 + int(index)) % (2 ** 62)
        return torch.Generator().manual_seed(key)

    def keep(self, step: int, index: int) -> torch.Tensor:
        """The kept patch positions of video ``index`` at ``step``: ``[num_keep]`` int64, ascending
        (all of them, in order, when ``ratio`` is 0)."""
        if self.num_keep == self.num_patches:
            return torch.arange(self.num_patches)
        order = torch.randperm(self.num_patches, generator=self.generator(step, index))
        return order[:self.num_keep].sort().values

    def batch(self, step: int, indices: Iterable[int] | torch.Tensor) -> torch.Tensor:
        """``[b, num_keep]``: :meth:`keep` of each video of a batch (dataset indices ``indices``)."""
        indices = indices.tolist() if isinstance(indices, torch.Tensor) else list(indices)
        if not indices:
            return torch.zeros(0, self.num_keep, dtype=torch.long)
        return torch.stack([self.keep(step, i) for i in indices])

    def dense(self, keep: torch.Tensor) -> torch.Tensor:
        """``[b, num_patches]`` bool, True where a patch is *masked* (hidden), from ``keep [b, k]``."""
        return hidden_patches(keep, self.num_patches)


def hidden_patches(keep: torch.Tensor, num_patches: int) -> torch.Tensor:
    """``[b, num_patches]`` bool, True where a patch is hidden (not in ``keep [b, k]``)."""
    hidden = torch.ones(keep.shape[0], num_patches, dtype=torch.bool, device=keep.device)
    return hidden.scatter(1, keep.long(), False)


def check_keep(keep: torch.Tensor, batch_size: int, num_patches: int) -> None:
    """Refuse kept-patch indices that are not ``[batch_size, k]`` integers in ``[0, num_patches)``
    without repeats, naming the problem."""
    if not isinstance(keep, torch.Tensor) or keep.dtype not in (torch.int64, torch.int32):
        what = f"a tensor of {keep.dtype}" if isinstance(keep, torch.Tensor) else type(keep).__name__
        raise ValueError(f"keep must be an integer tensor [b, k] of kept patch positions, got {what}")
    if keep.dim() != 2 or keep.shape[0] != batch_size or not 1 <= keep.shape[1] <= num_patches:
        raise ValueError(f"keep must be [b, k] with b = {batch_size} videos and 1 <= k <= {num_patches} "
                         f"patches, got shape {tuple(keep.shape)}")
    if int(keep.min()) < 0 or int(keep.max()) >= num_patches:
        raise ValueError(f"keep holds patch positions outside [0, {num_patches}): "
                         f"{int(keep.min())}..{int(keep.max())}")
    if keep.shape[1] > 1 and bool((keep.sort(dim=1).values.diff(dim=1) == 0).any()):
        raise ValueError("keep repeats a patch position within a video")
