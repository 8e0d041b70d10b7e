"""The architecture table: one row per model family, read by everything that builds a model.

``save_pretrained`` records a model's row name as ``"arch"`` in its
``config.json``; :func:`trecvit.checkpoints.auto.from_pretrained` reads it back
to choose the class; ``trecvit train --arch`` (and ``TrainConfig.arch``),
``evaluate``, ``classify``, ``profile`` and the weight initialisers find the
config and model classes here. Adding an architecture is one file (its config
dataclass and its :class:`~trecvit.base.VideoClassifier` subclass) plus one row
below; no loader names an architecture.

=================  ==========================================================
``trecvit``        TRecViT (:class:`trecvit.TRecViT`), the official model
``frame_average``  the order-blind per-frame ViT of ``trecvit demo``
                   (:class:`trecvit.baselines.FrameAverageViT`)
``vivit``          ViViT (Arnab et al. 2021) model 1, full spatio-temporal
                   attention (:class:`trecvit.baselines.vivit.ViViT`)
``vivit_fe``       ViViT model 2, factorised encoder
                   (:class:`trecvit.baselines.vivit_fe.ViViTFactorisedEncoder`)
``vivit_fsa``      ViViT model 3, factorised self-attention
                   (:class:`trecvit.baselines.vivit_fsa.ViViTFactorisedSelfAttention`)
``cvivit``         cViViT, ViViT model 1 with causal attention over time,
                   streaming with a key/value cache
                   (:class:`trecvit.baselines.cvivit.CausalViViT`)
``vit_lstm``       TRecViT with an LSTM, a causal temporal convolution or
``vit_conv1d``     causal temporal self-attention in place of the RG-LRU
``vit_tsa``        (the paper's Table 2; :mod:`trecvit.baselines.vit_lstm`,
                   :mod:`~trecvit.baselines.vit_conv1d`, :mod:`~trecvit.baselines.vit_tsa`)
``pure_lru``       PureLRU, the whole video flattened to one token sequence
                   through RG-LRU blocks (the paper's Figure 4;
                   :class:`trecvit.baselines.pure_lru.PureLRU`)
=================  ==========================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trecvit.base import VideoClassifier
from trecvit.baselines.frame_average import FrameAverageViT
from trecvit.baselines.vivit import ViViT
from trecvit.baselines.vivit_fe import ViViTFactorisedEncoder
from trecvit.baselines.vivit_fsa import ViViTFactorisedSelfAttention
from trecvit.baselines.cvivit import CausalViViT
from trecvit.baselines.pure_lru import PureLRU
from trecvit.baselines.vit_conv1d import ViTConv1D
from trecvit.baselines.vit_lstm import ViTLSTM
from trecvit.baselines.vit_tsa import ViTTemporalAttention
from trecvit.model import TRecViT


@dataclass(frozen=True)
class Architecture:
    """A row of the table: the name and the model class (which names its config dataclass).

    ``config_class`` has ``from_dict`` / ``to_dict`` / ``replace`` and, for the
    ViT sizes of ``trecvit train --variant``, ``from_variant(name, **overrides)``.
    """

    name: str
    model_class: type[VideoClassifier]

    @property
    def config_class(self) -> type:
        return self.model_class.config_class

    def config(self, variant: str | None = None, **overrides: Any):
        """A config of this architecture: a ViT size (``mu, Ti, S, M, B, L, H, g, G``) with
        ``overrides``, or the config class's defaults with them."""
        if variant is not None:
            return self.config_class.from_variant(variant, **overrides)
        return self.config_class.from_dict(overrides)

    def build(self, config: Any) -> VideoClassifier:
        """A freshly initialised model of this architecture."""
        return self.model_class(config)


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a for a in (
        Architecture("trecvit", TRecViT),  # RG-LRU over time, ViT over space: the paper's model
        Architecture("frame_average", FrameAverageViT),  # TRecViT's ViT on every frame, averaged
        Architecture("vivit", ViViT),  # ViViT model 1: full spatio-temporal attention (Arnab et al.)
        Architecture("vivit_fe", ViViTFactorisedEncoder),  # ViViT model 2: factorised encoder
        Architecture("vivit_fsa", ViViTFactorisedSelfAttention),  # ViViT model 3: factorised attention
        Architecture("cvivit", CausalViViT),  # ViViT model 1 with causal attention, key/value cache
        Architecture("vit_lstm", ViTLSTM),  # TRecViT with an LSTM as temporal block (paper Table 2)
        Architecture("vit_conv1d", ViTConv1D),  # ... a causal temporal convolution (Table 2)
        Architecture("vit_tsa", ViTTemporalAttention),  # ... causal temporal attention (Table 2)
        Architecture("pure_lru", PureLRU),  # the flattened video through RG-LRU blocks (paper Fig. 4)
    )
}
ARCH_NAMES = tuple(ARCHITECTURES)

for _name, _arch in ARCHITECTURES.items():  # the table and the classes agree
    assert _arch.model_class.arch == _name, f"{_arch.model_class.__name__}.arch != {_name!r}"


def get_architecture(name: str) -> Architecture:
    """The row called ``name``; a ``ValueError`` listing the known names otherwise."""
    try:
        return ARCHITECTURES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(ARCH_NAMES)}") from None


def build_model(arch: str, variant: str | None = None, **overrides: Any) -> VideoClassifier:
    """``build_model("trecvit", "S", num_classes=10)``: a freshly initialised model."""
    row = get_architecture(arch)
    return row.build(row.config(variant, **overrides))


__all__ = ["ARCHITECTURES", "ARCH_NAMES", "Architecture", "build_model", "get_architecture"]
