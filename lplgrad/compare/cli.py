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
from lplgrad.compare.launch import CLUSTERS, SlurmOptions, submit
from lplgrad.compare.status import JobRecord, add_jobs, read_jobs, state_of, status_lines
from lplgrad.compare.methods import ALL, arm, choose_methods
from lplgrad.compare.report import ReportSettings, write_report
from lplgrad.compare.sweep import plan, run_sweep


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m lplgrad.compare",
        description="Multi-seed comparison of the active-learning methods on one config: runs, "
        "then table.md/csv (accuracy per labeled size), curves.png, paired.md/csv (differences over seeds), "
        "timing.md/csv, aulc.md/csv and, with --ablation, ablation.md/csv in OUT. Unknown options are passed "
        "to every run.",
        allow_abbrev=False,
    )
    p.add_argument("--config", action="append", default=[], metavar="CFG",
                   help="base config of every run; repeat to layer configs (e.g. a low_budget overlay)")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: results/<first config's name>)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4],
                   help="seed_everything values, one run each (default: 0 1 2 3 4, the paper's 5 trials)")
    p.add_argument("--methods", nargs="+", default=None, metavar="NAME",
                   help=f"methods to run (default: all but the ablation); known: {', '.join(m.name for m in ALL)}")
    p.add_argument("--arm", action="append", default=[], metavar="NAME=CFG[,CFG]",
                   help="also run a method set up by config files layered on the base config (strategy, "
                        "backbone, weights: anything), in folder NAME; repeatable")
    p.add_argument("--ablation", action="store_true",
                   help='also run "LPLgrad w/o A" (LPLgrad with use_aux false) and write ablation.md/csv')
    p.add_argument("--jobs", type=int, default=1, help="runs at once (default 1: one after the other)")
    p.add_argument("--launcher", choices=["local", *CLUSTERS], default="local",
                   help="local: subprocesses here, --jobs at once; slurm: one SLURM job per run through submitit "
                        "(preemptible: requeued and resumed); submitit-local: the slurm path run here by "
                        "submitit's local executor")
    p.add_argument("--slurm.partition", dest="slurm_partition", default=None, help="the partition of every job")
    p.add_argument("--slurm.gpus", dest="slurm_gpus", type=int, default=1, help="GPUs per job (default 1)")
    p.add_argument("--slurm.cpus", dest="slurm_cpus", type=int, default=8, help="CPUs per job (default 8)")
    p.add_argument("--slurm.mem_gb", dest="slurm_mem_gb", type=int, default=32, help="memory per job in GB (default 32)")
    p.add_argument("--slurm.time_min", dest="slurm_time_min", type=int, default=24 * 60,
                   help="time limit of each job in minutes (default 1440); a run longer than that is requeued "
                        "at the limit and resumed")
    p.add_argument("--slurm.array_parallelism", dest="slurm_array_parallelism", type=int, default=64,
                   help="jobs of the sweep's array running at once (default 64)")
    p.add_argument("--slurm.sbatch", dest="slurm_sbatch", action="append", default=[], metavar="FLAG",
                   help="an extra sbatch flag for every job, e.g. --slurm.sbatch=--account=proj; repeatable")
    p.add_argument("--resubmit", action="store_true",
                   help="with --launcher slurm: submit again the runs whose recorded jobs are pending or running "
                        "(after those jobs were cancelled)")
    p.add_argument("--status", action="store_true",
                   help="print which submitted runs are pending, running, finished or failed, and exit")
    p.add_argument("--at", type=int, nargs="+", default=None, metavar="N",
                   help="labeled-set sizes of the accuracy and paired tables (default: every recorded size)")
    p.add_argument("--baseline", default=None, metavar="NAME",
                   help="the method every other is compared with, seed by seed, in paired.md (default: Random)")
    p.add_argument("--focus", default=None, metavar="NAME",
                   help="the method compared with every other in paired.md (default: LPLgrad)")
    p.add_argument("--no-timing", action="store_true",
                   help="leave the timing table out (runs that shared a machine have times that do not compare)")
    p.add_argument("--collect-only", action="store_true",
                   help="run nothing: only write the report from OUT/runs (with OUT/report.json's settings, "
                        "unless given here)")
    p.add_argument("--dry-run", action="store_true", help="print the run commands and exit")
    p.add_argument("--title", default=None, help="title of table.md and curves.png (default: the config's name)")
    return p


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    argv = list(sys.argv[1:] if argv is None else argv)
    tail: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, tail = argv[:i], argv[i + 1:]
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not extra[0].startswith("-"):
        parser.error(f"unexpected argument {extra[0]!r}")
    if args.out is None:
        if not args.config:
            parser.error("give --config (and/or --out)")
        args.out = Path("results") / Path(args.config[0]).stem
    if not args.collect_only and not args.status and not args.config:
        parser.error("--config is needed to run the sweep (or use --collect-only)")
    args.seeds = list(dict.fromkeys(args.seeds))  # a seed given twice is one run
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    for c in args.config:
        if not Path(c).is_file():
            parser.error(f"config {c} not found")
    return args, extra + tail


