"""Training checkpoints: written atomically, the last N kept, loaded without unpickling code.

A checkpoint ``checkpoints/step_00001234.pt`` holds the model, optimiser, EMA
and loop counters. It is written to a temporary file in the same folder, flushed
to disk and renamed, so a run killed at any moment leaves either the previous
checkpoints or a complete new one, never a partial file under a checkpoint name.
Every tensor's CRC-32, and one of all the other values, is stored with it and
checked on loading (``torch.load`` itself does not notice damaged bytes). Loading
uses ``torch.load(weights_only=True)``: tensors, numbers, strings and containers
only; a file that would need to run code is refused.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from pathlib import Path
from typing import Any

import torch

from trecvit.checkpoints.integrity import atomic_write, tensor_checksums, verify_checksums

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^step_(\d{8,})\.pt$")
FORMAT_VERSION = 1


def checkpoint_path(directory: Path, step: int) -> Path:
    return directory / f"step_{step:08d}.pt"


def list_checkpoints(directory: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``directory`` as ``(step, path)``, oldest first.

    Temporary files of an interrupted write (``.step_....tmp``) are not listed.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = _NAME.match(path.name)
        if match and path.is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def _save_synced(obj: Any, path: Path) -> None:
    with open(path, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())


def save_checkpoint(directory: str | Path, step: int, payload: dict[str, Any], keep_last: int) -> Path:
    """Write ``payload`` as the checkpoint of ``step``, then delete all but the newest ``keep_last``.

    Raises ``OSError`` (e.g. a full disk) with the earlier checkpoints untouched.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = checkpoint_path(directory, step)
    payload = {"format_version": FORMAT_VERSION, "step": step, **payload}
    payload["checksums"] = tensor_checksums(payload, structure=True)
    try:
        atomic_write(path, lambda tmp: _save_synced(payload, tmp))
    except OSError as err:
        raise OSError(err.errno, f"could not write checkpoint {path} ({err.strerror or err}); "
                                 "the earlier checkpoints are intact") from err
    for _, old in list_checkpoints(directory)[:-keep_last]:
        old.unlink(missing_ok=True)
    for stale in directory.glob(".step_*.tmp"):  # left by a run killed mid-write
        stale.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (no code is run)."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        raise ValueError(f"{path} is not a readable training checkpoint (only tensors and plain "
                         f"values are accepted; the file may be truncated, corrupt or unsafe): "
                         f"{err}") from err
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path} is not a trecvit training checkpoint (format {FORMAT_VERSION})")
    for key in ("model", "optimizer", "step", "config"):
        if key not in payload:
            raise ValueError(f"{path}: checkpoint lacks {key!r}")
    checksums = payload.pop("checksums", {})  # absent in checkpoints of trecvit 0.x before checksums
    if not isinstance(checksums, dict):
        raise ValueError(f"{path}: checkpoint's 'checksums' entry is not a table of checksums")
    verify_checksums(payload, checksums, source=path)
    return payload


def latest_checkpoint(directory: str | Path) -> Path | None:
    found = list_checkpoints(directory)
    return found[-1][1] if found else None


def load_latest_checkpoint(directory: str | Path, map_location: str | torch.device = "cpu",
                           move_aside: bool = True) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint in ``directory`` that reads back intact, as ``(path, payload)``.

    A newer file that fails to load (damaged on disk after it was written) is
    renamed to ``step_....pt.corrupt`` (kept for inspection, no longer listed)
    with a warning (``move_aside=False``: left in place, e.g. on all but one
    process of a distributed run), and the next older one is tried. ``None`` if there are no
    checkpoints; ``ValueError`` if there are some but none is readable.
    """
    found = list_checkpoints(directory)
    errors = []
    for _, path in reversed(found):
        try:
            return path, load_checkpoint(path, map_location)
        except ValueError as err:
            errors.append(str(err))
            if not move_aside:
                continue
            aside = path.with_name(path.name + ".corrupt")
            with contextlib.suppress(FileNotFoundError):
                os.replace(path, aside)
            logger.warning("%s; moved it aside to %s and trying the previous checkpoint", err, aside)
    if errors:
        raise ValueError(f"no readable checkpoint in {directory}: " + " | ".join(errors))
    return None
