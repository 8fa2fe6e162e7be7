"""A sweep's runs as cluster jobs, through submitit: one job per (method, seed), preemptible.

Each job runs the same ``python -m lplgrad fit`` command as ``--launcher local`` does
(:func:`lplgrad.compare.sweep.run_command`), as a child process of submitit's job process. When
SLURM sends the pre-timeout or preemption signal (``#SBATCH --signal``), submitit calls
:meth:`FitJob.checkpoint`: the run is stopped, and the job is requeued. The requeued job finds
the run folder's ``checkpoints/last.ckpt`` (saved at every round end and every
``checkpoint.every_minutes``) and continues with ``--ckpt_path last``; a resume redoes the work
since that save identically, so the run ends as an uninterrupted one would.

This is submitit's checkpointing, not Lightning's SLURM support: a run is one process on one
node, and Lightning's own SLURM auto-requeue (``SLURMEnvironment``) would requeue the job a
second time, so the SLURM variables are kept from the child.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lplgrad.compare.sweep import Job
from lplgrad.resume import LAST

#: the launchers of ``--launcher``: ``slurm`` submits with sbatch; ``submitit-local`` runs the
#: same jobs here with submitit's local executor (the cluster path, tested without a cluster)
CLUSTERS = {"slurm": "slurm", "submitit-local": "local"}


@dataclass(frozen=True)
class SlurmOptions:
    """What every job asks the scheduler for (``--slurm.*`` of ``python -m lplgrad.compare``)."""

    partition: str | None = None
    gpus: int = 1  # per job
    cpus: int = 8
    mem_gb: int = 32
    time_min: int = 24 * 60
    array_parallelism: int = 64  # jobs of the array running at once
    sbatch: tuple[str, ...] = ()  # extra sbatch flags, "--key=value" or "--flag"
    signal_delay_s: int = 120  # the pre-timeout signal comes this long before the time limit

    def parameters(self, cluster: str) -> dict[str, Any]:
        """submitit's ``update_parameters`` for ``cluster`` ("slurm" or "local")."""
        params: dict[str, Any] = {"timeout_min": self.time_min, "name": "lplgrad"}
        if cluster == "local":
            return {**params, "gpus_per_node": 0}
        extra = {}
        for flag in self.sbatch:
            key, _, value = flag.lstrip("-").partition("=")
            extra[key.replace("-", "_")] = value if value else True
        params.update(
            gpus_per_node=self.gpus,
            cpus_per_task=self.cpus,
            mem_gb=self.mem_gb,
            slurm_array_parallelism=self.array_parallelism,
            slurm_signal_delay_s=self.signal_delay_s,
        )
        if self.partition:
            params["slurm_partition"] = self.partition
        if extra:
            params["slurm_additional_parameters"] = extra
        return params


def child_env() -> dict[str, str]:
    """The job's environment without the scheduler's and submitit's variables (see the module docstring)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SUBMITIT_"))}


@dataclass
class FitJob:
    """One run as a submitit job: its command, resumed with ``--ckpt_path last`` when the run
    folder holds an unfinished run with a checkpoint; a folder without one is started afresh."""

    command: list[str]
    run_dir: str
    log: str
    attempts: int = 0
    _proc: subprocess.Popen | None = field(default=None, repr=False, compare=False)

    def resumes(self) -> bool:
        run = Path(self.run_dir)
        return (run / "checkpoints" / LAST).is_file() and not (run / "finished.json").exists()

    def __call__(self) -> dict[str, Any]:
        cmd = list(self.command)
        if self.resumes():
            cmd += ["--ckpt_path", "last"]
        elif Path(self.run_dir).exists():
            shutil.rmtree(self.run_dir)
        Path(self.log).parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "a") as log:
            log.write(f"# attempt {self.attempts + 1}, {time.strftime('%Y-%m-%d %H:%M:%S')}: {shlex.join(cmd)}\n\n")
            log.flush()
            self._proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=child_env(), start_new_session=True
            )
            rc = self._proc.wait()
        if rc != 0 or not (Path(self.run_dir) / "finished.json").is_file():
            raise RuntimeError(f"the run exited with status {rc}: see {self.log}")
        return {"run_dir": self.run_dir, "attempts": self.attempts + 1}

    def stop(self, grace_s: float = 30.0) -> None:
        """Stop the run and everything it started (SIGTERM, then SIGKILL after ``grace_s``)."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 30.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def checkpoint(self, *args: Any) -> Any:
        """submitit's preemption hook: stop the run (its last checkpoint is on disk) and requeue."""
        import submitit

        self.stop()
        with open(self.log, "a") as log:
            log.write(
                f"\n# preempted or timed out ({time.strftime('%Y-%m-%d %H:%M:%S')}): requeued, to resume "
                "from the last checkpoint\n"
            )
        return submitit.helpers.DelayedSubmission(FitJob(self.command, self.run_dir, self.log, self.attempts + 1))


def task_comments(jobs: Sequence[Job]) -> list[str]:
    """Lines for the sbatch script: the command each task of the array runs."""
    return [f"# lplgrad task {i}: {shlex.join(j.command)}" for i, j in enumerate(jobs)]


def submit(jobs: Sequence[Job], out: Path, launcher: str, options: SlurmOptions) -> list[tuple[Job, str]]:
    """Submit ``jobs`` as one job array (or local jobs); returns (job, scheduler job id) pairs.
    The jobs' own files (submission script, pickles, scheduler logs) go to ``OUT/jobs/``."""
    import submitit

    cluster = CLUSTERS[launcher]
    executor = submitit.AutoExecutor(folder=str(out / "jobs" / "%j"), cluster=cluster)
    params = options.parameters(cluster)
    if cluster == "slurm":
        params["slurm_setup"] = task_comments(jobs)
    executor.update_parameters(**params)
    with executor.batch():
        submitted = [executor.submit(FitJob(j.command, str(j.run_dir), str(j.log))) for j in jobs]
    placeholder = out / "jobs" / "%j"  # made by submitit before the ids are known
    if placeholder.is_dir() and not any(placeholder.iterdir()):
        placeholder.rmdir()
    return [(j, s.job_id) for j, s in zip(jobs, submitted)]
