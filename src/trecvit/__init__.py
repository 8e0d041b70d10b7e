"""TRecViT: a causal, recurrent video transformer, in PyTorch.

Videos are float tensors ``[B, T, 3, H, W]`` (channel-first frames) with RGB
values in ``[0, 1]``.
"""

__version__ = "0.1.0"

from trecvit import io
from trecvit.config import VARIANTS, TRecViTConfig
from trecvit.convert import OFFICIAL_CHECKPOINT_URL, load_official_checkpoint
from trecvit.model import TRecViT, TRecViTOutput, TRecViTStepOutput
from trecvit.state import TRecViTState

__all__ = [
    "OFFICIAL_CHECKPOINT_URL",
    "TRecViT",
    "TRecViTConfig",
    "TRecViTOutput",
    "TRecViTState",
    "TRecViTStepOutput",
    "VARIANTS",
    "io",
    "load_official_checkpoint",
    "__version__",
]
