"""Self-supervised pre-training: masked video autoencoding (``trecvit pretrain``), reconstructions
(``trecvit reconstruct``) and frozen-feature probes (``trecvit probe``).

- :mod:`~trecvit.mae.masking`: tube masks from ``(seed, step, video)`` (:class:`TubeMasking`).
- :mod:`~trecvit.mae.model`: :class:`MaskedAutoencoder`, a TRecViT encoder over the visible
  tubes only and a small causal TRecViT decoder over the full grid (:class:`MAEConfig`).
- :mod:`~trecvit.mae.loss`: patches, targets, the loss variants, PSNR, the mean-colour baseline.
- :mod:`~trecvit.mae.pretrain`: :class:`Pretrainer` and :class:`PretrainConfig`, the
  training stack's loop with the autoencoder's hooks.
- :mod:`~trecvit.mae.reconstruct`: reconstruction grids and PSNR of videos.
- :mod:`~trecvit.mae.probe`: attentive and linear probes on a frozen encoder.
"""

from trecvit.mae.masking import TubeMasking
from trecvit.mae.model import MAEConfig, MaskedAutoencoder
from trecvit.mae.pretrain import PretrainConfig, Pretrainer, ReconstructionResult, evaluate_reconstruction

__all__ = ["MAEConfig", "MaskedAutoencoder", "PretrainConfig", "Pretrainer", "ReconstructionResult",
           "TubeMasking", "evaluate_reconstruction"]
