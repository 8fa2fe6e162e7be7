"""Crash and resume: SIGKILL a run at an event it reports (a :class:`helpers.pause.PauseAt`
marker, never a time), resume it with --ckpt_path last, compare with an uninterrupted run."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.pause import pause_args
from helpers.runs import HANG_S, ENV, start_and_kill
from lplgrad.records import read_rounds
from helpers.tiny import tiny_fit_args

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 12  # per round


def command(save_dir: Path, version: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "lplgrad",
        *tiny_fit_args(
            save_dir, "--trainer.logger.init_args.version", version, *extra, query=10, budget=60, epochs=EPOCHS
        ),
    ]


def run(cmd: list[str]) -> str:
    out = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=HANG_S)
    assert out.returncode == 0, out.stderr[-3000:]
    log = out.stdout + out.stderr
    if "--ckpt_path" in cmd:  # a resume must really restore, not start afresh
        assert "Restored all states from the checkpoint" in log, log[-3000:]
    return log


def kill_at(cmd: list[str], tmp_path: Path, epoch: int, at: str = "epoch_start", batch: int = 0) -> None:
    """Run ``cmd`` until the pause at ``epoch`` (:class:`helpers.pause.PauseAt`), then SIGKILL it."""
    marker = tmp_path / f"paused_{epoch}_{at}"
    start_and_kill(cmd + pause_args(marker, epoch, at, batch), marker)


def rounds(run_dir: Path) -> list[dict]:
    return read_rounds(run_dir / "rounds.jsonl")


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
    kill_at(cmd, tmp_path, 2 * EPOCHS)  # round 1 ended and was saved; round 2 not started
    assert len(rounds(tmp_path / "digits" / "crashed")) == 2
    run(cmd + ["--ckpt_path", "last"])
    got = check_complete(tmp_path / "digits" / "crashed")
    assert [r["queried"] for r in got] == [r["queried"] for r in ref]
    assert [r["test_acc"] for r in got] == pytest.approx([r["test_acc"] for r in ref], abs=1e-6)
    # the same TensorBoard run folder: one version directory
    assert sorted(p.name for p in (tmp_path / "digits").iterdir()) == ["crashed", "reference"]


@pytest.mark.parametrize(
    "extra",
    [
        ["--strategy", "lplgrad.strategies.BALD", "--model.head_dropout", "0.5"],
        ["--strategy", "lplgrad.strategies.BatchBALD", "--model.head_dropout", "0.5"],
        ["--strategy", "lplgrad.strategies.ProbCover"],
        ["--model.retrain_from_scratch", "true"],
        ["--strategy", "lplgrad.strategies.VAAL", "--strategy.init_args.width", "4"],
        ["--strategy", "lplgrad.strategies.WAAL", "--model.adversary", "lplgrad.adversary.WAALAdversary"],
    ],
    ids=["BALD", "BatchBALD", "ProbCover", "from-scratch", "VAAL", "WAAL"],
)
def test_new_methods_resume_exactly(tmp_path, extra):
    """The dropout masks, the sampled configurations, the cover's random fill, the initial
    weights a from-scratch run returns to, VAAL's networks and WAAL's critic, its optimiser and
    its unlabeled batches are all the same after a resume."""
    run(command(tmp_path, "reference", *extra))
    ref = check_complete(tmp_path / "digits" / "reference")
    cmd = command(tmp_path, "crashed", *extra)
    kill_at(cmd, tmp_path, 2 * EPOCHS + 3)  # inside round 2, after round 1's checkpoint
    run(cmd + ["--ckpt_path", "last"])
    got = check_complete(tmp_path / "digits" / "crashed")
    assert [r["queried"] for r in got] == [r["queried"] for r in ref]
    assert [r["test_acc"] for r in got] == pytest.approx([r["test_acc"] for r in ref], abs=1e-6)


def test_kill_between_two_checkpoints_then_resume_matches_uninterrupted(tmp_path):
    """Checkpoints come at round ends (and every N minutes): a run killed well into a round
    redoes that round's epochs from the last checkpoint and ends exactly as an uninterrupted one."""
    run(command(tmp_path, "reference"))
    ref = check_complete(tmp_path / "digits" / "reference")
    cmd = command(tmp_path, "crashed")
    run_dir = tmp_path / "digits" / "crashed"
    kill_at(cmd, tmp_path, 2 * EPOCHS + 5)  # 5 epochs into round 2, none of them saved
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
    kill_at(cmd, tmp_path, EPOCHS + 6)  # round 1's sixth epoch was saved
    assert len(rounds(run_dir)) == 1
    run(cmd + ["--ckpt_path", "last"])
    got = check_complete(run_dir)
    assert [r["queried"] for r in got] == [r["queried"] for r in ref]
    assert [r["test_acc"] for r in got] == [r["test_acc"] for r in ref]


@pytest.mark.parametrize("at", ["batch_end", "query"])
def test_kill_mid_epoch_or_mid_query_then_resume_keeps_every_round_once(tmp_path, at):
    """Killed inside an epoch or inside a query, the resume finishes cleanly."""
    cmd = command(tmp_path, "crashed", "--loop.epochs_per_round", "40")
    kill_at(cmd, tmp_path, 40 + 7 if at == "batch_end" else 2 * 40 - 1, at)
    run(cmd + ["--ckpt_path", "last"])
    check_complete(tmp_path / "digits" / "crashed")


def test_ckpt_path_last_finds_the_unfinished_run(tmp_path):
    """Without a version, --ckpt_path last resumes the newest unfinished run folder."""
    base = [a for a in command(tmp_path, "x") if a not in ("--trainer.logger.init_args.version", "x")]
    kill_at(base, tmp_path, EPOCHS)
    run(base + ["--ckpt_path", "last"])
    assert sorted(p.name for p in (tmp_path / "digits").iterdir()) == ["version_0"]
    check_complete(tmp_path / "digits" / "version_0")
