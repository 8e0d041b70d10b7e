"""Crashes and interruptions: SIGKILL at random moments and mid-checkpoint, a full disk, a dead worker.

Every resume must start from the newest *complete* checkpoint, and the finished
run must be bit-identical to one that was never interrupted.
"""

from __future__ import annotations

import csv
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from trecvit.data import VideoClipDataset, VideoLoader, WorkerFailedError, collate_videos
from trecvit.training.checkpoint import list_checkpoints, load_checkpoint
from trecvit.training.metrics import MetricsLog

RUNNER = Path(__file__).with_name("train_with_faults.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
TOTAL_STEPS = 60
TRIALS = 20


def train_args(out: Path, *extra: str) -> list[str]:
    """A few-second run: 1-layer width-32 TRecViT, 4-frame 32x32 synthetic clips, a checkpoint every step
    (so random kills often land in a checkpoint write)."""
    return ["train", "--out-dir", str(out), "--synthetic-train-size", "48", "--synthetic-val-size", "8",
            "--num-frames", "4", "--image-size", "32", "--variant", "mu", "--model", "patch_size=8",
            "--model", "rep_size=0", "--batch-size", "8", "--lr", "3e-3", "--warmup-steps", "2",
            "--max-steps", str(TOTAL_STEPS), "--save-every", "1", "--keep-last", "2", "--log-every", "1",
            "--no-progress", "--no-tensorboard", *extra]


def launch(out: Path, fault: str | None, resume: bool, log: Path) -> subprocess.Popen:
    env = dict(ENV)
    env.pop("TRECVIT_FAULT", None)
    if fault:
        env["TRECVIT_FAULT"] = fault
    args = ["train", "--resume", "--out-dir", str(out), "--no-progress"] if resume else train_args(out)
    with open(log, "w") as fh:
        return subprocess.Popen([sys.executable, str(RUNNER), *args], env=env, stdout=fh,
                                stderr=subprocess.STDOUT)


def complete_checkpoints(out: Path) -> list[int]:
    """Steps of the checkpoints on disk; each must load (complete, checksums intact)."""
    steps = []
    for step, path in list_checkpoints(out / "checkpoints"):
        payload = load_checkpoint(path)
        assert payload["step"] == step
        steps.append(step)
    return steps


def train_losses(run: Path) -> dict[int, float]:
    return {int(r["step"]): float(r["loss"]) for r in MetricsLog.read(run / "metrics.csv")
            if r["split"] == "train"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run, in a fresh process with the same environment as the killed ones (a
    process that ran other tests may have other thread settings, hence other float rounding)."""
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    done = subprocess.run([sys.executable, str(RUNNER), *train_args(out)], env=ENV, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def assert_same_weights(run: Path, reference: Path) -> None:
    got = load_file(str(run / "model" / "model.safetensors"))
    expected = load_file(str(reference / "model" / "model.safetensors"))
    assert got.keys() == expected.keys()
    differ = {k: float((got[k] - expected[k]).abs().max()) for k in expected if not torch.equal(got[k], expected[k])}
    assert not differ, f"final weights differ from the uninterrupted run's: {differ}"


@pytest.mark.slow
def test_twenty_sigkills_then_resume_equal_an_uninterrupted_run(reference, tmp_path):
    """20 SIGKILLs: at random moments (start-up, training, anywhere in a checkpoint write) and injected at
    each phase of a checkpoint write. After each: every checkpoint on disk is complete; the resume starts
    from the newest one; the finished run's weights and losses equal the uninterrupted run's exactly."""
    rng = random.Random(20261121)
    run = tmp_path / "run"
    faults = ["random", "write", "rename", "sync"]
    kills, resumed_ok, injected = 0, 0, {k: 0 for k in faults}
    trial = 0
    while kills < TRIALS:
        kind = faults[trial % len(faults)]
        trial += 1
        assert trial < 3 * TRIALS, "the run kept finishing before it could be killed"
        fault = None
        if kind == "write":
            fault = f"write:{rng.randint(1, 3)}:{rng.uniform(0.01, 0.99):.3f}"
        elif kind in ("rename", "sync"):
            fault = f"{kind}:{rng.randint(1, 3)}"
        before = complete_checkpoints(run) if run.exists() else []
        log = tmp_path / f"trial{trial:02d}.log"
        proc = launch(run, fault, resume=(run / "config.yaml").exists(), log=log)
        if kind == "random":
            # anywhere from start-up to well into training (a step takes a few ms, a start-up ~2-3 s)
            time.sleep(rng.uniform(0.5, 4.0))
            proc.send_signal(signal.SIGKILL)
        code = proc.wait(timeout=300)
        text = log.read_text()
        if code == 0:  # finished before the kill: not a kill, try again (rare)
            assert kind == "random", text
            continue
        assert code == -signal.SIGKILL, text[-3000:]
        kills += 1
        injected[kind] += 1
        after = complete_checkpoints(run)
        if before:  # progress is never lost: the newest complete checkpoint is at least as new
            assert after and after[-1] >= before[-1], (before, after)
        match = re.search(r"resumed from \S*step_(\d+)\.pt", text)
        if match:
            assert int(match.group(1)) == before[-1], text[-2000:]
            resumed_ok += 1
        assert not after or after[-1] < TOTAL_STEPS  # (none yet if killed during start-up)

    last = complete_checkpoints(run)[-1]
    final = subprocess.run([sys.executable, str(RUNNER), "train", "--resume", "--out-dir", str(run),
                            "--no-progress"], env=ENV, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr[-3000:]
    assert f"step_{last:08d}.pt" in final.stderr

    assert train_losses(run) == train_losses(reference)  # exactly, every step
    assert_same_weights(run, reference)
    print(f"\n{kills} SIGKILLs ({injected}), {resumed_ok} resumes checked against the newest checkpoint; "
          "final weights bit-identical to the uninterrupted run")
    assert injected["write"] >= 4 and injected["rename"] >= 4 and injected["sync"] >= 4


@pytest.mark.slow
def test_full_disk_during_a_checkpoint_write_keeps_the_previous_one_and_stops_clearly(reference, tmp_path):
    run = tmp_path / "run"
    log = tmp_path / "full.log"
    proc = launch(run, "enospc:5", resume=False, log=log)
    assert proc.wait(timeout=300) == 1
    text = log.read_text()
    assert "Traceback" not in text
    assert "could not write checkpoint" in text and "No space left on device" in text
    assert "earlier checkpoints are intact" in text and "--resume" in text
    assert complete_checkpoints(run) == [3, 4]  # keep_last 2; step 5 never became a checkpoint
    assert not list((run / "checkpoints").glob(".*.tmp"))  # the partial file was removed
    assert subprocess.run([sys.executable, str(RUNNER), "train", "--resume", "--out-dir", str(run),
                           "--no-progress"], env=ENV, capture_output=True, timeout=300).returncode == 0
    assert train_losses(run) == train_losses(reference)
    assert_same_weights(run, reference)


def test_a_damaged_newest_checkpoint_is_moved_aside_and_the_previous_one_resumes(reference, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    shutil.rmtree(run / "model")
    newest = run / "checkpoints" / f"step_{TOTAL_STEPS:08d}.pt"
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0x10  # a flipped bit inside a tensor: torch.load alone would not notice
    newest.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"step_000000{TOTAL_STEPS}\.pt is corrupt: tensor '.+' does not "):
        load_checkpoint(newest)
    resumed = subprocess.run([sys.executable, str(RUNNER), "train", "--resume", "--out-dir", str(run),
                              "--no-progress"], env=ENV, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "moved it aside" in resumed.stderr
    assert (run / "checkpoints" / f"step_{TOTAL_STEPS:08d}.pt.corrupt").exists()  # kept for inspection
    assert train_losses(run) == train_losses(reference)
    assert_same_weights(run, reference)


# ------------------------------------------------------------------ a dead worker
class _CrashingDataset(VideoClipDataset):
    """Kills its worker process (as a decoder segfault would) when it reaches one file."""

    victim = ""

    def _read(self, path, plan, size_for):
        if path == self.victim:
            os.kill(os.getpid(), signal.SIGKILL)
        return super()._read(path, plan, size_for)


def _video_items(folder: Path, count: int, seed: int) -> list[tuple[str, int]]:
    from trecvit.data.synthetic import write_synthetic_videos

    write_synthetic_videos(folder, count, num_frames=4, image_size=32, seed=seed)
    with open(folder / "labels.csv") as fh:
        return [(str(folder / p), int(label)) for p, label in csv.reader(fh) if p != "path"]


def test_a_dead_dataloader_worker_is_reported_with_its_video(tmp_path):
    items = _video_items(tmp_path, 8, seed=3)
    dataset = _CrashingDataset(items, [f"c{i}" for i in range(12)], num_frames=4, image_size=32, train=False)
    dataset.victim = items[5][0]
    loader = VideoLoader(dataset, batch_size=2, num_workers=2, collate_fn=collate_videos, timeout=60)
    seen = []
    with pytest.raises(WorkerFailedError) as info:
        for batch in loader:
            seen.extend(batch["index"].tolist())
    assert info.value.sources == [items[5][0]]
    assert f"died while loading {items[5][0]}" in str(info.value)
    assert 5 not in seen
    # the same loader works again once the file is gone (nothing is left in a broken state)
    dataset.items = [it for it in items if it[0] != dataset.victim]
    assert sum(len(b["index"]) for b in loader) == len(items) - 1


class _HangingDataset(VideoClipDataset):
    """Never returns from one file (as a decoder stuck inside C code would)."""

    victim = ""

    def _read(self, path, plan, size_for):
        if path == self.victim:
            time.sleep(3600)
        return super()._read(path, plan, size_for)


def test_a_stalled_dataloader_worker_is_reported_with_its_video(tmp_path):
    items = _video_items(tmp_path, 4, seed=4)
    dataset = _HangingDataset(items, [f"c{i}" for i in range(12)], num_frames=4, image_size=32, train=False)
    dataset.victim = items[2][0]
    loader = VideoLoader(dataset, batch_size=1, num_workers=1, collate_fn=collate_videos, timeout=3)
    start = time.monotonic()
    with pytest.raises(WorkerFailedError, match=r"timed out after 3 seconds.*still loading") as info:
        for _ in loader:
            pass
    assert info.value.sources == [items[2][0]]
    assert time.monotonic() - start < 30
