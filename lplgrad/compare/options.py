"""The options of ``python -m lplgrad.compare`` and their checks (:func:`parse`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lplgrad.compare.launch import CLUSTERS
from lplgrad.compare.methods import ALL


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m lplgrad.compare",
        description="Multi-seed comparison of the active-learning methods on one config: runs, "
        "then table.md/csv (accuracy per labeled size), curves.png, paired.md/csv (differences over seeds), "
        "timing.md/csv, aulc.md/csv and, with --ablation, ablation.md/csv in OUT. Unknown options are passed "
        "to every run.",
        allow_abbrev=False,
    )
    add_sweep_options(p)
    add_cluster_options(p)
    add_report_options(p)
    return p


def add_sweep_options(p: argparse.ArgumentParser) -> None:
    """What to run: the configs, seeds, methods and arms, and how many runs at once."""
    p.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="CFG",
        help="base config of every run; repeat to layer configs (e.g. a low_budget overlay)",
    )
    p.add_argument("--out", type=Path, default=None, help="output folder (default: results/<first config's name>)")
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0, 1, 2, 3, 4],
        help="seed_everything values, one run each (default: 0 1 2 3 4, the paper's 5 trials)",
    )
    p.add_argument(
        "--methods",
        nargs="+",
        default=None,
        metavar="NAME",
        help=f"methods to run (default: all but the ablation); known: {', '.join(m.name for m in ALL)}",
    )
    p.add_argument(
        "--arm",
        action="append",
        default=[],
        metavar="NAME=CFG[,CFG]",
        help="also run a method set up by config files layered on the base config (strategy, "
        "backbone, weights: anything), in folder NAME; repeatable",
    )
    p.add_argument(
        "--ablation",
        action="store_true",
        help='also run "LPLgrad w/o A" (LPLgrad with use_aux false) and write ablation.md/csv',
    )
    p.add_argument("--jobs", type=int, default=1, help="runs at once (default 1: one after the other)")
    p.add_argument("--dry-run", action="store_true", help="print the run commands and exit")


def add_cluster_options(p: argparse.ArgumentParser) -> None:
    """Where the runs go: here, or one SLURM job each (through submitit), and the jobs' state."""
    p.add_argument(
        "--launcher",
        choices=["local", *CLUSTERS],
        default="local",
        help="local: subprocesses here, --jobs at once; slurm: one SLURM job per run through submitit "
        "(preemptible: requeued and resumed); submitit-local: the slurm path run here by "
        "submitit's local executor",
    )
    p.add_argument("--slurm.partition", dest="slurm_partition", default=None, help="the partition of every job")
    p.add_argument("--slurm.gpus", dest="slurm_gpus", type=int, default=1, help="GPUs per job (default 1)")
    p.add_argument("--slurm.cpus", dest="slurm_cpus", type=int, default=8, help="CPUs per job (default 8)")
    p.add_argument(
        "--slurm.mem_gb", dest="slurm_mem_gb", type=int, default=32, help="memory per job in GB (default 32)"
    )
    p.add_argument(
        "--slurm.time_min",
        dest="slurm_time_min",
        type=int,
        default=24 * 60,
        help="time limit of each job in minutes (default 1440); a run longer than that is requeued "
        "at the limit and resumed",
    )
    p.add_argument(
        "--slurm.array_parallelism",
        dest="slurm_array_parallelism",
        type=int,
        default=64,
        help="jobs of the sweep's array running at once (default 64)",
    )
    p.add_argument(
        "--slurm.sbatch",
        dest="slurm_sbatch",
        action="append",
        default=[],
        metavar="FLAG",
        help="an extra sbatch flag for every job, e.g. --slurm.sbatch=--account=proj; repeatable",
    )
    p.add_argument(
        "--resubmit",
        action="store_true",
        help="with --launcher slurm: submit again the runs whose recorded jobs are pending or running "
        "(after those jobs were cancelled)",
    )
    p.add_argument(
        "--status",
        action="store_true",
        help="print which submitted runs are pending, running, finished or failed, and exit",
    )


def add_report_options(p: argparse.ArgumentParser) -> None:
    """What the report shows."""
    p.add_argument(
        "--at",
        type=int,
        nargs="+",
        default=None,
        metavar="N",
        help="labeled-set sizes of the accuracy and paired tables (default: every recorded size)",
    )
    p.add_argument(
        "--baseline",
        default=None,
        metavar="NAME",
        help="the method every other is compared with, seed by seed, in paired.md (default: Random)",
    )
    p.add_argument(
        "--focus",
        default=None,
        metavar="NAME",
        help="the method compared with every other in paired.md (default: LPLgrad)",
    )
    p.add_argument(
        "--no-timing",
        action="store_true",
        help="leave the timing table out (runs that shared a machine have times that do not compare)",
    )
    p.add_argument(
        "--reach",
        type=float,
        default=None,
        metavar="PERCENT",
        help="also write reach.md: the labels each method needs to reach this test accuracy (%%), on its mean "
        "curve and seed by seed",
    )
    p.add_argument(
        "--collect-only",
        action="store_true",
        help="run nothing: only write the report from OUT/runs (with OUT/report.json's settings, unless given here)",
    )
    p.add_argument("--title", default=None, help="title of table.md and curves.png (default: the config's name)")


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    argv = list(sys.argv[1:] if argv is None else argv)
    tail: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, tail = argv[:i], argv[i + 1 :]
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
