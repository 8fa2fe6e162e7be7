"""Timed checkpoints under DDP: the processes' clocks disagree, the save stays one collective."""

import json
import subprocess
import sys

from helpers.pause import pause_args
from helpers.runs import HANG_S, ENV, start_and_kill
from lplgrad.records import read_rounds
from helpers.tiny import DDP_TWO_CPU, tiny_fit_args


def ddp(save_dir, version, *extra):
    return [
        sys.executable,
        "-m",
        "lplgrad",
        *tiny_fit_args(
            save_dir,
            *DDP_TWO_CPU,
            "--trainer.logger.init_args.version",
            version,
            "--checkpoint.every_minutes",
            "1",
            *extra,
            query=10,
            budget=40,
            subset=61,
            epochs=4,
        ),
    ]


def skew(rank: int) -> list[str]:
    """Only process ``rank`` finds a timed save due (after every epoch)."""
    return ["--trainer.callbacks+", json.dumps({"class_path": "helpers.clock.SkewClock", "init_args": {"rank": rank}})]


def finish(cmd):
    out = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=HANG_S)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout + out.stderr


def records(run):
    return [(r["labeled"], r["queried"], r["test_acc"]) for r in read_rounds(run / "rounds.jsonl")]


def test_disagreeing_clocks_neither_deadlock_nor_change_the_run_and_the_run_resumes(tmp_path):
    runs = tmp_path / "digits"
    finish(ddp(tmp_path, "reference"))
    reference = records(runs / "reference")
    assert [n for n, _, _ in reference] == [20, 30, 40]
    finish(ddp(tmp_path, "rank1_due", *skew(1)))  # rank 0 decides: no timed save
    assert records(runs / "rank1_due") == reference
    # rank 0 finds a save due after every epoch: both save; killed in round 1, resumed from epoch 5's
    cmd = ddp(tmp_path, "rank0_due", *skew(0))
    marker = tmp_path / "paused"
    start_and_kill(cmd + pause_args(marker, 6), marker)
    assert len(read_rounds(runs / "rank0_due" / "rounds.jsonl")) == 1
    log = finish(ddp(tmp_path, "rank0_due", "--ckpt_path", "last"))
    assert "Restored all states from the checkpoint" in log
    assert records(runs / "rank0_due") == reference  # every process resumed its own random state
