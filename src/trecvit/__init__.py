"""TRecViT: a causal, recurrent video transformer, in PyTorch.

Videos are float tensors ``[B, T, 3, H, W]`` (channel-first frames) with RGB
values in ``[0, 1]``.
"""

import os as _os
import sys as _sys

# Large CPU tensors on transparent huge pages: a fresh 600 MB activation then costs ~300
# page faults instead of ~150,000 (the scan's forward + backward at 1024 frames runs 1.8x
# faster). PyTorch reads this once, when it is imported, so it only takes effect when
# trecvit is imported first (as by the `trecvit` command). TRECVIT_THP=0 leaves it alone.
if "torch" not in _sys.modules and _os.environ.get("TRECVIT_THP", "1") != "0":
    _os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

from trecvit._version import __version__  # noqa: E402
from trecvit import io  # noqa: E402
from trecvit.config import VARIANTS, TRecViTConfig  # noqa: E402
from trecvit.checkpoints.official import OFFICIAL_CHECKPOINT_URL, load_official_checkpoint  # noqa: E402
from trecvit.encoder import TRecViTEncoder  # noqa: E402
from trecvit.model import TRecViT, TRecViTOutput, TRecViTStepOutput  # noqa: E402
from trecvit.state import TRecViTState  # noqa: E402

__all__ = [
    "OFFICIAL_CHECKPOINT_URL",
    "TRecViT",
    "TRecViTConfig",
    "TRecViTEncoder",
    "TRecViTOutput",
    "TRecViTState",
    "TRecViTStepOutput",
    "VARIANTS",
    "io",
    "load_official_checkpoint",
    "__version__",
]
