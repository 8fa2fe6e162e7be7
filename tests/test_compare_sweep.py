"""The comparison command's sweeps: the run commands it plans, how it skips, restarts and reports
runs, and one genuine tiny sweep."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from helpers.records import read_csv, sd
from helpers.runs import HANG_S
from helpers.tiny import tiny_options
from lplgrad.compare import choose_methods, load_runs, plan, run_sweep
from lplgrad.compare.methods import arm
from lplgrad.compare.sweep import Job

ROOT = Path(__file__).resolve().parents[1]


def test_methods_and_which_use_a():
    methods = choose_methods(["lplgrad", "Random"], ablation=True)
    assert [m.name for m in methods] == ["LPLgrad", "Random", "LPLgrad w/o A"]
    everything = "LPLgrad Ent-GradNorm LearningLoss Entropy Margin LeastConfidence Coreset Random".split()
    assert [m.name for m in choose_methods()] == everything
    uses_aux = {m.name: m.use_aux for m in choose_methods(ablation=True)}
    assert [n for n, a in uses_aux.items() if a] == ["LPLgrad", "LearningLoss"]
    with pytest.raises(KeyError):
        choose_methods(["WAAL-GP"])


def test_the_related_presets_carry_the_options_they_need(tmp_path):
    methods = choose_methods(["BALD", "BatchBALD", "ProbCover", "WAAL", "lplgrad-scratch", "Random (from scratch)"])
    jobs = plan(["a.yaml"], methods, [0], tmp_path, python="PY")
    tails = [
        j.command[j.command.index("--strategy") : j.command.index("--trainer.logger.init_args.save_dir")] for j in jobs
    ]
    assert tails == [
        "--strategy lplgrad.strategies.BALD --model.use_aux false --model.head_dropout 0.5".split(),
        "--strategy lplgrad.strategies.BatchBALD --model.use_aux false --model.head_dropout 0.5".split(),
        "--strategy lplgrad.strategies.ProbCover --model.use_aux false".split(),
        "--strategy lplgrad.strategies.WAAL --model.use_aux false --model.adversary lplgrad.adversary.WAALAdversary".split(),
        "--strategy lplgrad.strategies.LPLgrad --model.use_aux true --model.retrain_from_scratch true".split(),
        "--strategy lplgrad.strategies.Random --model.use_aux false --model.retrain_from_scratch true".split(),
    ]
    assert [j.run_dir.parent.name for j in jobs] == [
        "BALD",
        "BatchBALD",
        "ProbCover",
        "WAAL",
        "LPLgrad-scratch",
        "Random-scratch",
    ]


def test_plan_builds_the_documented_command(tmp_path):
    methods = choose_methods(["lplgrad", "Random"], ablation=True)
    jobs = plan(["a.yaml", "b.yaml"], methods, [3, 4], tmp_path, ["--data.budget", "50"], python="PY")
    assert len(jobs) == 6
    abl = jobs[4]
    expected = (
        "PY -m lplgrad fit --config a.yaml --config b.yaml --seed_everything 3 --strategy lplgrad.strategies.LPLgrad "
        "--model.use_aux false --trainer.logger.init_args.save_dir RUNS --trainer.logger.init_args.name LPLgrad-wo-A "
        "--trainer.logger.init_args.version seed3 --trainer.enable_progress_bar false --data.budget 50"
    ).split()
    assert abl.command == [str(tmp_path / "runs") if w == "RUNS" else w for w in expected]
    assert abl.run_dir == tmp_path / "runs" / "LPLgrad-wo-A" / "seed3"
    with pytest.raises(ValueError, match="seed_everything"):
        plan(["a.yaml"], methods, [0], tmp_path, ["--seed_everything=1"])


def test_an_arm_layers_its_configs(tmp_path):
    pretrained = arm("pretrained-LPLgrad=c/w.yaml, c/s.yaml")
    (job,) = plan(["a.yaml"], [pretrained], [1], tmp_path, python="PY")
    expected = "PY -m lplgrad fit --config a.yaml --config c/w.yaml --config c/s.yaml --seed_everything 1"
    assert job.command[:13] == expected.split() + ["--trainer.logger.init_args.save_dir"]
    assert job.run_dir == tmp_path / "runs" / "pretrained-LPLgrad" / "seed1"
    for bad in ("no-configs", "has space=a.yaml", "x="):
        with pytest.raises(ValueError):
            arm(bad)


FAKE_RUN = (
    "import json, pathlib, sys; d = pathlib.Path(sys.argv[1]); "
    "(d / 'started').parent.mkdir(parents=True, exist_ok=True); "
    "assert not (d / 'stale').exists(); "
    "(d / 'rounds.jsonl').write_text(json.dumps(dict(round=0, labeled=5, test_acc=0.5, train_seconds=1, "
    "query_seconds=0, queried=[])) + '\\n'); "
    "(d / 'finished.json').write_text('{}')"
)


def fake_jobs(out, n):
    from lplgrad.compare.methods import METHODS

    jobs = []
    for s in range(n):
        d = out / "runs" / "Random" / f"seed{s}"
        jobs.append(
            Job(METHODS[-1], s, d, out / "logs" / "Random" / f"seed{s}.log", [sys.executable, "-c", FAKE_RUN, str(d)])
        )
    return jobs


def test_sweep_skips_finished_and_restarts_unfinished(tmp_path):
    out = tmp_path / "fake"
    jobs = fake_jobs(out, 4)
    jobs[1].run_dir.mkdir(parents=True)
    (jobs[1].run_dir / "stale").write_text("left by an interrupted run")  # the fake run fails if this survives
    lines = []
    result = run_sweep(jobs, n_jobs=2, echo=lines.append)
    assert len(result.ran) == 4 and not result.skipped and not result.failed
    assert all(j.finished for j in jobs) and not (jobs[1].run_dir / "stale").exists()
    assert jobs[0].log.read_text().startswith(" ".join(jobs[0].command))
    (jobs[2].run_dir / "finished.json").unlink()
    result = run_sweep(jobs, echo=lines.append)
    assert [j.seed for j in result.ran] == [2] and len(result.skipped) == 3
    assert "3 of 4 runs already finished: skipped" in lines


def test_failed_run_is_reported(tmp_path):
    out = tmp_path / "fail"
    (job,) = fake_jobs(out, 1)
    bad = Job(job.method, job.seed, job.run_dir, job.log, [sys.executable, "-c", "raise SystemExit(3)"])
    result = run_sweep([bad], echo=lambda s: None)
    assert result.failed == [(bad, 3)] and not result.ran


# ---- one genuine tiny sweep through the real command ---------------------------------------------
TINY = tiny_options()  # the sweep sets the logger's folder itself


def compare(out, *extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    cmd = [
        sys.executable,
        "-m",
        "lplgrad.compare",
        "--config",
        str(ROOT / "configs/digits.yaml"),
        "--out",
        str(out),
        "--seeds",
        "0",
        "1",
        "--methods",
        "LPLgrad",
        "Random",
        "--at",
        "20",
        "50",
        *TINY,
        *extra,
    ]
    return subprocess.run(cmd, cwd=out.parent, env=env, capture_output=True, text=True, timeout=HANG_S)


def test_real_tiny_sweep(tmp_path):
    out = tmp_path / "digits"
    p = compare(out)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "sweep: 4 ran, 0 skipped (finished), 0 failed" in p.stdout
    runs = load_runs(out)
    assert list(runs) == ["LPLgrad", "Random"]
    for method, by_seed in runs.items():
        assert list(by_seed) == ["seed0", "seed1"]
        for rows in by_seed.values():
            assert [r["labeled"] for r in rows] == [20, 35, 50]
    # the runs really used the presets and the overrides
    cfg = (out / "runs" / "Random" / "seed1" / "config.yaml").read_text()
    assert "lplgrad.strategies.Random" in cfg and "use_aux: false" in cfg and "seed_everything: 1" in cfg
    assert "width: 4" in cfg and "budget: 50" in cfg
    assert "use_aux: true" in (out / "runs" / "LPLgrad" / "seed0" / "config.yaml").read_text()
    assert (out / "commands.txt").read_text().count("lplgrad fit") == 4
    # table.md and table.csv hold the mean and std of the runs' own accuracies
    md = (out / "table.md").read_text()
    for method in runs:
        acc = {
            s: [100 * r["test_acc"] for rows in runs[method].values() for r in rows if r["labeled"] == s]
            for s in (20, 50)
        }
        cells = [f"{sum(v) / 2:.2f} ± {sd(*v):.2f}" for v in acc.values()]
        assert f"| {method} | 2 | {cells[0]} | {cells[1]} |" in md
        row = next(r for r in read_csv(out / "table.csv") if r["method"] == method)
        assert float(row["mean@50"]) == pytest.approx(sum(acc[50]) / 2, abs=1e-4)
    assert {r["method"] for r in read_csv(out / "timing.csv")} == {"LPLgrad", "Random"}
    assert {r["method"] for r in read_csv(out / "aulc.csv")} == {"LPLgrad", "Random"}
    with Image.open(out / "curves.png") as im:
        assert im.format == "PNG"

    # a second sweep runs nothing: every run folder is finished
    stamps = {d: (d / "finished.json").stat().st_mtime_ns for d in out.glob("runs/*/seed*")}
    p = compare(out)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "4 of 4 runs already finished: skipped" in p.stdout
    assert "sweep: 0 ran, 4 skipped (finished), 0 failed" in p.stdout
    assert {d: (d / "finished.json").stat().st_mtime_ns for d in out.glob("runs/*/seed*")} == stamps


def test_the_vaal_arm_config_runs_tiny(tmp_path):
    """configs/compare/vaal_width16.yaml layered on a dataset config: VAAL with a VAE of width 16
    queries, and the run's config.yaml records that width and M alone."""
    from helpers.records import rounds_of
    from helpers.tiny import tiny_fit_args
    from lplgrad.cli import cli_main

    arm_config = str(ROOT / "configs" / "compare" / "vaal_width16.yaml")
    cli_main(tiny_fit_args(tmp_path, "--config", arm_config, "--trainer.accelerator", "cpu"))
    rows = rounds_of(tmp_path)
    assert [r["labeled"] for r in rows] == [20, 35, 50] and all(len(r["queried"]) == 15 for r in rows[:-1])
    (cfg,) = tmp_path.glob("*/version_*/config.yaml")
    text = cfg.read_text()
    assert "lplgrad.strategies.VAAL" in text and "width: 16" in text and "use_aux: false" in text
