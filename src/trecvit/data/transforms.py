"""Video transforms as pure tensor functions (no PIL, no torchvision).

Every function takes a clip ``[T, 3, H, W]`` of float RGB values in ``[0, 1]``
(channel-first frames; no mean/std normalisation) and returns a new tensor in
the same layout; the input is never modified in place.  Random transforms take
an explicit ``torch.Generator`` and draw their parameters **once per clip**, so
every frame of a clip gets the same crop, flip and colour change.

Sizes are an ``int s`` (meaning ``s x s``) or an ``(h, w)`` pair.  Resizing is
bilinear with antialiasing (``torch.nn.functional.interpolate``).

Building blocks: :func:`resize_short_side`, :func:`center_crop`,
:func:`spatial_crops`, :func:`random_resized_crop`, :func:`horizontal_flip`,
:func:`rand_augment` and, on batches, :func:`mixup_cutmix`.  :class:`TrainTransform`
and :class:`EvalTransform` compose them the usual way for training and for
multi-crop evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from trecvit.data.sampling import _positive_int
from trecvit.validation import size_hw as _hw

__all__ = [
    "RAND_AUGMENT_OPS",
    "EvalTransform",
    "TrainTransform",
    "center_crop",
    "horizontal_flip",
    "mixup_cutmix",
    "rand_augment",
    "random_resized_crop",
    "resize_short_side",
    "spatial_crops",
    "to_float_video",
]

SizeArg = int | Sequence[int]


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #
def _check_video(video: torch.Tensor, name: str = "video") -> None:
    if not isinstance(video, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor [T, 3, H, W], got {type(video).__name__}")
    if video.dim() != 4 or video.shape[1] != 3:
        raise ValueError(f"{name} must have shape [T, 3, H, W], got {tuple(video.shape)}")


def _cover_size(height: int, width: int, size: SizeArg) -> tuple[int, int]:
    """Size of a ``height x width`` frame scaled (aspect kept) to just cover ``size``.

    An ``int`` size scales the short side to ``size``; an ``(h, w)`` size uses the
    factor ``max(h / height, w / width)``.  The result is never smaller than
    ``size`` on either side (rounding).
    """
    h, w = _hw(size)
    scale = max(h / height, w / width)
    return max(h, round(height * scale)), max(w, round(width * scale))


def _uniform(generator: torch.Generator | None, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))


def _randint(generator: torch.Generator | None, high: int) -> int:
    """Uniform integer in ``[0, high)``."""
    return int(torch.randint(high, (1,), generator=generator))


def _resize(video: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Bilinear (antialiased) resize of ``[T, C, H, W]`` to ``hw``; no copy if already that size.

    The antialiasing filter can overshoot [0, 1] by rounding; the result is clamped back."""
    if tuple(video.shape[-2:]) == hw:
        return video
    return F.interpolate(video, size=hw, mode="bilinear", align_corners=False, antialias=True).clamp_(0, 1)


def _crop(video: torch.Tensor, top: int, left: int, h: int, w: int) -> torch.Tensor:
    return video[..., top : top + h, left : left + w]


def to_float_video(video: torch.Tensor) -> torch.Tensor:
    """``uint8`` -> float32 in [0, 1] (``/ 255``); float inputs are returned as float32 unchanged.

    Args:
        video: ``[T, 3, H, W]`` uint8 or float tensor.
    """
    _check_video(video)
    return _as_float(video)


def _as_float(video: torch.Tensor) -> torch.Tensor:
    """:func:`to_float_video` for any shape."""
    if video.dtype == torch.uint8:
        return video.to(torch.float32).div_(255.0)
    if not video.is_floating_point():
        raise ValueError(f"video must be uint8 or floating point, got dtype {video.dtype}")
    return video.to(torch.float32)


