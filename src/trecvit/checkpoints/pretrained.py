"""The model folder: ``config.json`` + ``model.safetensors`` (+ ``preprocessor_config.json``).

``config.json`` holds the architecture's name (``"arch"``, a row of
:mod:`trecvit.architectures`; folders written before it existed are TRecViT)
and its config fields. ``model.safetensors`` holds the weights, with a CRC-32 of
every tensor and the config it was saved with in its metadata: loading checks
both, so a damaged file or an edited ``config.json`` is refused, naming the
tensor or the field, instead of loading as silently wrong weights.
``preprocessor_config.json`` (as Hugging Face saves one) records the clip
settings the model was trained with (frames, stride, frame size, pixel
normalisation), which ``trecvit evaluate`` and ``trecvit classify`` take as
their defaults.

Files are written atomically (a temporary file in the same folder, then a
rename), so an interrupted save never leaves a half-written file in place of a
good one. Loading reads JSON and safetensors only: it cannot run code. This
module knows no model class (the model classes use it); loading a folder of any
architecture is :func:`trecvit.checkpoints.auto.from_pretrained`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from trecvit.checkpoints.integrity import atomic_write, tensor_checksums, verify_checksums
from trecvit.validation import check_known_fields, check_names_and_shapes, int_at_least, size_hw

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PREPROCESSOR_NAME = "preprocessor_config.json"
CHECKSUM_KEY = "trecvit.crc32"  # safetensors metadata: JSON {tensor name: CRC-32}
CONFIG_KEY = "trecvit.config"  # safetensors metadata: the config.json the weights were saved with
DEFAULT_ARCH = "trecvit"  # the architecture of a config.json without "arch" (written by 0.1.0)


@dataclass(frozen=True)
class PreprocessorConfig:
    """How clips were made for a model in training, so inference makes them alike.

    Attributes:
        num_frames: frames per clip.
        stride: every ``stride``-th frame of the video.
        image_size: ``(H, W)`` of the frames fed to the model (short side resized,
            then centre-cropped, at inference).
        mean, std: the pixel normalisation ``(x - mean) / std`` applied to RGB in
            ``[0, 1]`` before the model; trecvit models take plain ``[0, 1]`` RGB
            (``mean`` 0, ``std`` 1: an ImageNet ViT's normalisation is folded into
            the patch embedding when it initialises one).
    """

    num_frames: int
    stride: int = 1
    image_size: tuple[int, int] = (224, 224)
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "num_frames", int_at_least(self.num_frames, "num_frames"))
        object.__setattr__(self, "stride", int_at_least(self.stride, "stride"))
        object.__setattr__(self, "image_size", size_hw(self.image_size, "image_size"))
        for name in ("mean", "std"):
            values = tuple(float(v) for v in getattr(self, name))
            if len(values) != 3:
                raise ValueError(f"PreprocessorConfig.{name} must hold 3 values (RGB), got {values}")
            object.__setattr__(self, name, values)
        if min(self.std) <= 0:
            raise ValueError(f"PreprocessorConfig.std must be > 0, got {self.std}")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "preprocessor config") -> "PreprocessorConfig":
        try:
            check_known_fields(data, cls, "field(s)")
            return cls(**data)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}: {err}") from err


def _read_json_object(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not a UTF-8 text file: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object of {what}")
    return data


# ----------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------
def save_pretrained(model: torch.nn.Module, directory: str | Path,
                    preprocessor: PreprocessorConfig | None = None) -> Path:
    """Write ``model``'s config (with its ``arch``) and weights to ``directory`` (created if
    needed), and ``preprocessor`` as ``preprocessor_config.json`` when given. ``model`` is any
    architecture of the table (it has ``arch`` and ``config.to_dict()``)."""
    from trecvit._version import __version__

    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{directory} exists and is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    config_text = json.dumps({"arch": model.arch, **model.config.to_dict()}, indent=2) + "\n"
    metadata = {"format": "pt", "trecvit": __version__, CONFIG_KEY: config_text,
                CHECKSUM_KEY: json.dumps(tensor_checksums(state), sort_keys=True)}
    atomic_write(directory / WEIGHTS_NAME, lambda p: save_file(state, str(p), metadata=metadata))
    atomic_write(directory / CONFIG_NAME, lambda p: p.write_text(config_text, encoding="utf-8"))
    if preprocessor is not None:
        text = json.dumps(preprocessor.to_dict(), indent=2) + "\n"
        atomic_write(directory / PREPROCESSOR_NAME, lambda p: p.write_text(text, encoding="utf-8"))
    return directory


# ----------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------
def check_folder(directory: str | Path) -> Path:
    """``directory`` as a ``Path`` if it is a model folder (``config.json`` and
    ``model.safetensors``); ``FileNotFoundError`` / ``ValueError`` saying what it is otherwise."""
    directory = Path(directory)
    if not directory.is_dir():
        if directory.is_file() and directory.suffix == ".npz":
            raise ValueError(f"{directory} is an official .npz checkpoint; load it with "
                             "trecvit.load_official_checkpoint or convert it with `trecvit convert`")
        raise FileNotFoundError(f"checkpoint folder {directory} does not exist")
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory} has no {name}; a model folder holds {CONFIG_NAME} "
                                    f"and {WEIGHTS_NAME} (written by save_pretrained)")
    return directory


def read_config_json(directory: str | Path) -> tuple[str, dict[str, Any]]:
    """A model folder's ``config.json``: ``(arch, config fields)``; ``arch`` is
    ``"trecvit"`` for folders written before it was recorded."""
    path = check_folder(directory) / CONFIG_NAME
    data = _read_json_object(path, "config fields")
    arch = data.pop("arch", DEFAULT_ARCH)
    if not isinstance(arch, str):
        raise ValueError(f"{path}: arch must be a string naming an architecture, got {arch!r}")
    return arch, data


def read_preprocessor(directory: str | Path) -> PreprocessorConfig | None:
    """A model folder's ``preprocessor_config.json``, or ``None`` when it has none."""
    path = Path(directory) / PREPROCESSOR_NAME
    if not path.is_file():
        return None
    return PreprocessorConfig.from_dict(_read_json_object(path, "clip settings"), source=str(path))


