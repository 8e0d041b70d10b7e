"""The streaming state of TRecViT: plain tensors, constant in size, and its shape contract.

:func:`state_shapes` is the one statement of which tensors a state holds and
their shapes; :func:`zero_state` (behind ``model.init_state``),
:func:`check_state` (behind ``model.step``) and the exporters read it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch

if TYPE_CHECKING:
    from trecvit.config import TRecViTConfig


# The batch axis of each field (the conv and lru states are stacked over layers first).
STATE_BATCH_AXIS = {"conv": 1, "lru": 1, "feature_sum": 0, "num_frames": 0}
STATE_DTYPES = {"conv": torch.float32, "lru": torch.float32, "feature_sum": torch.float32,
                "num_frames": torch.int64}


class TRecViTState(NamedTuple):
    """Everything :meth:`trecvit.TRecViT.step` needs from the frames already seen.

    A tuple of four tensors (so it flattens for ``torch.compile``, ``torch.export``
    and ONNX), whose size does not depend on how many frames were seen:

    Attributes:
        conv: ``[depth, b, k-1, n, l]`` float32 (``k-1 = 0`` without the temporal
            convolution, ``temporal_conv=False``): per layer, the last ``K-1``
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

        def where(field: str, t: torch.Tensor) -> torch.Tensor:  # the mask along the field's batch axis
            shape = [1] * t.dim()
            shape[STATE_BATCH_AXIS[field]] = -1
            return torch.where(mask.view(shape), torch.zeros((), dtype=t.dtype, device=t.device), t)

        return TRecViTState(*(where(f, t) for f, t in zip(self._fields, self)))

    def to(self, device: torch.device | str) -> "TRecViTState":
        """The same state on another device (dtypes are kept)."""
        return TRecViTState(*(t.to(device) for t in self))

    def nbytes(self) -> int:
        """Memory held by the state, in bytes."""
        return sum(t.numel() * t.element_size() for t in self)


def conv_frames(config: "TRecViTConfig") -> int:
    """Frames of the ``conv`` state: the causal convolution's ``K - 1`` (0 without it)."""
    return config.conv1d_width - 1 if config.temporal_conv else 0


def state_shapes(config: "TRecViTConfig", batch_size: int, image_hw: tuple[int, int],
                 feature_dim: int) -> dict[str, tuple[int, ...]]:
    """The shape of each field of the state of ``batch_size`` streams of ``image_hw`` frames.

    ``n = (H / p) (W / p)`` patch tokens, plus the class token with ``pool_type="tok"``;
    ``feature_dim`` is the width of the head's per-frame features (0 for a trunk
    without a head)."""
    h, w = image_hw
    p = config.patch_size
    n = (h // p) * (w // p) + (1 if config.pool_type == "tok" else 0)
    return {
        "conv": (config.depth, batch_size, conv_frames(config), n, config.lru_width),
        "lru": (config.depth, batch_size, n, config.lru_width),
        "feature_sum": (batch_size, feature_dim),
        "num_frames": (batch_size,),
    }


def zero_state(shapes: dict[str, tuple[int, ...]], device: torch.device | str | None = None) -> TRecViTState:
    """A fresh state of the given :func:`state_shapes` (all zeros: every stream starts anew)."""
    return TRecViTState(*(torch.zeros(shapes[f], dtype=STATE_DTYPES[f], device=device)
                          for f in TRecViTState._fields))


def check_state(state: object, expected: dict[str, tuple[int, ...]], *, what: str,
                frames_shape: tuple[int, ...], device: torch.device) -> None:
    """Static checks of a streaming ``state`` against :func:`state_shapes` (``expected``):
    its type, every field's shape, dtype and device. ``what`` names the frames it goes with
    (``"frame"``), ``frames_shape`` their ``[b, 3, H, W]``. Raises ``ValueError`` naming the
    field and how to make a fitting state."""
    if not isinstance(state, TRecViTState):
        hint = (" (wrap a tuple of its four tensors with TRecViTState(*state))"
                if isinstance(state, tuple) and len(state) == 4 else "")
        raise ValueError(f"state must be a TRecViTState (from model.init_state), got "
                         f"{type(state).__name__}{hint}")
    for field, value in zip(TRecViTState._fields, state):
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"state.{field} must be a torch.Tensor, got {type(value).__name__}")
    batch, hw = expected["num_frames"][0], tuple(frames_shape[-2:])
    wrong = [f"state.{field} is {tuple(getattr(state, field).shape)}, expected {shape}"
             for field, shape in expected.items() if tuple(getattr(state, field).shape) != shape]
    if wrong:
        streams = state.num_frames.shape[0] if state.num_frames.dim() == 1 else None
        lead = (f"it holds {streams} streams but {what} has {batch}; "
                if streams is not None and streams != batch else "")
        raise ValueError(
            f"state does not fit {what} of shape {(batch, 3, *hw)}: {lead}" + "; ".join(wrong)
            + f" (make it with model.init_state(batch_size={batch}, image_size={hw}))")
    for field, value in zip(TRecViTState._fields, state):
        want = STATE_DTYPES[field]
        if value.dtype != want:
            raise ValueError(f"state.{field} must be {want}, got {value.dtype} (the state is "
                             "float32, frame counts int64, whatever the model's dtype; make it "
                             "with model.init_state)")
        if value.device != device:
            raise ValueError(f"state.{field} is on {value.device} but the frames are on {device}; "
                             f"move the state with state.to({str(device)!r})")