# --------------------------------------------------------------------------- #
# geometric transforms
# --------------------------------------------------------------------------- #
def resize_short_side(video: torch.Tensor, size: int) -> torch.Tensor:
    """Resize so that the short side is ``size`` (aspect ratio kept, long side rounded).

    Args:
        video: ``[T, 3, H, W]`` float.
        size: target length of the shorter of ``H`` and ``W``.

    Returns:
        ``[T, 3, H', W']`` with ``min(H', W') == size``; the input itself if
        it already has that size.
    """
    _check_video(video)
    size = _positive_int(size, "size")
    return _resize(video, _cover_size(video.shape[-2], video.shape[-1], size))


def center_crop(video: torch.Tensor, size: SizeArg) -> torch.Tensor:
    """Crop the centre ``h x w`` region (a view of the input, no copy).

    Args:
        video: ``[T, 3, H, W]``.
        size: crop size, ``int`` or ``(h, w)``; must fit inside ``H x W``.

    Returns:
        ``[T, 3, h, w]``.
    """
    return spatial_crops(video, size, 1)[0]


def spatial_crops(video: torch.Tensor, size: SizeArg, num_crops: int) -> list[torch.Tensor]:
    """Crops for multi-crop testing.

    Args:
        video: ``[T, 3, H, W]``, usually already resized so that its short side
            equals the crop size (see :class:`EvalTransform`).
        size: crop size, ``int`` or ``(h, w)``; must fit inside ``H x W``.
        num_crops: 1 (the centre crop) or 3 (the start, centre and end of the
            axis with the most room, i.e. left/centre/right for a landscape
            video and top/centre/bottom for a portrait one, the other axis
            centred: ViViT/SlowFast "3-crop" testing).

    Returns:
        ``num_crops`` tensors ``[T, 3, h, w]`` (views of the input).
    """
    _check_video(video)
    h, w = _hw(size)
    height, width = video.shape[-2:]
    if h > height or w > width:
        raise ValueError(f"crop size {(h, w)} does not fit inside the {height}x{width} video frames")
    num_crops = _positive_int(num_crops, "num_crops")
    top, left = (height - h) // 2, (width - w) // 2
    if num_crops == 1:
        return [_crop(video, top, left, h, w)]
    if num_crops != 3:
        raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
    if height - h > width - w:  # portrait: crops along the height
        return [_crop(video, t, left, h, w) for t in (0, top, height - h)]
    return [_crop(video, top, lf, h, w) for lf in (0, left, width - w)]


