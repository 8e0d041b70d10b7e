"""Where the memorisation task's videos come from: synthetic walking tours or a folder of real videos.

Both sources give training batches by step (``train_batch(step, batch_size, num_frames)``, the
same videos for every model trained with the same seed) and a fixed set of held-out videos
(``held_out(count, num_frames)``) that never appear in training, every video ``[T, 3, H, W]``
float32 in [0, 1]. A longer held-out video extends the shorter one with the same index, so the
96-frame test clip starts with the 64-frame one.

* :class:`SyntheticTours`: :class:`~trecvit.memorisation.walking_tour.WalkingTour` videos made on
  the fly; training video ``i`` of step ``s`` is tour ``s * batch_size + i``, held-out video
  ``j`` is tour ``HELD_OUT_START + j`` (a range no training run reaches).
* :class:`FolderWindows`: windows of ``T`` consecutive frames of the videos in a folder (e.g.
  Walking Tours), decoded once with PyAV (:func:`trecvit.io.iter_frames`), the short side resized
  to the image size and centre-cropped, kept in memory as uint8. With two or more files the last
  fifth of them (at least one) is held out; a single file holds out its last fifth of frames.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch

from trecvit.memorisation.walking_tour import WalkingTour, mix_seed

logger = logging.getLogger(__name__)

HELD_OUT_START = 10 ** 9  # first tour index of the held-out synthetic videos
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg")
MAX_FRAMES_PER_VIDEO = 20_000  # frames kept per file of a folder (about 60 MB at 32 x 32)


class SyntheticTours:
    """Synthetic walking tours (:class:`WalkingTour`) for training and held-out evaluation.

    Args:
        image_size: frame side in pixels.
        seed: the tours' seed (the run's ``--seed``).
    """

    def __init__(self, image_size: int, seed: int = 0):
        self.tour = WalkingTour(image_size=image_size, seed=seed)

    def describe(self) -> str:
        return f"synthetic walking tours (seed {self.tour.seed})"

    def train_batch(self, step: int, batch_size: int, num_frames: int) -> torch.Tensor:
        """``[b, T, 3, H, W]``: tours ``step * b ... step * b + b - 1``."""
        first = step * batch_size
        if first + batch_size > HELD_OUT_START:
            raise ValueError(f"training step {step} would reach the held-out tours (index {HELD_OUT_START})")
        return self.tour.batch(range(first, first + batch_size), num_frames)

    def held_out(self, count: int, num_frames: int) -> torch.Tensor:
        """``[count, T, 3, H, W]``: tours ``HELD_OUT_START ... + count - 1``."""
        return self.tour.batch(range(HELD_OUT_START, HELD_OUT_START + count), num_frames)


class FolderWindows:
    """Windows of consecutive frames of the videos in ``folder``.

    Args:
        folder: a folder of video files (searched recursively for :data:`VIDEO_SUFFIXES`).
        image_size: frame side; each frame's short side is resized to it and centre-cropped.
        seed: chooses the training windows.
        held_out_frames: the longest held-out window that will be asked for (the longest test
            or sweep length); held-out windows are placed for that length, shorter ones are its
            prefixes.
        stride: keep every ``stride``-th frame of the files (1: all).
        max_frames: frames kept per file (from its start).
    """

    def __init__(self, folder: str | Path, image_size: int, seed: int = 0, *, held_out_frames: int,
                 stride: int = 1, max_frames: int = MAX_FRAMES_PER_VIDEO):
        from trecvit.io import iter_frames

        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"--data-dir {folder}: no such folder (give a folder of video files)")
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
        if not files:
            raise ValueError(f"--data-dir {folder} holds no video files ({', '.join(VIDEO_SUFFIXES)})")
        self.folder, self.seed, self.held_out_frames = folder, seed, held_out_frames
        videos = []
        for path in files:
            frames = [(f * 255).round().to(torch.uint8) for f in
                      iter_frames(path, size=image_size, stride=stride, max_frames=max_frames)]
            videos.append(torch.stack(frames))  # (n, 3, s, s) uint8
            logger.info("%s: %d frames", path, len(frames))
        if len(videos) >= 2:
            held = max(1, round(len(videos) / 5))
            self.train_videos, self.held_videos = videos[:-held], videos[-held:]
            self.held_names = [p.name for p in files[-held:]]
        else:
            n = videos[0].shape[0]
            cut = n - max(held_out_frames, math.ceil(n / 5))
            self.train_videos, self.held_videos = [videos[0][:cut]], [videos[0][cut:]]
            self.held_names = [f"{files[0].name} (last {n - cut} frames)"]
        self.files = files

    def describe(self) -> str:
        return (f"{len(self.files)} video(s) in {self.folder}, held out: {', '.join(self.held_names)}")

    def _check_length(self, videos: list[torch.Tensor], num_frames: int, what: str) -> list[torch.Tensor]:
        usable = [v for v in videos if v.shape[0] >= num_frames]
        if not usable:
            longest = max(v.shape[0] for v in videos)
            raise ValueError(f"--data-dir {self.folder}: the {what} videos have at most {longest} frames, "
                             f"fewer than the {num_frames} a window needs; use longer videos, a smaller "
                             "--data-stride or shorter --train-frames/--test-frames/--sweep-*")
        return usable

    def train_batch(self, step: int, batch_size: int, num_frames: int) -> torch.Tensor:
        """``[b, T, 3, H, W]``: random windows (a video chosen by its number of windows, then an
        offset), deterministic by ``(seed, step)``."""
        usable = self._check_length(self.train_videos, num_frames, "training")
        counts = torch.tensor([v.shape[0] - num_frames + 1 for v in usable], dtype=torch.float64)
        g = torch.Generator()
        g.manual_seed(mix_seed(self.seed, step, 7))
        which = torch.multinomial(counts, batch_size, replacement=True, generator=g).tolist()
        clips = []
        for i in which:
            offset = int(torch.randint(int(counts[i]), (1,), generator=g))
            clips.append(usable[i][offset: offset + num_frames])
        return torch.stack(clips).float() / 255.0

    def held_out(self, count: int, num_frames: int) -> torch.Tensor:
        """``[count, T, 3, H, W]``: ``count`` windows of ``held_out_frames`` frames spread evenly
        over the held-out videos, cut to their first ``num_frames``."""
        if num_frames > self.held_out_frames:
            raise ValueError(f"held-out windows are placed for {self.held_out_frames} frames, "
                             f"not {num_frames}")
        usable = self._check_length(self.held_videos, self.held_out_frames, "held-out")
        starts = [(v, s) for v in usable for s in range(0, v.shape[0] - self.held_out_frames + 1)]
        picks = torch.linspace(0, len(starts) - 1, count).round().long().tolist()
        clips = [starts[i][0][starts[i][1]: starts[i][1] + num_frames] for i in picks]
        return torch.stack(clips).float() / 255.0
