"""Which runs of a sweep are pending, running, finished or failed (``python -m lplgrad.compare --status``).

The state is read from the files, so that it needs no scheduler command and works from any node:
``finished.json`` in the run folder (finished); an error in submitit's result file of the run's
job (failed); a run folder, made when the run starts (running: started and not ended, or
requeued after a preemption and waiting to resume); otherwise pending. Submitted job ids are kept
in ``OUT/jobs.json``.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import asdict, dataclass
from pathlib import Path

from lplgrad.records import atomic_write

JOBS = "jobs.json"


@dataclass
class JobRecord:
    method: str
    seed: int
    run_dir: str
    log: str
    job_id: str
    launcher: str


def read_jobs(out: Path) -> list[JobRecord]:
    path = out / JOBS
    return [JobRecord(**r) for r in json.loads(path.read_text())] if path.is_file() else []


def add_jobs(out: Path, records: list[JobRecord]) -> None:
    """Record submitted jobs; a run submitted again keeps only its newest job."""
    mine = {(r.method, r.seed): r for r in read_jobs(out)}
    mine.update({(r.method, r.seed): r for r in records})
    atomic_write(out / JOBS, json.dumps([asdict(r) for r in mine.values()], indent=1) + "\n")


def result_error(out: Path, job_id: str) -> str | None:
    """The last line of the error submitit recorded for the job, or None (no result yet, or success)."""
    from submitit.core.utils import JobPaths

    path = JobPaths(out / "jobs" / "%j", job_id).result_pickle
    if not path.is_file():
        return None
    try:
        outcome, value = pickle.loads(path.read_bytes())
    except Exception:  # noqa: BLE001 - an unreadable result is reported as such
        return "an unreadable result file"
    if outcome == "success":
        return None
    lines = [ln for ln in str(value).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "failed"


def state_of(out: Path, rec: JobRecord) -> tuple[str, str]:
    """(state, detail) of one recorded run."""
    run = Path(rec.run_dir)
    if (run / "finished.json").is_file():
        return "finished", ""
    error = result_error(out, rec.job_id)
    if error is not None:
        return "failed", f"job {rec.job_id}: {error}; logs {rec.log} and {out / 'jobs' / rec.job_id}"
    if run.is_dir():
        return "running", f"job {rec.job_id}, log {rec.log}"
    return "pending", f"job {rec.job_id}"


def status_lines(out: Path) -> list[str]:
    """One line per recorded run, then the counts."""
    records = read_jobs(out)
    if not records:
        return [f"no submitted jobs recorded in {out / JOBS}"]
    lines, counts = [], {}
    for rec in records:
        state, detail = state_of(out, rec)
        counts[state] = counts.get(state, 0) + 1
        lines.append(f"{rec.method:>20} seed {rec.seed}: {state}" + (f" ({detail})" if detail else ""))
    order = ("finished", "running", "pending", "failed")
    lines.append(", ".join(f"{counts.get(s, 0)} {s}" for s in order))
    return lines
