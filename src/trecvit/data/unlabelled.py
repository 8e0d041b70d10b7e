"""A folder of unlabelled videos (every video file under it), for self-supervised pre-training."""

from __future__ import annotations

from typing import Any

from trecvit.data.datasets import VIDEO_EXTENSIONS, VideoClipDataset, _check_dir, _walk_videos

UNLABELLED_CLASS = "unlabelled"


def unlabelled_video_dataset(root: str, **clip_options: Any) -> VideoClipDataset:
    """Clips of every video file under ``root`` (recursive, hidden folders skipped, sorted), with
    one class (``"unlabelled"``, label 0), e.g. for ``trecvit pretrain --data videos``.

    Args:
        root: the folder.
        **clip_options: keyword options of :class:`VideoClipDataset` (frames, stride, size,
            ``train``, augmentation, decoding).

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: ``root`` is not a folder or holds no video file.
    """
    folder = _check_dir(root, "video folder")
    videos = _walk_videos(folder)
    if not videos:
        raise ValueError(f"no video files ({', '.join(VIDEO_EXTENSIONS)}) found under {str(folder)!r}")
    clip_options.setdefault("source", str(folder))
    return VideoClipDataset([(path, 0) for path in videos], [UNLABELLED_CLASS], **clip_options)
