"""Checks at the API boundary: bad input fails early with a message naming the problem.

Shape and dtype checks are static and always run. The value checks (NaN, inf,
magnitudes beyond :data:`MAX_ABS_INPUT`) read the data, so they are skipped
while ``torch.compile`` or ``torch.export`` traces the model (a traced graph has
no Python control flow on values).
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Mapping, Sequence

import torch

# Frames are RGB in [0, 1]. Finite values far outside that range are refused too: squared in the
# normalisation layers, values of about 1e19 overflow float32 and every output becomes NaN.
MAX_ABS_INPUT = 1e6
_AXIS_NAMES = {"B": "batch", "T": "frames", "3": "channels", "H": "height", "W": "width"}


def check_frames(x: object, *, name: str, layout: str, patch_size: int) -> None:
    """Check a video ``[B, T, 3, H, W]`` (``layout`` = "BT3HW") or a frame batch
    ``[B, 3, H, W]`` ("B3HW"): a float tensor, 3 channels, no empty axis, sides
    multiples of ``patch_size``."""
    rank = len(layout)
    shape_txt = "[" + ", ".join(layout) + "]"
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor {shape_txt}, got {type(x).__name__}")
    if x.dim() != rank:
        hint = ""
        if rank == 5 and x.dim() == 4:
            hint = (" (a single video [T, 3, H, W] needs a batch axis: video[None]; "
                    "a single frame batch [B, 3, H, W] goes to model.step)")
        elif rank == 4 and x.dim() == 3:
            hint = " (a single frame [3, H, W] needs a batch axis: frame[None])"
        elif rank == 4 and x.dim() == 5:
            hint = " (a whole video [B, T, 3, H, W] goes to model(video))"
        raise ValueError(f"{name} must have {rank} dimensions {shape_txt}, got shape "
                         f"{tuple(x.shape)}{hint}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a float tensor with values in [0, 1], got dtype "
                         f"{x.dtype}" + (" (convert uint8 frames with x.float() / 255)"
                                         if x.dtype == torch.uint8 else ""))
    channels = x.shape[-3]
    if channels != 3:
        hint = ""
        if x.shape[-1] == 3:
            hint = (" (this looks channels-last; TRecViT takes channel-first frames, e.g. "
                    "video.permute(0, 1, 4, 2, 3))")
        raise ValueError(f"{name} must have 3 (RGB) channels on axis {rank - 3} {shape_txt}, "
                         f"got {channels} in shape {tuple(x.shape)}{hint}")
    if x.numel() == 0:
        empty = ", ".join(f"0 {_AXIS_NAMES[a]} (axis {i})" for i, a in enumerate(layout) if x.shape[i] == 0)
        raise ValueError(f"{name} is empty: shape {tuple(x.shape)} has {empty}")
    h, w = x.shape[-2:]
    if h < patch_size or w < patch_size:
        raise ValueError(f"{name} frames are {h}x{w}, smaller than one {patch_size}x{patch_size} "
                         f"patch: both sides must be multiples of the patch size {patch_size} "
                         "(resize them, e.g. with trecvit.io.read_video(..., size=...))")
    if h % patch_size or w % patch_size:
        raise ValueError(f"{name} frames are {h}x{w}; both sides must be multiples of the "
                         f"patch size {patch_size} (resize or crop them, e.g. with "
                         "trecvit.io.read_video(..., size=...))")


def without_values(x: torch.Tensor) -> bool:
    """Whether ``x`` has a shape but no values to check: on the meta device, or a fake tensor
    (``torch._subclasses.FakeTensorMode``, which the efficiency study traces models with)."""
    from torch._subclasses.fake_tensor import is_fake

    return x.device.type == "meta" or is_fake(x)


def check_finite(x: torch.Tensor, *, name: str, dtype: torch.dtype | None = None,
                 max_abs: float | None = MAX_ABS_INPUT) -> None:
    """Refuse NaN or infinite values, values beyond ``max_abs`` in magnitude (``None``: no
    bound), and values that ``dtype`` (the dtype ``x`` is converted to) cannot hold. One
    reduction and one host sync; skipped while compiling or exporting, and on the meta device
    (shapes without values: what the efficiency study traces)."""
    if torch.compiler.is_compiling() or without_values(x):
        return
    limit = torch.finfo(x.dtype).max if max_abs is None else max_abs
    if dtype is not None and dtype.is_floating_point:
        limit = min(limit, torch.finfo(dtype).max)
    if x.numel() == 0:
        return
    # NaN propagates through both; float32 so that stacking them works under autocast too
    lo, hi = torch.stack([v.float() for v in torch.aminmax(x.detach())]).tolist()
    if -limit <= lo and hi <= limit:
        return
    values = x.detach()
    non_finite = int((~torch.isfinite(values)).sum())
    if non_finite:
        raise ValueError(f"{name} holds {non_finite} NaN or infinite value(s)")
    large = int((values.abs() > limit).sum())
    if max_abs is not None and limit == max_abs:
        why = f"beyond +-{max_abs:g} (frames are RGB values in [0, 1])"
    else:
        why = f"too large for {dtype} (the model's dtype)"
    raise ValueError(f"{name} holds {large} value(s) {why}; the largest magnitude is "
                     f"{max(abs(lo), abs(hi)):.3g}")


def check_state_values(state: tuple[torch.Tensor, ...], *, name: str = "state") -> None:
    """Refuse a streaming state holding NaN/inf or a negative frame count (one host sync;
    skipped while compiling or exporting, and on the meta device). ``state`` is ``(conv, lru,
    feature_sum, num_frames)``."""
    if torch.compiler.is_compiling() or without_values(state[-1]):
        return
    conv, lru, feature_sum, num_frames = state
    # A sum is finite when every term is (a NaN or inf anywhere makes it NaN or inf): one cheap
    # reduction per tensor; the exact search below runs only when it fails.
    total, lowest = torch.stack([conv.sum() + lru.sum() + feature_sum.sum(),
                                 num_frames.min().to(conv.dtype)]).tolist()
    if math.isfinite(total) and lowest >= 0:
        return
    for field, t in (("conv", conv), ("lru", lru), ("feature_sum", feature_sum)):
        bad = int((~torch.isfinite(t)).sum())
        if bad:
            raise ValueError(f"{name}.{field} holds {bad} NaN or infinite value(s) (states made by "
                             "model.init_state and model.step stay finite); start afresh with "
                             "model.init_state, or state.reset(mask) for some streams")
    if lowest < 0:
        raise ValueError(f"{name}.num_frames holds negative frame counts {num_frames.tolist()}; it "
                         "counts the frames seen (0: the next frame starts a new stream)")


def check_names_and_shapes(found: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]],
                           *, source: str, what: str = "key") -> None:
    """Compare a checkpoint's arrays with what the model needs; raise a ``ValueError``
    that names the missing, unexpected and mis-shaped ``what`` (up to 5 of each)."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    misshaped = sorted(k for k in set(found) & set(expected) if tuple(found[k]) != tuple(expected[k]))
    if not (missing or unexpected or misshaped):
        return

    def listing(keys: list[str], fmt, limit: int = 5) -> str:
        shown = "; ".join(fmt(k) for k in keys[:limit])
        return shown + (f"; ... and {len(keys) - limit} more" if len(keys) > limit else "")

    problems = []
    if missing:
        problems.append(f"missing {what}(s): " + listing(missing, lambda k: f"{k} {tuple(expected[k])}"))
    if unexpected:
        problems.append(f"unexpected {what}(s): " + listing(unexpected, lambda k: f"{k} {tuple(found[k])}"))
    if misshaped:
        problems.append(f"mis-shaped {what}(s): " + listing(
            misshaped, lambda k: f"{k} has shape {tuple(found[k])}, expected {tuple(expected[k])}"))
    raise ValueError(f"{source} does not match the model: " + " | ".join(problems))


def int_at_least(value: object, name: str, minimum: int = 1) -> int:
    """``value`` as an ``int >= minimum`` (bools refused), or a ``ValueError`` naming ``name``."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    try:
        value = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def size_hw(size: object, name: str = "image_size") -> tuple[int, int]:
    """A frame size given as an int (square) or an ``(H, W)`` pair, as ``(H, W)`` positive ints;
    a ``ValueError`` naming ``name`` otherwise. The one place that reads this convention."""
    if isinstance(size, (str, bytes)) or not isinstance(size, Sequence):
        side = int_at_least(size, name)
        return side, side
    if len(size) != 2:
        raise ValueError(f"{name} must be an int or an (H, W) pair, got {size!r}")
    return int_at_least(size[0], f"{name}[0]"), int_at_least(size[1], f"{name}[1]")


def check_known_fields(data: Mapping[str, object], config_class: type, what: str) -> None:
    """Refuse keys of ``data`` that are not fields of the dataclass ``config_class``, naming them
    and the known ones (``what``: e.g. ``"TRecViTConfig field(s)"``)."""
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {what}: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
