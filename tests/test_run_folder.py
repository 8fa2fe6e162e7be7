"""``fit`` as a careful user runs it: batches of one, one run per folder, resumes that check what
they resume, and every failure one line that leaves no file behind."""

import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers.pause import pause_args
from helpers.runs import HANG_S, ENV, kill, start_paused
from lplgrad.cli import cli_main
from lplgrad.sampling import drop_single_last
from lplgrad.records import read_rounds
from helpers.tiny import tiny_fit_args


def fit(tmp_path, version="v", *extra, **sizes):
    return tiny_fit_args(tmp_path / "logs", "--trainer.logger.init_args.version", version, *extra, **sizes)


def fails(args, capsys, code=2) -> str:
    with pytest.raises(SystemExit) as e:
        cli_main(args)
    assert e.value.code == code
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("lplgrad: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    return lines[0]


def run_dir(tmp_path, version="v") -> Path:
    return tmp_path / "logs" / "digits" / version


def test_drop_single_last_only_for_a_last_batch_of_one():
    assert drop_single_last(17, 16) and drop_single_last(33, 16) and drop_single_last(145, 16)
    assert not any(drop_single_last(n, 16) for n in (1, 15, 16, 18, 31, 32, 146))


@pytest.mark.parametrize("in_memory", ["true", "false"])
def test_a_last_batch_of_one_trains(tmp_path, in_memory):
    """17 labeled images in batches of 16: the issue's crash (BatchNorm, one value per channel)."""
    cli_main(
        fit(
            tmp_path,
            "v",
            "--data.in_memory",
            in_memory,
            "--data.batch_size",
            "16",
            initial=17,
            query=16,
            budget=49,
            epochs=2,
        )
    )
    rows = read_rounds(run_dir(tmp_path) / "rounds.jsonl")
    assert [r["labeled"] for r in rows] == [17, 33, 49]  # 17 and 33 end in a batch of one; 49 does not


def test_one_labeled_image_is_refused(tmp_path, capsys):
    line = fails(fit(tmp_path, initial=1, query=5, budget=11), capsys)
    assert "batch of one image" in line
    assert not run_dir(tmp_path).exists()


def test_a_second_run_in_a_busy_folder_stops_and_a_stale_lock_does_not_block_the_resume(tmp_path, capsys):
    args = fit(tmp_path, query=10, budget=40, epochs=6)
    marker = tmp_path / "paused"
    first = start_paused([sys.executable, "-m", "lplgrad", *args, *pause_args(marker, 8)], marker)
    try:
        line = fails(args, capsys)
        assert f"is in use by another run (PID {first.pid})" in line and "another run folder" in line
        assert fails(args + ["--ckpt_path", "last"], capsys).endswith(line.split("error: ")[1])
    finally:
        kill(first)
    assert (run_dir(tmp_path) / ".lock").exists()  # left by the killed run: blocks nothing
    out = subprocess.run(
        [sys.executable, "-m", "lplgrad", *args, "--ckpt_path", "last"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=HANG_S,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert [r["labeled"] for r in read_rounds(run_dir(tmp_path) / "rounds.jsonl")] == [20, 30, 40]
    assert not (run_dir(tmp_path) / ".lock").exists()


def test_ckpt_path_last_with_nothing_to_resume_stops(tmp_path, capsys):
    assert "no unfinished run" in fails(tiny_fit_args(tmp_path / "logs", "--ckpt_path", "last"), capsys)
    cli_main(fit(tmp_path, "done"))
    assert "holds a finished run" in fails(fit(tmp_path, "done", "--ckpt_path", "last"), capsys)
    assert "there is no run folder" in fails(fit(tmp_path, "typo", "--ckpt_path", "last"), capsys)
    assert "no unfinished run" in fails(tiny_fit_args(tmp_path / "logs", "--ckpt_path", "last"), capsys)
    assert sorted(p.name for p in (tmp_path / "logs" / "digits").iterdir()) == ["done"]


def _unfinished(tmp_path) -> list[str]:
    """A run killed after round 0's checkpoint; returns its command line."""
    args = fit(tmp_path, query=10, budget=40, epochs=3)
    marker = tmp_path / "paused"
    kill(start_paused([sys.executable, "-m", "lplgrad", *args, *pause_args(marker, 3)], marker))
    return args


def test_resume_with_another_config_stops_unless_allowed(tmp_path, capsys):
    args = _unfinished(tmp_path)
    saved = (run_dir(tmp_path) / "config.yaml").read_text()
    line = fails(
        args + ["--ckpt_path", "last", "--strategy", "lplgrad.strategies.Random", "--data.query_size", "5"], capsys
    )
    assert "differs from the run's" in line and "--allow_config_change true" in line
    assert "strategy.class_path: 'lplgrad.strategies.LPLgrad' -> 'lplgrad.strategies.Random'" in line
    assert "data.query_size: 10 -> 5" in line
    assert (run_dir(tmp_path) / "config.yaml").read_text() == saved  # untouched
    # what does not change training or selection may change
    cli_main(args + ["--ckpt_path", "last", "--trainer.enable_progress_bar", "true", "--checkpoint.every_minutes", "3"])
    assert json.loads((run_dir(tmp_path) / "finished.json").read_text())["labeled"] == 40


def test_resume_with_an_allowed_change_records_it(tmp_path):
    args = _unfinished(tmp_path)
    cli_main(args + ["--ckpt_path", "last", "--data.query_size", "5", "--allow_config_change", "true"])
    changes = [json.loads(ln) for ln in (run_dir(tmp_path) / "config_changes.jsonl").read_text().splitlines()]
    assert changes[0]["changes"] == {"data.query_size": [10, 5]}
    # round 0 had queried 10 before the kill; the rounds after it query 5
    assert [r["labeled"] for r in read_rounds(run_dir(tmp_path) / "rounds.jsonl")] == [20, 30, 35, 40]


@pytest.mark.parametrize("damage", ["truncated", "garbage", "missing", "not_lightning"])
def test_a_bad_checkpoint_is_one_line(tmp_path, capsys, damage):
    args = _unfinished(tmp_path)
    ckpt = run_dir(tmp_path) / "checkpoints" / "last.ckpt"
    if damage == "truncated":
        ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    elif damage == "garbage":
        ckpt.write_bytes(b"\x00not a checkpoint" * 10)
    elif damage == "not_lightning":
        torch.save({"weights": torch.zeros(2)}, ckpt)
    target = str(tmp_path / "nope.ckpt") if damage == "missing" else str(ckpt)
    line = fails(args + ["--ckpt_path", target], capsys)
    assert {
        "truncated": "cannot be read",
        "garbage": "cannot be read",
        "missing": "no such file",
        "not_lightning": "is not a checkpoint",
    }[damage] in line


@pytest.mark.parametrize("sub", ["validate", "test", "predict"])
def test_subcommands_not_offered_are_one_line(tmp_path, capsys, sub):
    assert f"{sub} is not a command of lplgrad (only fit)" in fails([sub, *fit(tmp_path)[1:]], capsys)


def test_a_full_disk_is_one_line_and_leaves_no_temporary_file(tmp_path, capsys, monkeypatch):
    import lplgrad.records as records

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(records.os, "fsync", full)
    line = fails(fit(tmp_path), capsys, code=5)
    assert "No space left on device" in line
    assert not list(tmp_path.rglob(".*.tmp*"))
    assert not run_dir(tmp_path).exists()  # nothing worth keeping was written: the folder is gone


def test_a_read_only_folder_is_one_line(tmp_path, capsys, monkeypatch):
    import lplgrad.runfolder as runfolder

    real = runfolder.os.open

    def refuse(path, *a, **kw):
        if str(path).endswith(".lock"):
            raise PermissionError(errno.EROFS, "Read-only file system", str(path))
        return real(path, *a, **kw)

    monkeypatch.setattr(runfolder.os, "open", refuse)
    line = fails(fit(tmp_path), capsys, code=5)
    assert "Read-only file system" in line and ".lock" in line


def test_a_failed_start_leaves_no_run_folder(tmp_path, capsys):
    fails(fit(tmp_path, "v", "--data.budget", "5000"), capsys)  # refused in setup, inside trainer.fit
    assert not run_dir(tmp_path).exists()


def test_small_things(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  use_aux: [true\n")
    assert str(bad) in fails(["fit", "--config", str(bad)], capsys)
    with pytest.raises(SystemExit):
        cli_main(["--help"])
    assert capsys.readouterr().out.startswith("usage: python -m lplgrad ")


def test_a_missing_dataset_says_how_to_get_it_without_repeating_the_setting(tmp_path, monkeypatch):
    import socket

    from lplgrad.datasets import CIFAR10
    from lplgrad.errors import DatasetNotFoundError

    def offline(*a, **kw):
        raise OSError("offline")

    monkeypatch.setattr(socket, "getaddrinfo", offline)
    monkeypatch.setattr(socket.socket, "connect", offline)
    with pytest.raises(DatasetNotFoundError, match="download is already true"):
        CIFAR10(str(tmp_path / "cifar"), download=True).load(train=True)
    with pytest.raises(DatasetNotFoundError, match="set download: true"):
        CIFAR10(str(tmp_path / "cifar"), download=False).load(train=True)
