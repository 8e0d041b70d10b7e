"""Point tracking on TRecViT: a causal recurrent readout, the TAP-Vid metrics and data formats.

* :mod:`~trecvit.tracking.model`: :class:`PointTracker` (a TRecViT trunk and MooG's recurrent
  readout; whole clips, or online through :meth:`PointTracker.step`), :class:`TrackerConfig`;
* :mod:`~trecvit.tracking.loss`: the position (Huber), visibility and certainty losses;
* :mod:`~trecvit.tracking.metrics`: :func:`compute_tapvid_metrics` (the benchmark's conventions),
  :func:`average_metrics`;
* :mod:`~trecvit.tracking.data`: readers of the TAP-Vid formats (DAVIS, Kinetics, RGB-Stacking,
  Perception Test, and ``.npz``), query sampling (``first``, ``strided``), :class:`TrackingDataset`;
* :mod:`~trecvit.tracking.synthetic`: :class:`SyntheticTracks`, textured objects moving over a
  moving background with exact tracks and occlusion flags;
* :mod:`~trecvit.tracking.train`: :class:`TrackerTrainer` (``trecvit train-tracker``);
* :mod:`~trecvit.tracking.evaluate`: :func:`evaluate_tracker` (``trecvit eval-tracker``);
* :mod:`~trecvit.tracking.online`: :func:`track_video` (``trecvit track``).
"""

from trecvit.tracking.metrics import average_metrics, compute_tapvid_metrics
from trecvit.tracking.model import PointTracker, TrackerConfig, TrackerState, TrackingOutput

__all__ = ["PointTracker", "TrackerConfig", "TrackerState", "TrackingOutput", "average_metrics",
           "compute_tapvid_metrics"]
