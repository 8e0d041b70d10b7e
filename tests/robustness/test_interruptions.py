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
from collections import Counter
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
PROCESS_TIMEOUT = 300  # s; a run takes ~10 s on 2 busy cores


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


def wait_for(proc: subprocess.Popen, log: Path, timeout: float = PROCESS_TIMEOUT) -> tuple[int, str]:
    """``proc``'s exit code and output. A run takes ~10 s; one still going after ``timeout`` is hung: it
    is killed (not left behind) and the test fails."""
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"the training process was still running after {timeout} s:\n{log.read_text()[-3000:]}")
    return code, log.read_text()


def complete_checkpoints(out: Path) -> list[int]:
    """Steps of the checkpoints on disk; each must load (complete, checksums intact)."""
    steps = []
    for step, path in list_checkpoints(out / "checkpoints"):
        payload = load_checkpoint(path)
        assert payload["step"] == step
        steps.append(step)
    return steps


def resumed_from(text: str) -> int | None:
    """The step of the checkpoint a run's output says it resumed from (``None``: it did not get that far,
    or found no checkpoint)."""
    match = re.search(r"resumed from \S*step_(\d+)\.pt", text)
    return int(match.group(1)) if match else None


def train_losses(run: Path) -> dict[int, float]:
    return {int(r["step"]): float(r["loss"]) for r in MetricsLog.read(run / "metrics.csv")
            if r["split"] == "train"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run, in a fresh process with the same environment as the killed ones (a
    process that ran other tests may have other thread settings, hence other float rounding). Its
    wall time is kept in ``../seconds`` (see ``reference_seconds``)."""
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    start = time.monotonic()
    done = subprocess.run([sys.executable, str(RUNNER), *train_args(out)], env=ENV, capture_output=True,
                          text=True, timeout=PROCESS_TIMEOUT)
    seconds = time.monotonic() - start
    assert done.returncode == 0, done.stderr[-3000:]
    (out.parent / "seconds").write_text(f"{seconds:.3f}")
    return out


@pytest.fixture
def reference_seconds(reference) -> float:
    """How long the uninterrupted run took from launch to exit on this machine (start-up, training,
    export): random kills are timed as fractions of it, so that they land in every phase on a fast or
    a slow machine alike."""
    return float((reference.parent / "seconds").read_text())


def assert_same_weights(run: Path, reference: Path) -> None:
    got = load_file(str(run / "model" / "model.safetensors"))
    expected = load_file(str(reference / "model" / "model.safetensors"))
    assert got.keys() == expected.keys()
    differ = {k: float((got[k] - expected[k]).abs().max()) for k in expected if not torch.equal(got[k], expected[k])}
    assert not differ, f"final weights differ from the uninterrupted run's: {differ}"


def assert_same_as_reference(run: Path, reference: Path) -> None:
    """``run`` finished, with the uninterrupted run's losses at every step and its final weights, exactly."""
    assert complete_checkpoints(run)[-1] == TOTAL_STEPS
    assert train_losses(run) == train_losses(reference)  # exactly, every step
    assert_same_weights(run, reference)


def finish_and_compare(run: Path, reference: Path, log: Path) -> None:
    """Run ``run`` to its end without a fault (resuming it from its newest checkpoint; starting it if it
    was killed before it wrote its config), then compare it with the uninterrupted run."""
    before = complete_checkpoints(run) if run.exists() else []
    code, text = wait_for(launch(run, None, resume=(run / "config.yaml").exists(), log=log), log)
    assert code == 0, text[-3000:]
    assert resumed_from(text) == (before[-1] if before else None), text[-2000:]
    assert_same_as_reference(run, reference)


@pytest.mark.slow
def test_twenty_sigkills_then_resume_equal_an_uninterrupted_run(reference, reference_seconds, tmp_path):
    """20 SIGKILLs, 5 of each kind: at random moments (start-up, training, anywhere in a checkpoint write,
    after the final checkpoint) and injected at each phase of a checkpoint write. After each: every
    checkpoint on disk is complete; the resume starts from the newest one; every run, once finished,
    has the uninterrupted run's weights and losses exactly.

    Any outcome of a kill is valid, whatever the machine's speed. A kill that lands after the run wrote
    its final checkpoint ends that run: it is resumed to its end, compared with the uninterrupted run,
    and the next trials kill a new run. So does a random kill that comes too late (the process already
    exited on its own): that trial is no kill, and it is retried, with shorter delays from then on."""
    rng = random.Random(20261121)
    faults = ["random", "write", "rename", "sync"]
    injected = dict.fromkeys(faults, 0)
    landed: Counter[str] = Counter()  # where the kills (and the too-late random ones) landed
    resumed_ok, runs_compared, delay_scale = 0, 0, 1.0
    run_number = 1
    run = tmp_path / f"run{run_number}"
    trial = 0
    while sum(injected.values()) < TRIALS:
        kind = faults[sum(injected.values()) % len(faults)]  # a trial without a kill is retried as is
        trial += 1
        assert trial <= 3 * TRIALS, f"only {injected} kills in {trial - 1} trials: runs kept finishing first"
        before = complete_checkpoints(run) if run.exists() else []
        newest = before[-1] if before else 0
        assert newest < TOTAL_STEPS  # a finished run is replaced by a new one below
        # an injected fault fires at the N-th checkpoint this process writes: at most the ones left
        left = TOTAL_STEPS - newest
        fault = None
        if kind == "write":
            fault = f"write:{min(rng.randint(1, 3), left)}:{rng.uniform(0.01, 0.99):.3f}"
        elif kind in ("rename", "sync"):
            fault = f"{kind}:{min(rng.randint(1, 3), left)}"
        log = tmp_path / f"trial{trial:02d}.log"
        proc = launch(run, fault, resume=(run / "config.yaml").exists(), log=log)
        if kind == "random":
            # anywhere from start-up to past the end (~45% of a run is start-up, ~30% training with a
            # checkpoint write every step, the rest evaluation and export after the final checkpoint)
            time.sleep(rng.uniform(0.05, 1.05) * delay_scale * reference_seconds)
            proc.send_signal(signal.SIGKILL)  # a no-op if it has already exited
        code, text = wait_for(proc, log)
        if code == 0:  # exited on its own before the kill: a complete run, but no kill
            assert kind == "random", f"fault {fault} never fired:\n{text[-3000:]}"
            delay_scale /= 2
        else:
            assert code == -signal.SIGKILL, text[-3000:]
            injected[kind] += 1
        after = complete_checkpoints(run)
        if before:  # progress is never lost: the newest complete checkpoint is at least as new
            assert after and after[-1] >= before[-1], (before, after)
        resumed = resumed_from(text)
        if resumed is not None:
            assert before and resumed == before[-1], text[-2000:]
            resumed_ok += 1
        if code == 0:
            landed["after the process exited"] += 1
        elif after and after[-1] == TOTAL_STEPS:
            landed["after the final checkpoint"] += 1
        elif (after[-1] if after else 0) > newest:
            landed["during training"] += 1
        else:
            landed["before this process's first checkpoint"] += 1
        if code == 0:
            assert_same_as_reference(run, reference)
        elif after and after[-1] == TOTAL_STEPS:  # killed after its final checkpoint: finish it
            finish_and_compare(run, reference, tmp_path / f"finish{run_number}.log")
        else:
            continue
        runs_compared += 1
        run_number += 1
        run = tmp_path / f"run{run_number}"

    if run.exists():  # the last run, interrupted: resume it to its end
        finish_and_compare(run, reference, tmp_path / "final.log")
        runs_compared += 1
    print(f"\n{TRIALS} SIGKILLs ({injected}) in {trial} trials, landing {dict(landed)}; {resumed_ok} resumes "
          f"checked against the newest checkpoint; {runs_compared} finished run(s) bit-identical to the "
          "uninterrupted run")
    assert injected == dict.fromkeys(faults, TRIALS // len(faults))


@pytest.mark.slow
def test_full_disk_during_a_checkpoint_write_keeps_the_previous_one_and_stops_clearly(reference, tmp_path):
    run = tmp_path / "run"
    log = tmp_path / "full.log"
    code, text = wait_for(launch(run, "enospc:5", resume=False, log=log), log)
    assert code == 1, text[-3000:]
    assert "Traceback" not in text
    assert "could not write checkpoint" in text and "No space left on device" in text
    assert "earlier checkpoints are intact" in text and "--resume" in text
    assert complete_checkpoints(run) == [3, 4]  # keep_last 2; step 5 never became a checkpoint
    assert not list((run / "checkpoints").glob(".*.tmp"))  # the partial file was removed
    resumed = subprocess.run([sys.executable, str(RUNNER), "train", "--resume", "--out-dir", str(run),
                              "--no-progress"], env=ENV, capture_output=True, text=True, timeout=PROCESS_TIMEOUT)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
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
                              "--no-progress"], env=ENV, capture_output=True, text=True, timeout=PROCESS_TIMEOUT)
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
