"""Run ``trecvit`` (``python train_with_faults.py ARGS...``) with a fault injected into checkpoint writing.

The fault comes from the environment variable ``TRECVIT_FAULT`` (unset: no fault):

- ``write:N:F``   the N-th checkpoint of this process writes the first fraction F of its bytes to the
                  temporary file, then the process kills itself with SIGKILL (killed mid-write);
- ``rename:N``    the N-th checkpoint is written completely, and the process is killed just before the
                  temporary file is renamed to its checkpoint name;
- ``sync:N``      killed right after the N-th checkpoint's rename, before the folder is synced and the
                  old checkpoints are pruned;
- ``enospc:N``    the N-th checkpoint write fails with ``OSError(ENOSPC)`` half-way (a full disk).

Used by ``test_interruptions.py``; not collected by pytest.
"""

from __future__ import annotations

import errno
import io
import os
import signal
import sys

import torch

import trecvit.checkpoints.integrity as integrity
import trecvit.training.checkpoint as checkpoint
from trecvit.cli import main


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install(fault: str) -> None:
    kind, n, *rest = fault.split(":")
    target = int(n)
    saves = {"count": 0}
    original_save = checkpoint._save_synced
    original_sync = integrity._sync_dir

    def faulty_save(obj, path):
        saves["count"] += 1
        if saves["count"] != target:
            return original_save(obj, path)
        if kind in ("write", "enospc"):
            buffer = io.BytesIO()
            torch.save(obj, buffer)
            data = buffer.getvalue()
            cut = int(len(data) * (float(rest[0]) if rest else 0.5))
            with open(path, "wb") as fh:
                fh.write(data[:cut])
                fh.flush()
                os.fsync(fh.fileno())
            if kind == "enospc":
                raise OSError(errno.ENOSPC, "No space left on device")
            _kill()
        original_save(obj, path)
        if kind == "rename":
            _kill()

    def faulty_sync(directory):
        original_sync(directory)
        if kind == "sync" and saves["count"] == target and directory.name == "checkpoints":
            _kill()

    checkpoint._save_synced = faulty_save
    integrity._sync_dir = faulty_sync


if __name__ == "__main__":
    if os.environ.get("TRECVIT_FAULT"):
        install(os.environ["TRECVIT_FAULT"])
    sys.exit(main(sys.argv[1:]))
