"""``python -m lplgrad.compare``: run every (method, seed) of a config, then write the report.

Anything the command does not know (or everything after ``--``) is passed on to every run as a
LightningCLI override, e.g. ``--loop.epochs_per_round 10``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from lplgrad.compare.collect import load_runs, unfinished
from lplgrad.compare.launch import SlurmOptions, submit
from lplgrad.compare.status import JobRecord, add_jobs, read_jobs, state_of, status_lines
from lplgrad.compare.methods import arm, choose_methods
from lplgrad.compare.options import parse
from lplgrad.compare.report import ReportSettings, write_report
from lplgrad.compare.sweep import plan, run_sweep


def record_commands(path: Path, commands: list[str]) -> None:
    """Add the sweep's run commands to ``commands.txt`` (one a line, kept from earlier sweeps into
    the same OUT, each once)."""
    old = path.read_text().splitlines() if path.is_file() else []
    path.write_text("".join(c + "\n" for c in dict.fromkeys(old + commands)))


def report_settings(args: argparse.Namespace) -> ReportSettings:
    """The options given, else those of OUT/report.json (a report being written again), else the defaults."""
    saved = ReportSettings.load(args.out) or ReportSettings(
        title=Path(args.config[0]).stem if args.config else args.out.name
    )
    return ReportSettings(
        at=args.at if args.at is not None else saved.at,
        baseline=args.baseline if args.baseline is not None else saved.baseline,
        focus=args.focus if args.focus is not None else saved.focus,
        title=args.title if args.title is not None else saved.title,
        timing=False if args.no_timing else saved.timing,
        reach=args.reach if args.reach is not None else saved.reach,
    )


def missing_runs(out: Path) -> list[str]:
    """``method/seedS`` of every run that is not finished: unfinished run folders, and submitted
    jobs whose run has no folder yet."""
    names = [f"{d.parent.name}/{d.name}" for d in unfinished(out)]
    for rec in read_jobs(out):
        run = Path(rec.run_dir)
        name = f"{run.parent.name}/{run.name}"
        if not (run / "finished.json").is_file() and name not in names:
            names.append(name)
    return names


def slurm_options(args: argparse.Namespace) -> SlurmOptions:
    return SlurmOptions(
        args.slurm_partition,
        args.slurm_gpus,
        args.slurm_cpus,
        args.slurm_mem_gb,
        args.slurm_time_min,
        args.slurm_array_parallelism,
        tuple(args.slurm_sbatch),
    )


def submit_sweep(jobs, out: Path, args: argparse.Namespace) -> int:
    """Submit the unfinished runs as jobs and record their ids; the report waits for --collect-only."""
    todo = [j for j in jobs if not j.finished]
    if len(todo) < len(jobs):
        print(f"{len(jobs) - len(todo)} of {len(jobs)} runs already finished: skipped")
    recorded = {(r.method, r.seed): r for r in read_jobs(out)}
    active = [
        j
        for j in todo
        if (j.method.name, j.seed) in recorded
        and not args.resubmit
        and state_of(out, recorded[(j.method.name, j.seed)])[0] in ("pending", "running")
    ]
    if active:
        print(
            f"{len(active)} run(s) already submitted and not ended (pending or running): not submitted again "
            "(--status shows them; --resubmit submits them again, e.g. after their jobs were cancelled)"
        )
        todo = [j for j in todo if j not in active]
    if todo and args.launcher == "slurm" and not (shutil.which("sbatch") and shutil.which("srun")):
        print(
            "lplgrad.compare: error: --launcher slurm: sbatch and srun are not on the PATH (not a SLURM machine?); "
            "--launcher submitit-local runs the same jobs here",
            file=sys.stderr,
        )
        return 2
    if todo:
        try:
            submitted = submit(todo, out, args.launcher, slurm_options(args))
        except ModuleNotFoundError as e:
            if e.name != "submitit":
                raise
            print(
                f"lplgrad.compare: error: --launcher {args.launcher} needs submitit: pip install 'lplgrad[cluster]'",
                file=sys.stderr,
            )
            return 2
        add_jobs(
            out,
            [
                JobRecord(j.method.name, j.seed, str(j.run_dir), str(j.log), job_id, args.launcher)
                for j, job_id in submitted
            ],
        )
        for j, job_id in submitted:
            print(f"{j.method.name} seed {j.seed}: job {job_id} (log {j.log})")
    print(
        f"sweep: {len(todo)} submitted; watch with --status, write the report with --collect-only "
        f"(python -m lplgrad.compare --out {out} ...)"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args, extra = parse(argv)
    out: Path = args.out
    failed = 0
    if args.status:
        print("\n".join(status_lines(out)))
        return 0
    if not args.collect_only:
        try:
            methods = choose_methods(args.methods if args.methods or not args.arm else [], args.ablation)
            methods += [arm(a) for a in args.arm]
            jobs = plan(args.config, methods, args.seeds, out, extra)
        except (KeyError, ValueError) as e:
            print(f"lplgrad.compare: error: {e.args[0]}", file=sys.stderr)
            return 2
        if args.dry_run:
            for j in jobs:
                print(" ".join(j.command))
            return 0
        out.mkdir(parents=True, exist_ok=True)
        record_commands(out / "commands.txt", [" ".join(j.command) for j in jobs])
        if args.launcher != "local":
            return submit_sweep(jobs, out, args)
        result = run_sweep(jobs, args.jobs)
        failed = len(result.failed)
        print(f"sweep: {len(result.ran)} ran, {len(result.skipped)} skipped (finished), {failed} failed")
    left = missing_runs(out)
    if left:
        print(f"{len(left)} run(s) not finished, left out of the report: " + ", ".join(left))
    runs = load_runs(out)
    if not runs:
        print(f"lplgrad.compare: error: no finished runs under {out / 'runs'}", file=sys.stderr)
        return 1
    s = report_settings(args)
    if s.baseline not in runs:
        print(
            f"lplgrad.compare: note: the baseline {s.baseline!r} has no finished run: paired.md compares LPLgrad only"
        )
    written = write_report(out, runs, s.at, s.title, s.baseline, s.timing, s.focus, left, s.reach)
    print((out / "table.md").read_text())
    print("wrote " + ", ".join(str(p) for p in written))
    return 1 if failed else 0
