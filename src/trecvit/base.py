"""What every architecture of the table shares: a trunk, a classification head, saving and loading.

An architecture (a row of :mod:`trecvit.architectures`) is a subclass of
:class:`VideoClassifier` with a name (``arch``), a config dataclass
(``config_class``) and a trunk module under ``self.encoder`` (a
:class:`~trecvit.encoder.FrameTrunk`: tokenizer, blocks, final norm). The
classifier's head is ``self.head``. The split is timm's: ``forward_features``
runs the trunk, ``forward_head`` the classifier, ``forward`` both.

``save_pretrained`` writes the folder format of
:mod:`trecvit.checkpoints.pretrained` with the ``arch`` in ``config.json``;
``from_pretrained`` on a class loads a folder of that class only (a folder
written for another architecture is refused, naming both);
:func:`trecvit.checkpoints.auto.from_pretrained` loads any architecture.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from trecvit.checkpoints import pretrained as folder_format

ModelT = TypeVar("ModelT", bound="VideoClassifier")

# Trunk tensors of checkpoints written before the trunk became a module of its own (0.1.0).
LEGACY_TRUNK_PREFIXES = ("tokenizer.", "blocks.", "norm.")


def upgrade_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict with the trunk under ``encoder.``: checkpoints of 0.1.0 had the trunk's
    ``tokenizer.*``, ``blocks.*``, ``norm.*`` at the top level. Newer ones are returned as
    they are (the same dict)."""
    if any(k.startswith("encoder.") for k in state) or not any(
            k.startswith(LEGACY_TRUNK_PREFIXES) for k in state):
        return state
    return {("encoder." + k if k.startswith(LEGACY_TRUNK_PREFIXES) else k): v for k, v in state.items()}


@dataclass
class ClassifierOutput:
    """Output of a classifier's ``forward`` for ``b`` videos split into ``c`` clips.

    Attributes:
        logits: ``[b, classes]``, the mean of the per-clip logits.
        probs: ``[b, classes]``, the mean of the per-clip softmax probabilities.
        pre_logits: ``[b, c, r]``, per-clip features (the head's per-frame features,
            averaged over the frames of the clip).
        encoded: ``[b * c, t / c, n, d]``, the trunk's output after the final norm.
    """

    logits: torch.Tensor
    probs: torch.Tensor
    pre_logits: torch.Tensor
    encoded: torch.Tensor


