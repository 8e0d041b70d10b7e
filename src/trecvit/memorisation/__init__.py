"""The long-video memorisation task (paper section 5.4, Table 6, Figures 8-9): ``trecvit memorise``.

After ``T`` frames a model reconstructs the ``k``-th frame it saw (the paper: ``k = 16``, trained
on ``T = 64``, tested on 64 and 96). TRecViT answers from its last frame's tokens, so whatever it
remembers of frame ``k`` is in its recurrent state; ViViT attends over every frame at once but
has to resample its learnt temporal position embedding for a video longer than in training.

- :mod:`~trecvit.memorisation.walking_tour`: :class:`WalkingTour`, synthetic walking-tour videos
  (a camera panning and zooming along an endless procedural strip), deterministic by seed.
- :mod:`~trecvit.memorisation.data`: the video sources, :class:`SyntheticTours` and
  :class:`FolderWindows` (windows of real videos).
- :mod:`~trecvit.memorisation.models`: :class:`TRecViTMemoriser` (last-step readout) and
  :class:`ViViTMemoriser` (temporal pooling), their sizes and :func:`build_config`.
- :mod:`~trecvit.memorisation.task`: :class:`MemoriseConfig`, :func:`train_model`,
  :func:`evaluate` (per-video PSNR) and the remember-nothing baselines.
- :mod:`~trecvit.memorisation.run`: :func:`run_memorisation`, the whole experiment and its files.
- :mod:`~trecvit.memorisation.plots`: the sweep and reconstruction figures.
"""

from trecvit.memorisation.data import FolderWindows, SyntheticTours
from trecvit.memorisation.models import TRecViTMemoriser, ViViTMemoriser, build_config, build_model
from trecvit.memorisation.run import RunResult, run_memorisation
from trecvit.memorisation.task import EvalResult, MemoriseConfig, baseline_psnr, evaluate, train_model
from trecvit.memorisation.walking_tour import WalkingTour

__all__ = ["EvalResult", "FolderWindows", "MemoriseConfig", "RunResult", "SyntheticTours", "TRecViTMemoriser",
           "ViViTMemoriser", "WalkingTour", "baseline_psnr", "build_config", "build_model", "evaluate",
           "run_memorisation", "train_model"]