def safetensors_metadata(path: Path) -> dict[str, str]:
    """The metadata of a safetensors file's header (no tensor is read)."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{path} is not a readable safetensors file (truncated or corrupt?): {err}"
                         ) from err


def check_saved_config(config_path: Path, weights: Path) -> None:
    """Refuse a ``config.json`` that differs from the config the weights were saved with (kept in the
    weights file by :func:`save_pretrained`), naming the fields; files without one are not checked."""
    saved_text = safetensors_metadata(weights).get(CONFIG_KEY)
    if saved_text is None:
        return
    try:
        saved = json.loads(saved_text)
        current = json.loads(Path(config_path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{weights}: the config stored with the weights is not valid JSON ({err})") from err
    changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if changed:
        listing = "; ".join(f"{k}: {current.get(k)!r} in {config_path.name}, {saved.get(k)!r} when saved"
                            for k in changed[:5])
        raise ValueError(f"{config_path} does not match the config {weights.name} was saved with "
                         f"({listing}); the file was edited or damaged. Restore it, or load the weights "
                         "into a model built from the intended config and save_pretrained it again")


def read_safetensors(path: Path, map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read a safetensors file, checking the per-tensor checksums that :func:`save_pretrained`
    writes (files from elsewhere have none and are read as they are)."""
    metadata = safetensors_metadata(path)
    try:
        state = load_file(str(path), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{path} is not a readable safetensors file (truncated or corrupt?): {err}"
                         ) from err
    if CHECKSUM_KEY in metadata:
        try:
            expected = json.loads(metadata[CHECKSUM_KEY])
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is corrupt: its checksum table is not valid JSON ({err})") from err
        verify_checksums(state, expected, source=path)
    return state


def load_folder(directory: str | Path, config_from_dict: Callable[[dict[str, Any]], Any],
                model_class: Callable[[Any], torch.nn.Module], map_location: str | torch.device = "cpu",
                upgrade: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
                *, expect: tuple[str, str, str] | None = None) -> torch.nn.Module:
    """``model_class(config)`` with the weights of a model folder, ``config`` read from its
    ``config.json`` by ``config_from_dict``; checks the checksums, the tensor names and shapes,
    finite values and that ``config.json`` is the config the weights were saved with.
    ``upgrade`` renames the keys of older files first. ``expect`` is ``(arch, what, hint)``: a
    folder of another ``arch`` is refused, saying it is not ``what`` and ``hint``."""
    directory = Path(directory)
    arch, data = read_config_json(directory)
    if expect is not None and arch != expect[0]:
        raise ValueError(f"{directory} holds a {arch!r} model, not {expect[1]} ({expect[0]!r}); {expect[2]}")
    try:
        config = config_from_dict(data)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{directory / CONFIG_NAME}: {err}") from err
    model = model_class(config).to(map_location)
    weights = directory / WEIGHTS_NAME
    state = read_safetensors(weights, map_location)  # checksums
    if upgrade is not None:
        state = upgrade(state)
    check_state_dict(state, model.state_dict(), directory)  # names the tensors
    check_weights(state, weights)
    check_saved_config(directory / CONFIG_NAME, weights)
    model.load_state_dict(state, strict=True)
    return model


def check_weights(state: dict[str, torch.Tensor], source: str | Path) -> None:
    """Refuse non-float or non-finite weights, naming ``source`` and the tensor."""
    for key, tensor in state.items():
        if not tensor.is_floating_point():
            raise ValueError(f"{source}: tensor {key!r} has dtype {tensor.dtype}; weights must be "
                             "floating point")
        if not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise ValueError(f"{source}: tensor {key!r} holds {bad} NaN or infinite value(s)")


def check_state_dict(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor],
                     directory: str | Path) -> None:
    """Refuse weights whose names or shapes differ from a model's ``state_dict()`` (``expected``),
    naming every missing, unexpected or mis-shaped tensor."""
    directory = Path(directory)
    check_names_and_shapes({k: tuple(v.shape) for k, v in state.items()},
                           {k: tuple(v.shape) for k, v in expected.items()},
                           source=f"{directory / WEIGHTS_NAME} (config {directory / CONFIG_NAME})",
                           what="tensor")
