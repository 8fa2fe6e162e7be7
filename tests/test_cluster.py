"""A sweep as cluster jobs (``--launcher``): submitit's local executor runs the SLURM code path
here, a preempted job is requeued and ends as an uninterrupted run, and the sbatch script a
SLURM sweep would submit (read from a stub of ``sbatch``, nothing submitted)."""

import json
import os
import signal
import time
from pathlib import Path

import pytest

from helpers.pause import pause_args
from helpers.runs import ENV, HANG_S
from lplgrad.compare.cli import main as compare_main
from lplgrad.compare.status import read_jobs, status_lines
from lplgrad.records import read_rounds
from helpers.tiny import DIGITS, tiny_options

pytest.importorskip("submitit")


@pytest.fixture(autouse=True)
def _run_env(monkeypatch):
    """The runs' processes find the test helpers and use one thread each."""
    monkeypatch.setenv("PYTHONPATH", ENV["PYTHONPATH"])
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def sweep(
    out: Path,
    *extra: str,
    launcher: str = "submitit-local",
    methods=("Random", "Entropy"),
    seeds=("0", "1"),
    options=(),
) -> int:
    return compare_main(
        [
            "--config",
            DIGITS,
            "--out",
            str(out),
            "--methods",
            *methods,
            "--seeds",
            *seeds,
            "--launcher",
            launcher,
            *options,
            "--",
            *tiny_options(),
            *extra,
        ]
    )


def wait_done(out: Path, n: int) -> list[str]:
    """The status once every one of the ``n`` recorded runs is finished or failed (a hang guard, no timing)."""
    deadline = time.monotonic() + HANG_S
    while time.monotonic() < deadline:
        lines = status_lines(out)
        if lines[-1].startswith(f"{n} finished") or "failed" in "".join(lines[:-1]):
            return lines
        time.sleep(0.2)
    raise AssertionError(f"the jobs of {out} did not end: {status_lines(out)}")


def records(out: Path) -> dict:
    """Per run: every round's (labeled, test accuracy, queried indices), and labeled.csv."""
    return {
        (d.parent.name, d.name): (
            [(r["labeled"], r["test_acc"], r["queried"]) for r in read_rounds(d / "rounds.jsonl")],
            (d / "labeled.csv").read_text(),
        )
        for d in sorted((out / "runs").glob("*/seed*"))
    }


def test_a_sweep_of_submitit_jobs_equals_the_local_sweep(tmp_path, capsys):
    assert sweep(tmp_path / "jobs") == 0
    assert "4 submitted" in capsys.readouterr().out and len(read_jobs(tmp_path / "jobs")) == 4
    assert wait_done(tmp_path / "jobs", 4)[-1] == "4 finished, 0 running, 0 pending, 0 failed"
    assert sweep(tmp_path / "here", launcher="local") == 0
    assert records(tmp_path / "jobs") == records(tmp_path / "here") and len(records(tmp_path / "here")) == 4
    assert sweep(tmp_path / "jobs") == 0  # again: every run is finished, nothing is submitted
    assert "4 of 4 runs already finished: skipped" in capsys.readouterr().out
    assert compare_main(["--out", str(tmp_path / "jobs"), "--collect-only"]) == 0
    assert (tmp_path / "jobs" / "table.md").is_file()


def test_a_preempted_job_is_requeued_and_ends_as_an_uninterrupted_run(tmp_path):
    marker = tmp_path / "paused"
    one = {"methods": ("Entropy",), "seeds": ("0",)}
    # 3 rounds of 2 epochs: paused at the start of epoch 3, in round 1 (last.ckpt: the end of round 0)
    assert sweep(tmp_path / "pre", "--loop.epochs_per_round", "2", *pause_args(marker, 3, once=True), **one) == 0
    deadline = time.monotonic() + HANG_S
    while not marker.exists():
        assert time.monotonic() < deadline, "the job never reached its pause"
        time.sleep(0.05)
    fit = json.loads(marker.read_text())["pid"]
    task = int(Path(f"/proc/{fit}/stat").read_text().rsplit(")", 1)[1].split()[1])  # the submitit job process
    os.kill(task, signal.SIGUSR2)  # what SLURM sends before a preemption or the time limit (#SBATCH --signal)
    assert wait_done(tmp_path / "pre", 1)[-1].startswith("1 finished")
    log = (tmp_path / "pre" / "logs" / "Entropy" / "seed0.log").read_text()
    assert "preempted or timed out" in log and "# attempt 2" in log and "--ckpt_path last" in log
    assert sweep(tmp_path / "plain", "--loop.epochs_per_round", "2", launcher="local", **one) == 0
    assert records(tmp_path / "pre") == records(tmp_path / "plain")


SBATCH = """#!/bin/sh
cp "$1" "$STUB_DIR/submitted_$(ls "$STUB_DIR" | wc -l).sh"
echo "Submitted batch job 4242"
"""


def test_without_slurm_the_slurm_launcher_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, no srun
    assert sweep(tmp_path / "out", launcher="slurm") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "lplgrad.compare: error: --launcher slurm: sbatch and srun are not on the PATH (not a SLURM "
        "machine?); --launcher submitit-local runs the same jobs here"
    ]


def test_a_slurm_sweep_submits_one_array_with_the_options_and_the_commands(tmp_path, monkeypatch, capsys):
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "sbatch").write_text(SBATCH)
    (stub / "srun").write_text("#!/bin/sh\nexit 1\n")  # only looked for: submitit checks it is a SLURM machine
    for tool in ("sbatch", "srun"):
        (stub / tool).chmod(0o755)
    seen = tmp_path / "scripts"
    seen.mkdir()
    monkeypatch.setenv("PATH", f"{stub}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("STUB_DIR", str(seen))
    options = (
        "--slurm.partition",
        "gpu",
        "--slurm.gpus",
        "2",
        "--slurm.time_min",
        "90",
        "--slurm.array_parallelism",
        "2",
        "--slurm.sbatch=--account=proj",
    )
    assert sweep(tmp_path / "out", launcher="slurm", options=options) == 0
    out = capsys.readouterr().out
    assert [f"job 4242_{i}" in out for i in range(4)] == [True] * 4
    (script,) = seen.iterdir()
    text = script.read_text()
    for line in (
        "#SBATCH --partition=gpu",
        "#SBATCH --gpus-per-node=2",
        "#SBATCH --time=90",
        "#SBATCH --account=proj",
        "#SBATCH --array=0-3%2",
        "#SBATCH --signal=USR2@120",
    ):
        assert line in text, line
    tasks = [ln for ln in text.splitlines() if ln.startswith("# lplgrad task ")]
    assert len(tasks) == 4 and "--strategy lplgrad.strategies.Random" in tasks[0] and "--seed_everything 1" in tasks[1]
    assert "fit --config" in tasks[0] and "--trainer.logger.init_args.version seed0" in tasks[0]
    lines = status_lines(tmp_path / "out")
    assert lines[-1] == "0 finished, 0 running, 4 pending, 0 failed" and "job 4242_3" in lines[3]
    assert sweep(tmp_path / "out", launcher="slurm", options=options) == 0  # again: they are pending
    assert "4 run(s) already submitted and not ended" in capsys.readouterr().out and len(list(seen.iterdir())) == 1
