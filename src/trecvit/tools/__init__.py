"""Tools around a trained model: profiling, export, and checking an installation.

:mod:`~trecvit.tools.profiling` counts FLOPs and measures peak memory, latency
and frames per second (``trecvit profile``); :mod:`~trecvit.tools.export`
exports the streaming step to ONNX and ``torch.export`` and checks the export
against PyTorch (``trecvit export``); :mod:`~trecvit.tools.verify` runs the
official model's reference outputs through this implementation
(``trecvit verify``). They use the model and checkpoint APIs only; no task
depends on them.
"""
