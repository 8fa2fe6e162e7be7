"""Every (method, seed) of a comparison as one ``python -m lplgrad fit`` subprocess.

Run folders are ``OUT/runs/<method folder>/seed<S>`` (the TensorBoard logger's save_dir / name /
version). A folder holding ``finished.json`` is a finished run and is skipped, so an interrupted
sweep can simply be started again; a folder without it is removed and its run started afresh.
Each run's console output goes to ``OUT/logs/<method folder>/seed<S>.log``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from lplgrad.compare.methods import Method

#: flags the sweep sets itself; extra overrides may not repeat them
RESERVED = (
    "--seed_everything",
    "--strategy",
    "--model.use_aux",
    "--trainer.logger.init_args.save_dir",
    "--trainer.logger.init_args.name",
    "--trainer.logger.init_args.version",
)


@dataclass(frozen=True)
class Job:
    method: Method
    seed: int
    run_dir: Path
    log: Path
    command: list[str] = field(hash=False)

    @property
    def finished(self) -> bool:
        return (self.run_dir / "finished.json").is_file()


@dataclass
class SweepResult:
    ran: list[Job] = field(default_factory=list)
    skipped: list[Job] = field(default_factory=list)
    failed: list[tuple[Job, int]] = field(default_factory=list)  # (job, exit status)


def check_extra(extra: Sequence[str]) -> None:
    for arg in extra:
        if arg.split("=", 1)[0] in RESERVED:
            raise ValueError(f"{arg.split('=', 1)[0]} is set by the sweep for every run; leave it out of the overrides")


def run_command(
    configs: Sequence[str | Path],
    method: Method,
    seed: int,
    out: str | Path,
    extra: Sequence[str] = (),
    python: str = sys.executable,
) -> list[str]:
    """The command line of one run."""
    cmd = [python, "-m", "lplgrad", "fit"]
    for c in configs:
        cmd += ["--config", str(c)]
    cmd += [
        *method.config_options(),
        "--seed_everything",
        str(seed),
        *method.strategy_options(),
        "--trainer.logger.init_args.save_dir",
        str(Path(out) / "runs"),
        "--trainer.logger.init_args.name",
        method.slug,
        "--trainer.logger.init_args.version",
        f"seed{seed}",
        "--trainer.enable_progress_bar",
        "false",
        *extra,
    ]
    return cmd


def plan(
    configs: Sequence[str | Path],
    methods: Sequence[Method],
    seeds: Sequence[int],
    out: str | Path,
    extra: Sequence[str] = (),
    python: str = sys.executable,
) -> list[Job]:
    """One job per (method, seed), methods outermost."""
    check_extra(extra)
    out = Path(out)
    return [
        Job(
            m,
            s,
            out / "runs" / m.slug / f"seed{s}",
            out / "logs" / m.slug / f"seed{s}.log",
            run_command(configs, m, s, out, extra, python),
        )
        for m in methods
        for s in seeds
    ]


def _run_one(job: Job) -> int:
    if job.run_dir.exists():  # unfinished: an interrupted or failed run, start it afresh
        shutil.rmtree(job.run_dir)
    job.log.parent.mkdir(parents=True, exist_ok=True)
    with open(job.log, "w") as log:
        log.write(" ".join(job.command) + "\n\n")
        log.flush()
        return subprocess.run(job.command, stdout=log, stderr=subprocess.STDOUT).returncode


def run_sweep(jobs: Sequence[Job], n_jobs: int = 1, echo: Callable[[str], None] = print) -> SweepResult:
    """Run the unfinished jobs, ``n_jobs`` at a time; finished ones are skipped."""
    if n_jobs < 1:
        raise ValueError("--jobs must be at least 1")
    result = SweepResult()
    todo = []
    for job in jobs:
        (result.skipped if job.finished else todo).append(job)
    if result.skipped:
        echo(f"{len(result.skipped)} of {len(jobs)} runs already finished: skipped")
    lock = threading.Lock()

    def work(numbered: tuple[int, Job]) -> None:
        i, job = numbered
        with lock:
            echo(f"[{i}/{len(todo)}] {job.method.name} seed {job.seed}: running (log {job.log})")
        t0 = time.monotonic()
        rc = _run_one(job)
        ok = rc == 0 and job.finished
        with lock:
            if ok:
                result.ran.append(job)
            else:
                result.failed.append((job, rc))
            state = "done" if ok else f"FAILED (exit status {rc}, see {job.log})"
            echo(f"[{i}/{len(todo)}] {job.method.name} seed {job.seed}: {state} in {time.monotonic() - t0:.1f}s")

    numbered = list(enumerate(todo, 1))
    if n_jobs == 1:
        for item in numbered:
            work(item)
    else:
        with ThreadPoolExecutor(max_workers=n_jobs) as pool:
            list(pool.map(work, numbered))
    return result
