"""Temporal sampling: which frame indices of a video make up a clip.

A clip of ``num_frames`` frames with ``stride`` ``s`` starting at frame ``start``
is the frames ``start, start + s, ..., start + (num_frames - 1) * s``; it spans
``(num_frames - 1) * s + 1`` frames of the video.

* Training (:func:`train_clip_indices`) draws ``start`` uniformly at random
  among the positions where the clip fits.
* Evaluation (:func:`eval_clip_indices`) takes ``num_clips`` clips whose starts
  are evenly spread from the first to the last position where a clip fits (one
  clip: the centred clip), as in multi-view testing ("4x3": 4 clips x 3 crops).

Short videos: when a video has fewer frames than a clip spans, the clip starts
at frame 0 and every index past the end is clamped to the last frame, i.e. the
last frame is repeated (no error).
"""

from __future__ import annotations

import re

import torch

from trecvit.validation import int_at_least as _positive_int

__all__ = ["parse_views", "train_clip_indices", "eval_clip_indices", "clip_span"]

_VIEWS_RE = re.compile(r"^\s*(\d+)\s*[xX\u00d7]\s*(\d+)\s*$")




def parse_views(spec: str | tuple[int, int]) -> tuple[int, int]:
    """Parse a multi-view test spec into ``(temporal_clips, spatial_crops)``.

    Args:
        spec: ``"CxS"`` (e.g. ``"4x3"``: 4 temporal clips times 3 spatial crops,
            ``"1x1"``: a single centred view; ``X`` and ``\u00d7`` also accepted) or
            a pair of positive integers ``(C, S)``.

    Returns:
        ``(C, S)``; the number of views is ``C * S``.

    Raises:
        ValueError: for anything else (message shows the spec).
    """
    if isinstance(spec, str):
        match = _VIEWS_RE.match(spec)
        if match is None:
            raise ValueError(
                f"views must look like 'CxS' (temporal clips x spatial crops, e.g. '4x3' or '1x1'), "
                f"got {spec!r}"
            )
        clips, crops = int(match.group(1)), int(match.group(2))
    elif isinstance(spec, (tuple, list)) and len(spec) == 2:
        clips = _positive_int(spec[0], "views[0] (temporal clips)")
        crops = _positive_int(spec[1], "views[1] (spatial crops)")
    else:
        raise ValueError(f"views must be a 'CxS' string or a (clips, crops) pair, got {spec!r}")
    if clips < 1 or crops < 1:
        raise ValueError(f"views needs at least 1 temporal clip and 1 spatial crop, got {spec!r}")
    return clips, crops


def clip_span(num_frames: int, stride: int) -> int:
    """Number of video frames a clip of ``num_frames`` frames at ``stride`` spans."""
    num_frames = _positive_int(num_frames, "num_frames")
    stride = _positive_int(stride, "stride")
    return (num_frames - 1) * stride + 1


def _clip(start: int, num_frames: int, stride: int, num_video_frames: int) -> list[int]:
    last = num_video_frames - 1
    return [min(start + i * stride, last) for i in range(num_frames)]


def train_clip_indices(
    num_video_frames: int, num_frames: int, stride: int, generator: torch.Generator
) -> list[int]:
    """Frame indices of one training clip at a random temporal offset.

    Args:
        num_video_frames: number of frames ``n >= 1`` in the video.
        num_frames: clip length ``T``.
        stride: temporal stride between consecutive clip frames.
        generator: source of the random offset (one ``torch.randint`` draw).

    Returns:
        ``T`` indices ``start + i * stride`` with ``start`` uniform in
        ``[0, n - span]`` (``span = (T - 1) * stride + 1``).  If ``n < span`` the
        clip starts at 0 and indices past the end are clamped to ``n - 1`` (the
        last frame repeats); the generator is still advanced by one draw so the
        random stream does not depend on the video length.
    """
    n = _positive_int(num_video_frames, "num_video_frames")
    span = clip_span(num_frames, stride)
    high = max(n - span, 0) + 1
    start = int(torch.randint(high, (1,), generator=generator))
    return _clip(start, num_frames, stride, n)


def eval_clip_indices(
    num_video_frames: int, num_frames: int, stride: int, num_clips: int
) -> list[list[int]]:
    """Frame indices of ``num_clips`` evaluation clips spread evenly over the video.

    Args:
        num_video_frames: number of frames ``n >= 1`` in the video.
        num_frames: clip length ``T``.
        stride: temporal stride between consecutive clip frames.
        num_clips: number of temporal clips ``C``.

    Returns:
        ``C`` lists of ``T`` indices.  With ``max_start = max(n - span, 0)`` the
        starts are ``round(k * max_start / (C - 1))`` for ``k < C`` (the first
        clip at the start of the video, the last at the end); a single clip is
        centred (``start = max_start // 2``).  Indices past the end of a short
        video are clamped to ``n - 1``.
    """
    n = _positive_int(num_video_frames, "num_video_frames")
    num_clips = _positive_int(num_clips, "num_clips")
    span = clip_span(num_frames, stride)
    max_start = max(n - span, 0)
    if num_clips == 1:
        starts = [max_start // 2]
    else:
        starts = [round(k * max_start / (num_clips - 1)) for k in range(num_clips)]
    return [_clip(start, num_frames, stride, n) for start in starts]
