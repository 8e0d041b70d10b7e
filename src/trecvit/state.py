"""The streaming state of TRecViT: plain tensors, constant in size."""

from __future__ import annotations

from typing import NamedTuple

import torch


class TRecViTState(NamedTuple):
    """Everything :meth:`trecvit.TRecViT.step` needs from the frames already seen.

    A tuple of four tensors (so it flattens for ``torch.compile``, ``torch.export``
    and ONNX), whose size does not depend on how many frames were seen:

    Attributes:
        conv: ``[depth, b, k-1, n, l]`` float32: per layer, the last ``K-1``
            inputs of the causal temporal convolution, oldest first.
        lru: ``[depth, b, n, l]`` float32: per layer, the RG-LRU hidden state.
        feature_sum: ``[b, r]`` float32: sum of the per-frame pre-logits
            features, for the running-mean classification.
        num_frames: ``[b]`` int64: frames seen. Where it is 0, the next frame
            starts a new sequence, whatever the other tensors hold.

    ``b`` batch, ``k`` conv kernel width, ``n`` tokens per frame, ``l``
    recurrence width, ``r`` pre-logits width.
    """

    conv: torch.Tensor
    lru: torch.Tensor
    feature_sum: torch.Tensor
    num_frames: torch.Tensor

    @property
    def batch_size(self) -> int:
        return self.num_frames.shape[0]

    def reset(self, mask: torch.Tensor | None = None) -> "TRecViTState":
        """A new state where the batch elements selected by ``mask [b]`` (bool;
        all when ``None``) start afresh; the others are unchanged."""
        if mask is None:
            return TRecViTState(*(torch.zeros_like(t) for t in self))
        mask = torch.as_tensor(mask, dtype=torch.bool, device=self.num_frames.device)
        if mask.shape != self.num_frames.shape:
            raise ValueError(f"reset mask must have shape [{self.batch_size}] (one flag per "
                             f"stream), got {tuple(mask.shape)}")
        return TRecViTState(
            conv=torch.where(mask.view(1, -1, 1, 1, 1), 0.0, self.conv),
            lru=torch.where(mask.view(1, -1, 1, 1), 0.0, self.lru),
            feature_sum=torch.where(mask.view(-1, 1), 0.0, self.feature_sum),
            num_frames=torch.where(mask, 0, self.num_frames),
        )

    def to(self, device: torch.device | str) -> "TRecViTState":
        """The same state on another device (dtypes are kept)."""
        return TRecViTState(*(t.to(device) for t in self))

    def nbytes(self) -> int:
        """Memory held by the state, in bytes."""
        return sum(t.numel() * t.element_size() for t in self)