def random_resized_crop(
    video: torch.Tensor,
    size: SizeArg,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Inception-style random crop of the whole clip, resized to ``size``.

    A region with area ``U(scale) * H * W`` and aspect ratio (w / h)
    log-uniform in ``ratio`` is placed uniformly at random (10 attempts; if
    none fits, the largest centred crop with an aspect ratio clamped into
    ``ratio`` is used), cropped from every frame and resized to ``size``.

    Args:
        video: ``[T, 3, H, W]`` float, or uint8 (only the crop is converted to
            float32 in [0, 1], which saves work on large decoded frames).
        size: output size, ``int`` or ``(h, w)``.
        scale: range of the crop area as a fraction of the frame area, ``0 < lo <= hi <= 1``.
        ratio: range of the crop aspect ratio ``w / h``, ``0 < lo <= hi``.
        generator: source of randomness.

    Returns:
        ``[T, 3, h, w]`` float32.
    """
    _check_video(video)
    out_hw = _hw(size)
    lo, hi = float(scale[0]), float(scale[1])
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"scale must satisfy 0 < scale[0] <= scale[1] <= 1, got {tuple(scale)}")
    r_lo, r_hi = float(ratio[0]), float(ratio[1])
    if not 0 < r_lo <= r_hi:
        raise ValueError(f"ratio must satisfy 0 < ratio[0] <= ratio[1], got {tuple(ratio)}")
    height, width = video.shape[-2:]
    area = height * width
    log_lo, log_hi = math.log(r_lo), math.log(r_hi)
    for _ in range(10):
        target_area = area * _uniform(generator, lo, hi)
        aspect = math.exp(_uniform(generator, log_lo, log_hi))
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = _randint(generator, height - h + 1)
            left = _randint(generator, width - w + 1)
            break
    else:
        in_ratio = width / height
        if in_ratio < r_lo:
            w, h = width, max(1, min(height, round(width / r_lo)))
        elif in_ratio > r_hi:
            h, w = height, max(1, min(width, round(height * r_hi)))
        else:
            h, w = height, width
        top, left = (height - h) // 2, (width - w) // 2
    return _resize(_as_float(_crop(video, top, left, h, w)), out_hw)


def horizontal_flip(video: torch.Tensor) -> torch.Tensor:
    """Mirror every frame left-right.  ``[T, 3, H, W]`` -> ``[T, 3, H, W]``.

    Do not use it for datasets whose classes depend on left/right (e.g.
    Something-Something v2: "pushing something from left to right").
    """
    _check_video(video)
    return video.flip(-1)


# --------------------------------------------------------------------------- #
# RandAugment (colour / photometric operations only)
# --------------------------------------------------------------------------- #
_GREY = (0.299, 0.587, 0.114)


def _grey(video: torch.Tensor) -> torch.Tensor:
    """Luma ``[T, 1, H, W]`` of ``[T, 3, H, W]``."""
    r, g, b = video.unbind(1)
    return (_GREY[0] * r + _GREY[1] * g + _GREY[2] * b).unsqueeze(1)


def _blend(a: torch.Tensor, b: torch.Tensor, factor: float) -> torch.Tensor:
    """``b + factor * (a - b)``, clamped to [0, 1] (factor 1 gives ``a``, 0 gives ``b``)."""
    return (b + factor * (a - b)).clamp_(0.0, 1.0)


def _op_identity(video: torch.Tensor, frac: float, sign: int) -> torch.Tensor:
    return video


def _op_brightness(video: torch.Tensor, frac: float, sign: int) -> torch.Tensor:
    return (video * (1.0 + sign * 0.9 * frac)).clamp_(0.0, 1.0)


def _op_contrast(video: torch.Tensor, frac: float, sign: int) -> torch.Tensor:
    mean = _grey(video).mean(dim=(-3, -2, -1), keepdim=True)  # (T, 1, 1, 1): per-frame mean luma
    return _blend(video, mean, 1.0 + sign * 0.9 * frac)


def _op_saturation(video: torch.Tensor, frac: float, sign: int) -> torch.Tensor:
    return _blend(video, _grey(video), 1.0 + sign * 0.9 * frac)


def _op_sharpness(video: torch.Tensor, frac: float, sign: int) -> torch.Tensor:
    kernel = torch.ones(3, 3, dtype=video.dtype, device=video.device)
    kernel[1, 1] = 5.0
    kernel = (kernel / kernel.sum()).expand(3, 1, 3, 3)  # (3, 1, 3, 3): depthwise smoothing
    blurred = F.conv2d(F.pad(video, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    return _blend(video, blurred, 1.0 + sign * 0.9 * frac)


def _op_posterize(video: torch.Tensor, frac: float, sign: int) -> torch.Tensor:
    bits = 8 - round(4 * frac)  # 8 (no change) .. 4 bits
    if bits >= 8:
        return video
    levels = (video * 255.0).round_().to(torch.uint8)
    mask = (0xFF << (8 - bits)) & 0xFF
    return (levels & mask).to(video.dtype).div_(255.0)


def _op_solarize(video: torch.Tensor, frac: float, sign: int) -> torch.Tensor:
    threshold = 1.0 - frac  # values above it are inverted; 1.0 (magnitude 0) is a no-op
    return torch.where(video > threshold, 1.0 - video, video)


def _op_autocontrast(video: torch.Tensor, frac: float, sign: int) -> torch.Tensor:
    # Per-channel min/max over the whole clip (not per frame: no flicker).
    lo = video.amin(dim=(0, 2, 3), keepdim=True)  # (1, 3, 1, 1)
    hi = video.amax(dim=(0, 2, 3), keepdim=True)
    span = hi - lo
    stretched = (video - lo) / span.clamp(min=1e-6)
    return torch.where(span > 1e-6, stretched, video).clamp_(0.0, 1.0)


def _op_equalize(video: torch.Tensor, frac: float, sign: int) -> torch.Tensor:
    # Histogram equalisation per channel, one histogram over the whole clip.
    levels = (video * 255.0).round_().clamp_(0, 255).long()
    out = video.clone()
    for c in range(3):
        values = levels[:, c]  # (T, H, W)
        hist = torch.bincount(values.reshape(-1), minlength=256)
        last = hist[hist > 0][-1]
        step = (values.numel() - int(last)) // 255
        if step == 0:
            continue
        lut = (torch.cumsum(hist, 0) + step // 2) // step
        lut = torch.cat([lut.new_zeros(1), lut[:-1]]).clamp_(0, 255)
        out[:, c] = lut[values].to(video.dtype) / 255.0
    return out


def _op_gamma(video: torch.Tensor, frac: float, sign: int) -> torch.Tensor:
    gamma = 2.0 ** (sign * frac)  # 0.5 .. 2
    return video.clamp(min=0.0).pow(gamma)


_RAND_AUGMENT_FNS = {
    "identity": _op_identity,
    "brightness": _op_brightness,
    "contrast": _op_contrast,
    "saturation": _op_saturation,
    "sharpness": _op_sharpness,
    "posterize": _op_posterize,
    "solarize": _op_solarize,
    "autocontrast": _op_autocontrast,
    "equalize": _op_equalize,
    "gamma": _op_gamma,
}
RAND_AUGMENT_OPS: tuple[str, ...] = tuple(_RAND_AUGMENT_FNS)
"""Names of the operations :func:`rand_augment` chooses from (uniformly)."""


def rand_augment(
    video: torch.Tensor,
    num_ops: int,
    magnitude: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """RandAugment restricted to colour/photometric operations (no geometry).

    ``num_ops`` operations are drawn uniformly, with replacement, from
    :data:`RAND_AUGMENT_OPS` (identity, brightness, contrast, saturation,
    sharpness, posterize, solarize, autocontrast, equalize, gamma) and applied
    in order with the same strength to every frame.  With ``f = magnitude / 10``:
    brightness/contrast/saturation/sharpness factors are ``1 +- 0.9 f``
    (random sign), posterize keeps ``8 - round(4 f)`` bits, solarize inverts
    values above ``1 - f``, gamma is ``2 ** (+-f)``; autocontrast and equalize
    use per-channel statistics of the whole clip and ignore the magnitude.

    Args:
        video: ``[T, 3, H, W]`` float in [0, 1].
        num_ops: number of operations (0 returns the input).
        magnitude: strength in ``[0, 10]``.
        generator: source of randomness (two draws per operation).

    Returns:
        ``[T, 3, H, W]`` float in [0, 1].
    """
    _check_video(video)
    num_ops = _positive_int(num_ops, "num_ops", minimum=0)
    magnitude = float(magnitude)
    if not 0.0 <= magnitude <= 10.0:
        raise ValueError(f"magnitude must be in [0, 10], got {magnitude}")
    frac = magnitude / 10.0
    fns = list(_RAND_AUGMENT_FNS.values())
    for _ in range(num_ops):
        fn = fns[_randint(generator, len(fns))]
        sign = 1 if _randint(generator, 2) else -1
        video = fn(video, frac, sign)
    return video


# --------------------------------------------------------------------------- #
# batch-level mixing
# --------------------------------------------------------------------------- #
def _soft_targets(targets: torch.Tensor, num_classes: int, label_smoothing: float) -> torch.Tensor:
    off = label_smoothing / num_classes
    out = torch.full((targets.shape[0], num_classes), off, dtype=torch.float32, device=targets.device)
    out.scatter_(1, targets.long().view(-1, 1), 1.0 - label_smoothing + off)
    return out


def mixup_cutmix(
    videos: torch.Tensor,
    targets: torch.Tensor,
    num_classes: int,
    *,
    mixup_alpha: float = 0.0,
    cutmix_alpha: float = 0.0,
    switch_prob: float = 0.5,
    label_smoothing: float = 0.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch-wise Mixup or CutMix of videos with the batch in reverse order.

    One mixing coefficient ``lam ~ Beta(alpha, alpha)`` is drawn for the
    batch.  Mixup: ``lam * x + (1 - lam) * x.flip(0)``.  CutMix: a box covering
    ``1 - lam`` of the frame area (centre uniform, clipped at the borders; the
    same box for every frame of every clip) is pasted from ``x.flip(0)`` and
    ``lam`` is recomputed from the clipped box.  With both alphas positive,
    CutMix is chosen with probability ``switch_prob``.  Targets become
    ``lam * y + (1 - lam) * y.flip(0)`` with ``y`` the (label-smoothed) one-hot
    targets; with both alphas 0 the videos are returned unchanged and only
    the targets are converted.

    Args:
        videos: ``[B, T, 3, H, W]`` float.
        targets: ``[B]`` integer class indices in ``[0, num_classes)``.
        num_classes: number of classes.
        mixup_alpha: Beta parameter for Mixup (0 disables it).
        cutmix_alpha: Beta parameter for CutMix (0 disables it).
        switch_prob: probability of CutMix when both are enabled.
        label_smoothing: ``eps``: targets are ``1 - eps + eps / K`` / ``eps / K``.
        generator: source of randomness.

    Returns:
        ``(videos [B, T, 3, H, W], soft_targets [B, num_classes] float32)``;
        each row of ``soft_targets`` sums to 1.  The inputs are not modified.
    """
    if not isinstance(videos, torch.Tensor) or videos.dim() != 5 or videos.shape[2] != 3:
        shape = tuple(videos.shape) if isinstance(videos, torch.Tensor) else type(videos).__name__
        raise ValueError(f"videos must have shape [B, T, 3, H, W], got {shape}")
    num_classes = _positive_int(num_classes, "num_classes")
    if not isinstance(targets, torch.Tensor) or targets.dim() != 1 or targets.shape[0] != videos.shape[0]:
        shape = tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets).__name__
        raise ValueError(f"targets must have shape [B] = [{videos.shape[0]}], got {shape}")
    if targets.is_floating_point() or targets.dtype == torch.bool:
        raise ValueError(f"targets must be integer class indices, got dtype {targets.dtype}")
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= num_classes):
        raise ValueError(
            f"targets must be in [0, {num_classes}), "
            f"got values in [{int(targets.min())}, {int(targets.max())}]"
        )
    mixup_alpha, cutmix_alpha = float(mixup_alpha), float(cutmix_alpha)
    if mixup_alpha < 0 or cutmix_alpha < 0:
        raise ValueError(f"mixup_alpha and cutmix_alpha must be >= 0, got {mixup_alpha}, {cutmix_alpha}")
    if not 0.0 <= switch_prob <= 1.0:
        raise ValueError(f"switch_prob must be in [0, 1], got {switch_prob}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")

    y = _soft_targets(targets, num_classes, label_smoothing)
    if mixup_alpha == 0 and cutmix_alpha == 0:
        return videos, y
    use_cutmix = cutmix_alpha > 0 and (mixup_alpha == 0 or _uniform(generator, 0.0, 1.0) < switch_prob)
    # Beta draws from a NumPy generator seeded by the torch generator (torch's Beta takes no generator).
    rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=generator)))
    lam = float(rng.beta(cutmix_alpha, cutmix_alpha) if use_cutmix else rng.beta(mixup_alpha, mixup_alpha))
    flipped = videos.flip(0)
    if use_cutmix:
        height, width = videos.shape[-2:]
        cut = math.sqrt(1.0 - lam)
        cut_h, cut_w = round(height * cut), round(width * cut)
        cy, cx = _randint(generator, height), _randint(generator, width)
        y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
        x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
        mixed = videos.clone()
        mixed[..., y0:y1, x0:x1] = flipped[..., y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / (height * width)
    else:
        mixed = videos * lam + flipped * (1.0 - lam)
    return mixed, y * lam + y.flip(0) * (1.0 - lam)


# --------------------------------------------------------------------------- #
# composed transforms
# --------------------------------------------------------------------------- #
class TrainTransform:
    """Training augmentation: random resized crop -> random horizontal flip -> RandAugment.

    Args:
        image_size: output size, ``int`` or ``(h, w)``.
        min_scale: smallest crop area as a fraction of the frame (``scale=(min_scale, 1)``).
        hflip: flip with probability 0.5 (turn off for left/right-sensitive
            datasets such as Something-Something v2).
        randaug_ops: number of :func:`rand_augment` operations (0: none).
        randaug_magnitude: their magnitude in ``[0, 10]``.
        ratio: aspect-ratio range of the random crop.

    Call as ``t(video, generator)`` with ``video`` ``[T, 3, H, W]`` uint8 (0..255)
    or float (0..1); returns ``[T, 3, h, w]`` float32 in [0, 1].
    """

    def __init__(
        self,
        image_size: SizeArg,
        min_scale: float = 0.08,
        hflip: bool = True,
        randaug_ops: int = 0,
        randaug_magnitude: float = 9,
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
    ) -> None:
        self.image_size = _hw(image_size, "image_size")
        self.min_scale = float(min_scale)
        if not 0 < self.min_scale <= 1:
            raise ValueError(f"min_scale must be in (0, 1], got {min_scale}")
        self.hflip = bool(hflip)
        self.randaug_ops = _positive_int(randaug_ops, "randaug_ops", minimum=0)
        self.randaug_magnitude = float(randaug_magnitude)
        if not 0 <= self.randaug_magnitude <= 10:
            raise ValueError(f"randaug_magnitude must be in [0, 10], got {randaug_magnitude}")
        self.ratio = (float(ratio[0]), float(ratio[1]))

    def __call__(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_video(video)
        video = random_resized_crop(  # converts only the crop of a uint8 clip to float
            video, self.image_size, scale=(self.min_scale, 1.0), ratio=self.ratio, generator=generator
        )
        if self.hflip and _randint(generator, 2):
            video = horizontal_flip(video)
        if self.randaug_ops:
            video = rand_augment(video, self.randaug_ops, self.randaug_magnitude, generator)
        return video

    def __repr__(self) -> str:
        return (
            f"TrainTransform(image_size={self.image_size}, min_scale={self.min_scale}, hflip={self.hflip}, "
            f"randaug_ops={self.randaug_ops}, randaug_magnitude={self.randaug_magnitude})"
        )


class EvalTransform:
    """Evaluation: resize the short side to ``image_size``, then 1 or 3 crops.

    Args:
        image_size: crop size, ``int`` or ``(h, w)``.  For ``(h, w)`` the clip is
            scaled (aspect kept) to just cover ``h x w``.
        num_crops: 1 (centre) or 3 (see :func:`spatial_crops`).

    Call as ``t(video)`` with ``video`` ``[T, 3, H, W]`` uint8 or float; returns
    ``[num_crops, T, 3, h, w]`` float32 in [0, 1] (deterministic; a
    ``generator`` argument is accepted and ignored, for symmetry with
    :class:`TrainTransform`).
    """

    def __init__(self, image_size: SizeArg, num_crops: int = 1) -> None:
        self.image_size = _hw(image_size, "image_size")
        self.num_crops = _positive_int(num_crops, "num_crops")
        if self.num_crops not in (1, 3):
            raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")

    def __call__(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_video(video)
        cover = _cover_size(video.shape[-2], video.shape[-1], self.image_size)
        if cover != tuple(video.shape[-2:]):
            video = _resize(to_float_video(video), cover)
        crops = spatial_crops(video, self.image_size, self.num_crops)
        return _as_float(torch.stack(crops))  # (num_crops, T, 3, h, w)

    def __repr__(self) -> str:
        return f"EvalTransform(image_size={self.image_size}, num_crops={self.num_crops})"