def record_commands(path: Path, commands: list[str]) -> None:
    """Add the sweep's run commands to ``commands.txt`` (one a line, kept from earlier sweeps into
    the same OUT, each once)."""
    old = path.read_text().splitlines() if path.is_file() else []
    path.write_text("".join(c + "\n" for c in dict.fromkeys(old + commands)))


def report_settings(args: argparse.Namespace) -> ReportSettings:
    """The options given, else those of OUT/report.json (a report being written again), else the defaults."""
    saved = ReportSettings.load(args.out) or ReportSettings(title=Path(args.config[0]).stem if args.config else args.out.name)
    return ReportSettings(
        at=args.at if args.at is not None else saved.at,
        baseline=args.baseline if args.baseline is not None else saved.baseline,
        focus=args.focus if args.focus is not None else saved.focus,
        title=args.title if args.title is not None else saved.title,
        timing=False if args.no_timing else saved.timing,
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
    return SlurmOptions(args.slurm_partition, args.slurm_gpus, args.slurm_cpus, args.slurm_mem_gb, args.slurm_time_min,
                        args.slurm_array_parallelism, tuple(args.slurm_sbatch))


def submit_sweep(jobs, out: Path, args: argparse.Namespace) -> int:
    """Submit the unfinished runs as jobs and record their ids; the report waits for --collect-only."""
    todo = [j for j in jobs if not j.finished]
    if len(todo) < len(jobs):
        print(f"{len(jobs) - len(todo)} of {len(jobs)} runs already finished: skipped")
    recorded = {(r.method, r.seed): r for r in read_jobs(out)}
    active = [j for j in todo if (j.method.name, j.seed) in recorded and not args.resubmit
              and state_of(out, recorded[(j.method.name, j.seed)])[0] in ("pending", "running")]
    if active:
        print(f"{len(active)} run(s) already submitted and not ended (pending or running): not submitted again "
              "(--status shows them; --resubmit submits them again, e.g. after their jobs were cancelled)")
        todo = [j for j in todo if j not in active]
    if todo and args.launcher == "slurm" and not (shutil.which("sbatch") and shutil.which("srun")):
        print("lplgrad.compare: error: --launcher slurm: sbatch and srun are not on the PATH (not a SLURM machine?); "
              "--launcher submitit-local runs the same jobs here", file=sys.stderr)
        return 2
    if todo:
        try:
            submitted = submit(todo, out, args.launcher, slurm_options(args))
        except ModuleNotFoundError as e:
            if e.name != "submitit":
                raise
            print(f"lplgrad.compare: error: --launcher {args.launcher} needs submitit: pip install 'lplgrad[cluster]'",
                  file=sys.stderr)
            return 2
        add_jobs(out, [JobRecord(j.method.name, j.seed, str(j.run_dir), str(j.log), job_id, args.launcher)
                       for j, job_id in submitted])
        for j, job_id in submitted:
            print(f"{j.method.name} seed {j.seed}: job {job_id} (log {j.log})")
    print(f"sweep: {len(todo)} submitted; watch with --status, write the report with --collect-only "
          f"(python -m lplgrad.compare --out {out} ...)")
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
        print(f"lplgrad.compare: note: the baseline {s.baseline!r} has no finished run: paired.md compares LPLgrad only")
    written = write_report(out, runs, s.at, s.title, s.baseline, s.timing, s.focus, left)
    print((out / "table.md").read_text())
    print("wrote " + ", ".join(str(p) for p in written))
    return 1 if failed else 0