class VideoClassifier(nn.Module):
    """Base class of the architectures: ``encoder`` (the trunk) + ``head`` (the classifier).

    Subclasses set ``arch`` and ``config_class``, build ``self.encoder`` and
    ``self.head`` in ``__init__`` and then call :func:`trecvit.init.init_weights_official`.
    """

    arch: ClassVar[str]
    config_class: ClassVar[type]
    output_class: ClassVar[type] = ClassifierOutput  # what forward returns

    def __init__(self, config: Any):
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} takes a {self.config_class.__name__}, got "
                            f"{type(config).__name__}")
        self.config = config
        # checkpoints of 0.1.0 (trunk tensors at the top level) load into any model
        self.register_load_state_dict_pre_hook(_upgrade_hook)

    # ------------------------------------------------------------------ helpers
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each trunk layer's activations in the backward pass instead of keeping
        them (activation checkpointing: less memory, about a third more compute)."""
        self.encoder.grad_checkpointing = enable

    @property
    def grad_checkpointing(self) -> bool:
        return self.encoder.grad_checkpointing

    @property
    def device(self) -> torch.device:
        """The device of the model's weights."""
        return self.encoder.device

    def require_streaming(self, what: str) -> None:
        """``ValueError`` naming the architecture when it has no frame-by-frame ``step``
        (``what`` is the operation that needs one)."""
        if not callable(getattr(self, "step", None)):
            raise ValueError(f"{what} needs model.step, but a {self.arch!r} model does not run frame by "
                             "frame")

    @property
    def tokenizer(self) -> nn.Module:
        """The trunk's tokenizer (``self.encoder.tokenizer``)."""
        return self.encoder.tokenizer

    def num_clips(self, num_frames: int) -> int:
        """Clips a video of ``num_frames`` frames is split into (each is classified on its own
        and the predictions are averaged); 1 unless the architecture says otherwise."""
        return 1

    # ------------------------------------------------------------- full clips
    def forward_features(self, video: torch.Tensor) -> torch.Tensor:
        """The trunk: ``video [b, t, 3, H, W]`` -> ``encoded [b * c, t / c, n, d]`` with
        ``c = self.num_clips(t)`` (pass ``c`` to :meth:`forward_head`)."""
        return self.encoder(video)

    def forward_head(self, encoded: torch.Tensor, *, num_clips: int) -> ClassifierOutput:
        """The classifier on ``encoded [b * c, t / c, n, d]`` of ``b`` videos cut into
        ``num_clips = c`` clips each (``model.num_clips(t)`` for a ``t``-frame video):
        ``forward_head(forward_features(v), num_clips=model.num_clips(v.shape[1]))`` equals
        ``forward(v)``. ``num_clips`` is required because the clip structure is not visible
        in ``encoded``'s shape."""
        if encoded.dim() != 4 or num_clips < 1 or encoded.shape[0] % num_clips:
            raise ValueError(f"encoded must be [b * clips, t, n, d] with clips = {num_clips}, "
                             f"got shape {tuple(encoded.shape)}")
        features = self.head.clip_features(self.head.frame_features(encoded))  # (b c, r)
        clip_logits = self.head(features)  # (b c, classes)
        b = encoded.shape[0] // num_clips
        clip_logits = clip_logits.view(b, num_clips, -1)  # (b, c, classes)
        return self.output_class(
            logits=clip_logits.mean(dim=1),
            probs=clip_logits.float().softmax(dim=-1).mean(dim=1),
            pre_logits=features.view(b, num_clips, -1),
            encoded=encoded,
        )

    def forward(self, video: torch.Tensor) -> ClassifierOutput:
        """Classify ``video [b, t, 3, H, W]`` (float, RGB in [0, 1], channel-first)."""
        encoded = self.forward_features(video)  # validates the video
        return self.forward_head(encoded, num_clips=self.num_clips(video.shape[1]))

    # ----------------------------------------------------------- serialisation
    def save_pretrained(self, directory: str | Path,
                        preprocessor: folder_format.PreprocessorConfig | None = None) -> Path:
        """Write ``config.json`` (with this architecture's ``arch``) and ``model.safetensors``
        to ``directory``, and ``preprocessor_config.json`` (the clip settings the model was
        trained with, the defaults of ``evaluate`` and ``classify``) when given."""
        return folder_format.save_pretrained(self, directory, preprocessor=preprocessor)

    @classmethod
    def from_pretrained(cls: type[ModelT], directory: str | Path,
                        map_location: str | torch.device = "cpu") -> ModelT:
        """Load a folder written by :meth:`save_pretrained` for this architecture (a folder
        of another architecture is refused, naming both; load any one with
        :func:`trecvit.checkpoints.auto.from_pretrained`)."""
        directory = Path(directory)
        arch, _ = folder_format.read_config_json(directory)
        if arch != cls.arch:
            raise ValueError(f"{directory} holds a {arch!r} model, not {cls.arch!r} ({cls.__name__}); "
                             f"load it with the class of {arch!r} or with "
                             "trecvit.checkpoints.auto.from_pretrained")
        return folder_format.load_folder(directory, cls.config_class.from_dict, cls, map_location,
                                         upgrade=upgrade_state_dict)


def _upgrade_hook(module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
    """``load_state_dict`` pre-hook: rename 0.1.0 trunk keys (in place) to ``encoder.*``."""
    local = {k[len(prefix):]: None for k in state_dict if k.startswith(prefix)}
    if upgrade_state_dict(local) is local:  # nothing to upgrade
        return
    for old in local:
        if old.startswith(LEGACY_TRUNK_PREFIXES):
            state_dict[prefix + "encoder." + old] = state_dict.pop(prefix + old)
