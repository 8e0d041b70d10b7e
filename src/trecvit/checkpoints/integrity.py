"""Files that survive crashes and show corruption: atomic writes and per-tensor checksums.

``atomic_write`` writes to a temporary file beside the target, flushes it, renames
it over the target and syncs the folder, so a process killed at any moment (or a
full disk) leaves either the old file or the complete new one.

Neither safetensors nor ``torch.save`` checks the bytes of a tensor when it is
read back: a flipped bit loads silently as a wrong weight. Files written by
trecvit therefore carry a CRC-32 of every tensor (``tensor_checksums``), and the
loaders compare them (``verify_checksums``), naming the file and the tensor that
does not match.
"""

from __future__ import annotations

import os
import tempfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch


def _sync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it to ``path``.

    On any failure (including ``KeyboardInterrupt``) the temporary file is removed
    and ``path`` is left as it was.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _sync_dir(path.parent)


def tensor_crc32(tensor: torch.Tensor) -> int:
    """CRC-32 of a tensor's bytes (its dtype's in-memory layout, C order)."""
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    if flat.numel() == 0:
        return 0
    return zlib.crc32(flat.view(torch.uint8).numpy())


def iter_tensors(obj: Any, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor in nested dicts, lists and tuples, with a dotted path as its name."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            yield from iter_tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from iter_tensors(value, f"{prefix}.{i}" if prefix else str(i))


STRUCTURE = "<structure>"  # checksum entry for everything in a payload that is not a tensor


def _skeleton(obj: Any) -> str:
    """A canonical text of ``obj`` with each tensor replaced by its dtype and shape."""
    if isinstance(obj, torch.Tensor):
        return f"T({obj.dtype},{tuple(obj.shape)})"
    if isinstance(obj, Mapping):
        items = sorted((repr(k), _skeleton(v)) for k, v in obj.items())
        return "{" + ",".join(f"{k}:{v}" for k, v in items) + "}"
    if isinstance(obj, (list, tuple)):
        return ("[" if isinstance(obj, list) else "(") + ",".join(_skeleton(v) for v in obj) + "]"
    return repr(obj)


def tensor_checksums(obj: Any, structure: bool = False) -> dict[str, int]:
    """``{dotted name: CRC-32}`` of every tensor in ``obj``; with ``structure``, also an entry
    ``"<structure>"`` covering every other value (numbers, strings, the nesting)."""
    sums = {name: tensor_crc32(t) for name, t in iter_tensors(obj)}
    if structure:
        sums[STRUCTURE] = zlib.crc32(_skeleton(obj).encode("utf-8"))
    return sums


def verify_checksums(obj: Any, expected: Mapping[str, int], *, source: str | Path) -> None:
    """Raise ``ValueError`` naming ``source`` and the tensor if ``obj`` does not match ``expected``."""
    found = dict(iter_tensors(obj))
    missing = sorted(set(expected) - set(found) - {STRUCTURE})
    if missing:
        raise ValueError(f"{source} is corrupt: tensor {missing[0]!r} is listed in its checksums but "
                         "missing from the file")
    for name, crc in expected.items():
        if name == STRUCTURE:
            if zlib.crc32(_skeleton(obj).encode("utf-8")) != int(crc):
                raise ValueError(f"{source} is corrupt: its non-tensor contents (step, config, optimiser "
                                 "settings) do not match the checksum written with them")
        elif tensor_crc32(found[name]) != int(crc):
            raise ValueError(f"{source} is corrupt: tensor {name!r} does not match the checksum written "
                             "with it (the file was damaged after it was saved)")
