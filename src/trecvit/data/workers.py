"""A ``DataLoader`` that says which video a worker was decoding when it died or stalled.

When a ``DataLoader`` worker process is killed (a decoder crash, the out-of-memory
killer) PyTorch only reports its process id. :class:`VideoLoader` has each worker
note, in a small file per worker, the item it is loading; when a worker dies, or
no batch arrives within ``timeout`` seconds, it raises :class:`WorkerFailedError`
naming the item (for :class:`~trecvit.data.VideoClipDataset`, the video file).

A dataset describes its items with an optional ``item_source(index) -> str``
method; otherwise the item is named by its index.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader, Dataset

__all__ = ["VideoLoader", "WorkerFailedError"]

_PIDS = re.compile(r"pid(?:\(s\))? ([\d, ]+)")
_IDLE = "idle"


class WorkerFailedError(RuntimeError):
    """A ``DataLoader`` worker died or stalled; the message names what it was loading.

    Attributes:
        sources: the items (video paths) the failed workers were loading.
    """

    def __init__(self, message: str, sources: list[str]):
        super().__init__(message)
        self.sources = sources


def describe_item(dataset: Any, key: Any) -> str:
    describe = getattr(dataset, "item_source", None)
    if describe is not None:
        try:
            return str(describe(key))
        except Exception:  # noqa: BLE001 - a description must never break loading
            pass
    return f"item {key!r}"


class _Tracked(Dataset):
    """Wraps a dataset: each worker writes ``<folder>/<pid>`` with the item it is loading."""

    def __init__(self, dataset: Dataset, folder: str):
        self.dataset = dataset
        self.folder = folder

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:  # e.g. classes, num_classes of the wrapped dataset
        if name in ("dataset", "folder"):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def _note(self, text: str) -> None:
        try:
            with open(os.path.join(self.folder, str(os.getpid())), "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError:  # the note is a diagnostic; loading goes on without it
            pass

    def __getitem__(self, key: Any) -> Any:
        self._note(describe_item(self.dataset, key))
        item = self.dataset[key]
        self._note(_IDLE)
        return item


class VideoLoader(DataLoader):
    """A ``torch.utils.data.DataLoader`` that names the video behind a dead or stalled worker.

    Takes ``DataLoader``'s arguments. With ``num_workers > 0`` the dataset is
    wrapped (``loader.dataset`` is the wrapper; the original is
    ``loader.source_dataset``) and a worker that dies, or a batch that does not
    arrive within ``timeout`` seconds (0: wait forever), raises
    :class:`WorkerFailedError` naming the items the workers were loading. With
    ``num_workers=0`` it behaves exactly like ``DataLoader``.
    """

    def __init__(self, dataset: Dataset, *args: Any, **kwargs: Any):
        self.source_dataset = dataset
        self._folder: str | None = None
        if kwargs.get("num_workers", 0) > 0:
            self._folder = tempfile.mkdtemp(prefix="trecvit-workers-")
            weakref.finalize(self, shutil.rmtree, self._folder, ignore_errors=True)
            dataset = _Tracked(dataset, self._folder)
        super().__init__(dataset, *args, **kwargs)

    def __iter__(self) -> Iterator[Any]:
        iterator = super().__iter__()
        if self._folder is None:
            return iterator
        for note in Path(self._folder).iterdir():  # notes of the previous epoch's workers
            note.unlink(missing_ok=True)
        return self._watch(iterator)

    def _watch(self, iterator: Iterator[Any]) -> Iterator[Any]:
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except RuntimeError as err:
                raise self._explain(err) from err
            yield batch

    def _notes(self) -> dict[int, str]:
        notes = {}
        assert self._folder is not None
        for path in Path(self._folder).iterdir():
            if path.name.isdigit():
                try:
                    notes[int(path.name)] = path.read_text(encoding="utf-8")
                except OSError:
                    continue
        return notes

    def _explain(self, err: RuntimeError) -> RuntimeError:
        text = str(err)
        notes = self._notes()
        if "timed out" in text:
            busy = {pid: what for pid, what in notes.items() if what != _IDLE}
            if not busy:
                return err
            listing = "; ".join(f"worker pid {pid}: {what}" for pid, what in sorted(busy.items()))
            return WorkerFailedError(f"{text.rstrip('.')}; the workers were still loading: {listing}",
                                     sorted(busy.values()))
        match = _PIDS.search(text)
        if "DataLoader worker" not in text or match is None:
            return err
        pids = [int(p) for p in re.findall(r"\d+", match.group(1))]
        found = {pid: notes.get(pid) for pid in pids}
        parts, sources = [], []
        for pid, what in found.items():
            if what is None:
                parts.append(f"worker pid {pid} died before loading anything")
            elif what == _IDLE:
                parts.append(f"worker pid {pid} died between items (not while decoding)")
            else:
                parts.append(f"worker pid {pid} died while loading {what}")
                sources.append(what)
        reason = text.split(". ")[0].rstrip(".")
        hint = " (if the decoder crashes on that file, remove or re-encode it)" if sources else ""
        return WorkerFailedError(f"{'; '.join(parts)}: {reason}{hint}", sources)
