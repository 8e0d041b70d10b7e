"""Video classification with a trained model: whole videos, live streams, the demo.

:mod:`~trecvit.classification.inference` classifies a video file as a whole
(:func:`classify_video`) or frame by frame through ``model.step``
(:func:`stream_video`), with the clip settings the model was trained with;
:mod:`~trecvit.classification.labels` reads class names; and
:mod:`~trecvit.classification.demo` is ``trecvit demo``, which trains TRecViT
and an order-blind baseline on synthetic motion. The training loop itself is
shared by every task and lives in :mod:`trecvit.training`.
"""

from trecvit.classification.inference import (Prediction, StreamUpdate, classify_video, load_model,
                                              stream_video)
from trecvit.classification.labels import load_labels, top_k

__all__ = ["Prediction", "StreamUpdate", "classify_video", "load_labels", "load_model", "stream_video",
           "top_k"]
