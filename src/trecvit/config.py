"""Configuration of a TRecViT model.

The defaults are the official ``get_model`` ones: TRecViT-B at 224 x 224,
32 frames per clip, 400 Kinetics classes (136,778,128 parameters).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The ViT size table (width, depth, mlp_dim, num_heads), as in big_vision.
VARIANTS: dict[str, tuple[int, int, int, int]] = {
    "mu": (32, 1, 128, 2),
    "Ti": (192, 12, 768, 3),
    "S": (384, 12, 1536, 6),
    "M": (512, 12, 2048, 8),
    "B": (768, 12, 3072, 12),
    "L": (1024, 24, 4096, 16),
    "H": (1280, 32, 5120, 16),
    "g": (1408, 40, 6144, 16),
    "G": (1664, 48, 8192, 16),
}

_POSEMB = ("learn", "sincos2d")
_POOL = ("tok", "gap")
BLOCK_ORDERS = ("time_space", "space_time")
READOUTS = ("mean", "last")
# The ablation switches of the paper's Table 1 (and the extras) and their official values.
ABLATION_DEFAULTS: dict[str, Any] = {"lru_gates": True, "temporal_conv": True, "temporal_skip": True,
                                     "block_order": "time_space", "readout": "mean"}


class ViTConfigMixin:
    """What every architecture's config dataclass shares (TRecViT's and the baselines'):
    the frame and patch-grid sizes from ``image_size`` and ``patch_size``, construction
    from a ViT size (:data:`VARIANTS`) or a dict that is checked field by field, and JSON.

    A config using it is a dataclass with at least ``width``, ``depth``, ``num_heads``,
    ``mlp_dim``, ``patch_size`` and ``image_size`` fields.
    """

    # ----------------------------------------------------------- derived sizes
    @property
    def image_hw(self) -> tuple[int, int]:
        """``image_size`` as an ``(H, W)`` pair."""
        if isinstance(self.image_size, tuple):
            if len(self.image_size) != 2:
                raise ValueError(f"{type(self).__name__}.image_size must be an int or an (H, W) pair, "
                                 f"got {self.image_size!r}")
            return self.image_size  # type: ignore[return-value]
        return (int(self.image_size), int(self.image_size))

    @property
    def grid_hw(self) -> tuple[int, int]:
        """Patch grid ``(H / p, W / p)`` at ``image_size``."""
        h, w = self.image_hw
        return (h // self.patch_size, w // self.patch_size)

    @property
    def head_dim(self) -> int:
        return self.width // self.num_heads

    # ------------------------------------------------------------ construction
    @classmethod
    def from_variant(cls, name: str, **overrides: Any):
        """The official configuration of a ViT size (``mu, Ti, S, M, B, L, H, g, G``).

        ``overrides`` replace any field, e.g. ``from_variant("S", num_classes=174)``.
        """
        if name not in VARIANTS:
            raise ValueError(f"unknown {cls.__name__.removesuffix('Config')} variant {name!r}; "
                             f"known: {', '.join(VARIANTS)}")
        width, depth, mlp_dim, num_heads = VARIANTS[name]
        fields = dict(width=width, depth=depth, mlp_dim=mlp_dim, num_heads=num_heads)
        fields.update(overrides)
        return cls.from_dict(fields)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        """Build from a dict, refusing unknown fields by name."""
        from trecvit.validation import check_known_fields

        check_known_fields(data, cls, f"{cls.__name__} field(s)")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if isinstance(data["image_size"], tuple):
            data["image_size"] = list(data["image_size"])
        return data

    def replace(self, **changes: Any):
        return self.from_dict({**self.to_dict(), **changes})

    def to_json_file(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def from_json_file(cls, path: str | Path):
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from err
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a JSON object of {cls.__name__} fields")
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: {err}") from err


@dataclass
class TRecViTConfig(ViTConfigMixin):
    """Hyper-parameters of TRecViT (defaults: the released TRecViT-B, Kinetics-400).

    Attributes:
        width: token width ``D`` of the encoder.
        depth: number of encoder layers; each is a temporal block (RG-LRU over
            time) followed by a spatial block (ViT self-attention over a frame).
        num_heads: attention heads of the spatial blocks; also the number of
            diagonal blocks of the RG-LRU gates.
        mlp_dim: hidden width of the spatial blocks' MLP.
        patch_size: side ``p`` of the square, one-frame patches (16).
        image_size: frame size the model is built for, an int (square) or an
            ``(H, W)`` pair; fixes the shape of the learnt position embedding.
            Both sides must be multiples of ``patch_size``.
        posemb: position embedding over the patch grid: ``"learn"`` (a
            parameter, official) or ``"sincos2d"`` (fixed, MoCo v3).
        pool_type: per-frame readout of the classifier: ``"tok"`` (a class
            token, official) or ``"gap"`` (mean over patch tokens).
        conv1d_width: kernel width ``K`` of the causal temporal convolution (4).
        lru_width: channel width ``L`` of the recurrence; ``None`` means
            ``2 * width`` (the release's ``state_multiplier = 2``). Must be
            divisible by ``num_heads``.
        min_rad: smallest initial eigenvalue modulus of the RG-LRU (0.5);
            used only to initialise a model from scratch.
        max_rad: largest initial eigenvalue modulus of the RG-LRU (0.999);
            used only to initialise a model from scratch.
        lru_gates: the RG-LRU's input gate and recurrence gate (official:
            ``True``). ``False`` (the paper's "no input gate, no recurrent
            gate" ablation) removes both gate layers: the input passes
            ungated and the recurrence weight is the learnt
            ``a = exp(-softplus(a_param))`` itself, so ``min_rad`` /
            ``max_rad`` are its initial range.
        temporal_conv: the causal temporal convolution before the RG-LRU
            (official: ``True``). ``False`` removes it and its parameters
            (the streaming state's ``conv`` field then holds no frames).
        temporal_skip: the residual connection around the temporal block
            (official: ``True``); ``False`` makes the block
            ``linear_out(...)`` of the normed input only.
        num_classes: output classes of the classification head (400).
        rep_size: width of the ``tanh`` pre-logits layer (3072); ``0`` means no
            pre-logits layer.
        frames_per_clip: clip length; a video of ``T`` frames is split into
            ``max(T // frames_per_clip, 1)`` equal clips processed
            independently, whose predictions are averaged (32).
        block_order: ``"time_space"`` (official: each layer's temporal block,
            then its spatial block) or ``"space_time"`` (the spatial block first).
        readout: how the classifier reads a clip: ``"mean"`` (official: the
            average of the per-frame features) or ``"last"`` (the last frame's
            features only; streaming, the current frame's).

    The fields ``lru_gates`` to ``temporal_skip``, ``block_order`` and ``readout``
    are the ablation switches of the paper's Table 1 (and more); their defaults
    (:data:`ABLATION_DEFAULTS`) are the official model, which an official
    checkpoint always loads as.
    """

    width: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_dim: int = 3072
    patch_size: int = 16
    image_size: int | tuple[int, int] = 224
    posemb: str = "learn"
    pool_type: str = "tok"
    conv1d_width: int = 4
    lru_width: int | None = None
    min_rad: float = 0.5
    max_rad: float = 0.999
    lru_gates: bool = True
    temporal_conv: bool = True
    temporal_skip: bool = True
    num_classes: int = 400
    rep_size: int = 3072
    frames_per_clip: int = 32
    block_order: str = "time_space"
    readout: str = "mean"

    def __post_init__(self) -> None:
        if isinstance(self.image_size, (list, tuple)):
            self.image_size = tuple(int(s) for s in self.image_size)  # type: ignore[assignment]
        if self.lru_width is None:
            self.lru_width = 2 * self.width
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent field."""
        for name in ("width", "depth", "num_heads", "mlp_dim", "patch_size", "conv1d_width",
                     "lru_width", "num_classes", "frames_per_clip"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"TRecViTConfig.{name} must be a positive int, got {value!r}")
        if not isinstance(self.rep_size, int) or self.rep_size < 0:
            raise ValueError(f"TRecViTConfig.rep_size must be an int >= 0, got {self.rep_size!r}")
        if self.width % self.num_heads:
            raise ValueError(f"TRecViTConfig.width ({self.width}) must be divisible by "
                             f"num_heads ({self.num_heads})")
        if self.lru_width % self.num_heads:  # type: ignore[operator]
            raise ValueError(f"TRecViTConfig.lru_width ({self.lru_width}) must be divisible by "
                             f"num_heads ({self.num_heads}): the RG-LRU gates are block-diagonal "
                             "with one block per head")
        if self.posemb not in _POSEMB:
            raise ValueError(f"TRecViTConfig.posemb must be one of {_POSEMB}, got {self.posemb!r}")
        if self.posemb == "sincos2d" and self.width % 4:
            raise ValueError(f"TRecViTConfig.width ({self.width}) must be divisible by 4 for "
                             "the sincos2d position embedding")
        if self.pool_type not in _POOL:
            raise ValueError(f"TRecViTConfig.pool_type must be one of {_POOL}, got {self.pool_type!r}")
        h, w = self.image_hw
        if h < 1 or w < 1 or h % self.patch_size or w % self.patch_size:
            raise ValueError(f"TRecViTConfig.image_size {self.image_size!r} must be positive "
                             f"multiples of patch_size ({self.patch_size})")
        if not 0.0 < self.min_rad <= self.max_rad < 1.0:
            raise ValueError(f"TRecViTConfig needs 0 < min_rad <= max_rad < 1, got "
                             f"min_rad={self.min_rad}, max_rad={self.max_rad}")
        kind = type(self).__name__
        for name in ("lru_gates", "temporal_conv", "temporal_skip"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{kind}.{name} must be true or false, got {getattr(self, name)!r}")
        if self.block_order not in BLOCK_ORDERS:
            raise ValueError(f"{kind}.block_order must be one of {BLOCK_ORDERS}, got {self.block_order!r}")
        if self.readout not in READOUTS:
            raise ValueError(f"{kind}.readout must be one of {READOUTS}, got {self.readout!r}")

    def ablations(self) -> dict[str, Any]:
        """The ablation switches that differ from the official model, ``{field: value}``
        (empty for the official architecture)."""
        return {name: getattr(self, name) for name, default in ABLATION_DEFAULTS.items()
                if getattr(self, name) != default}

    def refuse_ablations(self, *names: str, why: str) -> None:
        """``ValueError`` if any switch of ``names`` is not at its official value (for an
        architecture that does not have the part it ablates; ``why`` says so)."""
        changed = [f"{n}={getattr(self, n)!r}" for n in names if getattr(self, n) != ABLATION_DEFAULTS[n]]
        if changed:
            raise ValueError(f"{type(self).__name__}: {', '.join(changed)} cannot be set: {why}")

    @property
    def num_tokens(self) -> int:
        """Tokens per frame at ``image_size``: patches, plus the class token with ``tok``."""
        gh, gw = self.grid_hw
        return gh * gw + (1 if self.pool_type == "tok" else 0)
