"""Architectures other than TRecViT, for comparison: one file per architecture.

Each baseline takes the same input as TRecViT (videos ``[B, T, 3, H, W]`` with
RGB in ``[0, 1]``), returns the same output dataclass, and is a row of the
architecture table (:mod:`trecvit.architectures`), so ``trecvit train --arch``,
``evaluate``, ``classify``, ``profile``, ``compare-efficiency``,
``save_pretrained`` / ``from_pretrained`` and the weight initialisers work for
it unchanged:

* :class:`FrameAverageViT` (``frame_average``): the order-blind per-frame ViT of ``trecvit demo``;
* ViViT (Arnab et al., 2021): :class:`ViViT` (``vivit``, model 1, full
  spatio-temporal attention), :class:`ViViTFactorisedEncoder` (``vivit_fe``,
  model 2), :class:`ViViTFactorisedSelfAttention` (``vivit_fsa``, model 3) and
  the paper's causal ViViT :class:`CausalViViT` (``cvivit``, streams with a
  key/value cache);
* the hybrids of the paper's Table 2, TRecViT with another temporal block:
  :class:`ViTLSTM` (``vit_lstm``), :class:`ViTConv1D` (``vit_conv1d``),
  :class:`ViTTemporalAttention` (``vit_tsa``);
* :class:`PureLRU` (``pure_lru``, Figure 4): the flattened video through RG-LRU blocks.
"""

from trecvit.baselines.cvivit import CausalViViT, CausalViViTConfig
from trecvit.baselines.frame_average import FrameAverageViT
from trecvit.baselines.pure_lru import PureLRU, PureLRUConfig
from trecvit.baselines.vit_conv1d import ViTConv1D, ViTConv1DConfig
from trecvit.baselines.vit_lstm import ViTLSTM, ViTLSTMConfig
from trecvit.baselines.vit_tsa import ViTTemporalAttention, ViTTSAConfig
from trecvit.baselines.vivit import ViViT, ViViTConfig
from trecvit.baselines.vivit_fe import ViViTFactorisedEncoder
from trecvit.baselines.vivit_fsa import ViViTFactorisedSelfAttention, ViViTFSAConfig

__all__ = [
    "CausalViViT",
    "CausalViViTConfig",
    "FrameAverageViT",
    "PureLRU",
    "PureLRUConfig",
    "ViTConv1D",
    "ViTConv1DConfig",
    "ViTLSTM",
    "ViTLSTMConfig",
    "ViTTSAConfig",
    "ViTTemporalAttention",
    "ViViT",
    "ViViTConfig",
    "ViViTFSAConfig",
    "ViViTFactorisedEncoder",
    "ViViTFactorisedSelfAttention",
]
