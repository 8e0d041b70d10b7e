"""Real-video data pipeline for training and evaluating TRecViT video classifiers.

Pipeline, for item ``i`` of a :class:`VideoClipDataset`:

1. **Items**: ``(path, label)`` pairs from a folder of class sub-folders
   (:func:`video_folder_dataset`), a ``path,label`` list (:func:`csv_dataset`),
   the official Kinetics CSVs (:func:`kinetics_dataset`) or the
   Something-Something v2 JSON files (:func:`ssv2_dataset`);
   :func:`build_dataset` picks one by name.  Missing files are dropped up
   front with one warning.
2. **Temporal sampling** (:mod:`trecvit.data.sampling`): a clip is
   ``num_frames`` frames ``stride`` apart, at a random offset for training
   (:func:`train_clip_indices`) or ``C`` evenly spread clips for evaluation
   (:func:`eval_clip_indices`, views ``"CxS"`` from :func:`parse_views`).
3. **Decoding** with PyAV (:mod:`trecvit.io`): only up to the last needed
   frame, only needed frames converted, downscaled by FFmpeg while decoding.
   Undecodable files give a sample with ``video=None`` and an ``error``.
4. **Transforms** (:mod:`trecvit.data.transforms`), pure tensor functions on
   ``[T, 3, H, W]`` float RGB in [0, 1] with one set of random parameters per
   clip: :class:`TrainTransform` (random resized crop, horizontal flip,
   colour RandAugment) or :class:`EvalTransform` (short-side resize, 1 or 3
   crops).  Batch-level :func:`mixup_cutmix` runs in the training loop.
5. **Batching**: ``VideoLoader(..., collate_fn=collate_videos,
   worker_init_fn=worker_init_fn)`` (a ``DataLoader`` that names the video a
   worker was decoding if the worker dies or stalls); failed samples are
   dropped and listed in ``batch["failed"]``.

Output layout: training samples are ``[T, 3, H, W]``, evaluation samples
``[V, T, 3, H, W]`` (``V = C * S`` views); batches add a leading ``B``.
Values are RGB in [0, 1] with no mean/std normalisation, as TRecViT expects.
All randomness of item ``i`` derives from ``(seed, epoch, i)``
(:meth:`VideoClipDataset.set_epoch`), so batches are identical whatever the
number of workers or processes.
"""

from trecvit.data.datasets import (
    DATASET_FORMATS,
    VIDEO_EXTENSIONS,
    VideoClipDataset,
    build_dataset,
    collate_videos,
    csv_dataset,
    kinetics_dataset,
    ssv2_dataset,
    video_folder_dataset,
    worker_init_fn,
)
from trecvit.data.sampling import clip_span, eval_clip_indices, parse_views, train_clip_indices
from trecvit.data.transforms import (
    RAND_AUGMENT_OPS,
    EvalTransform,
    TrainTransform,
    center_crop,
    horizontal_flip,
    mixup_cutmix,
    rand_augment,
    random_resized_crop,
    resize_short_side,
    spatial_crops,
    to_float_video,
)
from trecvit.data.workers import VideoLoader, WorkerFailedError

__all__ = [
    "DATASET_FORMATS",
    "RAND_AUGMENT_OPS",
    "VIDEO_EXTENSIONS",
    "EvalTransform",
    "TrainTransform",
    "VideoClipDataset",
    "VideoLoader",
    "WorkerFailedError",
    "build_dataset",
    "center_crop",
    "clip_span",
    "collate_videos",
    "csv_dataset",
    "eval_clip_indices",
    "horizontal_flip",
    "kinetics_dataset",
    "mixup_cutmix",
    "parse_views",
    "rand_augment",
    "random_resized_crop",
    "resize_short_side",
    "spatial_crops",
    "ssv2_dataset",
    "to_float_video",
    "train_clip_indices",
    "video_folder_dataset",
    "worker_init_fn",
]
