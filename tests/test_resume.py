"""Crash and resume: SIGKILL a run, resume it with --ckpt_path last, compare with an uninterrupted run."""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lplgrad.records import read_rounds
from tiny import tiny_fit_args

ROOT = Path(__file__).resolve().parents[1]


def command(save_dir: Path, version: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "lplgrad", *tiny_fit_args(save_dir, "--trainer.logger.init_args.version", version,
                                                           *extra, query=10, budget=60, epochs=12)]


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def run(cmd: list[str]) -> str:
    out = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    log = out.stdout + out.stderr
    if "--ckpt_path" in cmd:  # a resume must really restore, not start afresh
        assert "Restored all states from the checkpoint" in log, log[-3000:]
    return log


def start_and_kill(cmd: list[str], run_dir: Path, should_kill) -> None:
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if should_kill(run_dir):
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()


def rounds(run_dir: Path) -> list[dict]:
    return read_rounds(run_dir / "rounds.jsonl")


def after_round_checkpoint(k: int):
    def ready(run_dir: Path) -> bool:
        r, ckpt = run_dir / "rounds.jsonl", run_dir / "checkpoints" / "last.ckpt"
        try:
            return len(rounds(run_dir)) >= k + 1 and ckpt.stat().st_mtime_ns > r.stat().st_mtime_ns
        except (OSError, ValueError):
            return False
    return ready


def check_complete(run_dir: Path) -> list[dict]:
    rows = rounds(run_dir)
    assert [r["round"] for r in rows] == list(range(5))  # every round exactly once
    assert [r["labeled"] for r in rows] == [20, 30, 40, 50, 60]
    with open(run_dir / "labeled.csv") as f:
        labeled = [int(r["index"]) for r in csv.DictReader(f)]
    assert len(labeled) == len(set(labeled)) == 60  # nothing lost, nothing labelled twice
    queried = [i for r in rows for i in r["queried"]]
    assert len(queried) == len(set(queried)) == 40 and set(queried) <= set(labeled)
    assert json.loads((run_dir / "finished.json").read_text())["labeled"] == 60
    return rows


def test_kill_after_round_checkpoint_then_resume_matches_uninterrupted(tmp_path):
    run(command(tmp_path, "reference"))
    ref = check_complete(tmp_path / "digits" / "reference")
    cmd = command(tmp_path, "crashed")
    start_and_kill(cmd, tmp_path / "digits" / "crashed", after_round_checkpoint(1))
    run(cmd + ["--ckpt_path", "last"])
    got = check_complete(tmp_path / "digits" / "crashed")
    assert [r["queried"] for r in got] == [r["queried"] for r in ref]
    assert [r["test_acc"] for r in got] == pytest.approx([r["test_acc"] for r in ref], abs=1e-6)
    # the same TensorBoard run folder: one version directory
    assert sorted(p.name for p in (tmp_path / "digits").iterdir()) == ["crashed", "reference"]


def test_kill_between_two_checkpoints_then_resume_matches_uninterrupted(tmp_path):
    """Checkpoints come at round ends (and every N minutes): a run killed well into a round
    redoes that round's epochs from the last checkpoint and ends exactly as an uninterrupted one."""
    run(command(tmp_path, "reference"))
    ref = check_complete(tmp_path / "digits" / "reference")
    cmd = command(tmp_path, "crashed")
    run_dir = tmp_path / "digits" / "crashed"
    seen: list[float] = []

    def into_round_2(d: Path) -> bool:
        if not after_round_checkpoint(1)(d):
            return False
        seen.append(time.monotonic()) if not seen else None
        return time.monotonic() - seen[0] > 0.5  # several epochs of round 2, none of them saved

    start_and_kill(cmd, run_dir, into_round_2)
    assert len(rounds(run_dir)) == 2  # killed inside round 2, after round 1's checkpoint
    run(cmd + ["--ckpt_path", "last"])
    got = check_complete(run_dir)
    assert [r["queried"] for r in got] == [r["queried"] for r in ref]
    assert [r["test_acc"] for r in got] == [r["test_acc"] for r in ref]


def test_mid_round_checkpoint_resume_matches_uninterrupted(tmp_path):
    """With --checkpoint.every_minutes 0 every epoch is saved; a resume from one inside a round is exact."""
    run(command(tmp_path, "reference"))
    ref = check_complete(tmp_path / "digits" / "reference")
    cmd = command(tmp_path, "crashed", "--checkpoint.every_minutes", "0")
    run_dir = tmp_path / "digits" / "crashed"

    def mid_round_1(d: Path) -> bool:
        ckpt = d / "checkpoints" / "last.ckpt"
        try:
            return len(rounds(d)) == 2 and ckpt.stat().st_mtime_ns > (d / "rounds.jsonl").stat().st_mtime_ns + 50_000_000
        except (OSError, ValueError):
            return False

    start_and_kill(cmd, run_dir, mid_round_1)
    run(cmd + ["--ckpt_path", "last"])
    got = check_complete(run_dir)
    assert [r["queried"] for r in got] == [r["queried"] for r in ref]
    assert [r["test_acc"] for r in got] == [r["test_acc"] for r in ref]


@pytest.mark.parametrize("delay", [0.05, 0.6])
def test_kill_at_any_moment_then_resume_keeps_every_round_once(tmp_path, delay):
    """Killed mid-epoch or mid-query (whatever the moment after start-up), resume finishes cleanly."""
    cmd = command(tmp_path, "crashed", "--loop.epochs_per_round", "40")
    run_dir = tmp_path / "digits" / "crashed"
    t0 = []

    def after_delay(d: Path) -> bool:
        if not (d / "checkpoints" / "last.ckpt").exists():
            return False  # before the first checkpoint there is nothing to resume: a fresh start
        t0.append(time.monotonic()) if not t0 else None
        return time.monotonic() - t0[0] >= delay

    start_and_kill(cmd, run_dir, after_delay)
    run(cmd + ["--ckpt_path", "last"])
    check_complete(run_dir)


def test_ckpt_path_last_finds_the_unfinished_run(tmp_path):
    """Without a version, --ckpt_path last resumes the newest unfinished run folder."""
    base = [a for a in command(tmp_path, "x") if a not in ("--trainer.logger.init_args.version", "x")]
    start_and_kill(base, tmp_path / "digits" / "version_0", after_round_checkpoint(0))
    run(base + ["--ckpt_path", "last"])
    assert sorted(p.name for p in (tmp_path / "digits").iterdir()) == ["version_0"]
    check_complete(tmp_path / "digits" / "version_0")
