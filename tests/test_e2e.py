"""Whole experiments through the CLI entry point, on tiny real data (scikit-learn digits)."""

import json
import os
from pathlib import Path

import pytest
import torch

from lplgrad import strategies
from lplgrad.cli import cli_main
from lplgrad.strategies import QueryStrategy
from lplgrad.records import read_rounds
from helpers.records import the_run


def run_dir(tmp_path) -> Path:
    return the_run(tmp_path / "logs")


def test_three_rounds_end_to_end(tmp_path, tiny_fit):
    cli = cli_main(tiny_fit())
    dm = cli.datamodule
    rows = read_rounds(run_dir(tmp_path) / "rounds.jsonl")
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert [r["labeled"] for r in rows] == [20, 35, 50]  # grows by exactly b
    assert [len(r["queried"]) for r in rows] == [15, 15, 0]
    labeled = dm.split.labeled.tolist()
    assert len(labeled) == 50 == len(set(labeled))
    queried = [i for r in rows for i in r["queried"]]
    assert len(set(queried)) == len(queried) and set(queried) <= set(labeled)
    unlabeled = set(dm.split.unlabeled().tolist())
    assert not unlabeled & set(labeled) and len(unlabeled) + len(labeled) == dm.pool_size
    # every round's candidates and scores are on disk, and the picks are their top scores
    for r in rows[:2]:
        lines = (run_dir(tmp_path) / "candidates" / f"round_{r['round']:03d}.csv").read_text().splitlines()[1:]
        cands = [(int(i), float(s), int(sel)) for i, s, sel in (ln.split(",") for ln in lines)]
        assert len(cands) == 60
        picked = sorted(c[0] for c in cands if c[2])
        assert picked == sorted(r["queried"])
        assert min(c[1] for c in cands if c[2]) >= max(c[1] for c in cands if not c[2])
    assert all(0.0 <= r["test_acc"] <= 1.0 for r in rows)
    assert json.loads((run_dir(tmp_path) / "finished.json").read_text())["labeled"] == 50
    # the checkpoint holds the split as tensors and loads with weights_only=True
    ckpt = run_dir(tmp_path) / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, weights_only=True)
    saved = state["ActiveDataModule"]["labeled"]
    assert isinstance(saved, torch.Tensor) and saved.tolist() == labeled


def test_tensorboard_has_accuracy_per_round(tmp_path, tiny_fit):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cli_main(tiny_fit("--data.budget", "35"))
    acc = EventAccumulator(str(run_dir(tmp_path)))
    acc.Reload()
    steps = [e.step for e in acc.Scalars("al/test_acc")]
    assert steps == [20, 35]
    assert "al/query_seconds" in acc.Tags()["scalars"]


#: every query strategy the package exports, each run with A exactly when it says it reads A
EXPORTED = sorted(
    n
    for n in strategies.__all__
    if isinstance(getattr(strategies, n), type)
    and issubclass(getattr(strategies, n), QueryStrategy)
    and getattr(strategies, n) is not QueryStrategy
)
#: the init args a strategy cannot do without
NEEDS = {
    "SwitchAt": [
        "--strategy.init_args.first",
        "lplgrad.strategies.TypiClust",
        "--strategy.init_args.then",
        "lplgrad.strategies.BADGE",
        "--strategy.init_args.labeled",
        "30",
    ],
    "VAAL": ["--strategy.init_args.width", "4"],
    "WAAL": ["--model.adversary", "lplgrad.adversary.WAALAdversary"],
}


@pytest.mark.parametrize("name", EXPORTED)
def test_every_strategy_runs(tmp_path, tiny_fit, name):
    use_aux = getattr(strategies, name).requires_aux
    dropout = ["--model.head_dropout", "0.5"] if getattr(strategies, name).requires_dropout else []
    cli = cli_main(
        tiny_fit(
            "--strategy",
            f"lplgrad.strategies.{name}",
            *NEEDS.get(name, []),
            *dropout,
            "--model.use_aux",
            str(use_aux).lower(),
            "--data.budget",
            "35",
        )
    )
    initial = cli.datamodule.split.labeled[:20].tolist()
    (first, last) = read_rounds(run_dir(tmp_path) / "rounds.jsonl")
    assert len(first["queried"]) == 15 == len(set(first["queried"]) - set(initial)) and last["queried"] == []
    assert cli.datamodule.split.labeled.tolist() == initial + first["queried"]  # the query's picks, best first
    assert json.loads((run_dir(tmp_path) / "finished.json").read_text())["strategy"].startswith(name + "(")


def test_the_old_strategy_key_names_the_new_one(tmp_path, tiny_fit, capsys):
    with pytest.raises(SystemExit):
        cli_main(tiny_fit("--model.strategy", "lplgrad.strategies.Random"))
    assert "--model.strategy has moved: set --strategy" in capsys.readouterr().err
    old = tmp_path / "old.yaml"
    old.write_text("model:\n  strategy:\n    class_path: lplgrad.strategies.Random\n")
    with pytest.raises(SystemExit):
        cli_main(tiny_fit("--config", str(old)))
    assert f"{old}: model.strategy has moved: set strategy" in capsys.readouterr().err


def test_command_line_overrides(tmp_path, tiny_fit):
    args = tiny_fit(
        "--model.margin", "0.5", "--seed_everything", "3", "--strategy.init_args.norm", "global", "--data.budget", "35"
    )
    cli = cli_main(args[1:], run=False)  # without the "fit" subcommand: build only
    assert cli.model.margin == 0.5 and cli.strategy.norm == "global"
    (loop,) = [cb for cb in cli.trainer.callbacks if type(cb).__name__ == "ActiveLearningLoop"]
    assert loop.strategy is cli.strategy  # the rounds loop owns it
    assert cli.model.net.linear.out_features == 10 and cli.model.hparams.in_channels == 1  # linked from data
    assert cli.datamodule.seed == 3  # linked from seed_everything
    cli.trainer.fit(cli.model, cli.datamodule)
    assert os.environ["PL_GLOBAL_SEED"] == "3"


def test_the_data_seed_is_linked_from_seed_everything(tmp_path, tiny_fit, capsys, monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "11")  # what Lightning's seed_everything() picks with no value
    picked = cli_main(tiny_fit("--seed_everything", "true")[1:], run=False)
    assert picked.config.seed_everything == 11 == picked.datamodule.seed
    monkeypatch.setenv("PL_GLOBAL_SEED", "12")  # no longer read by the data: no seed means 0
    assert cli_main(tiny_fit("--seed_everything", "false")[1:], run=False).datamodule.seed is None
    saved = tmp_path / "saved.yaml"  # a config.yaml of a run saved before the link: data.seed null
    saved.write_text("data:\n  seed: null\n")
    assert cli_main(tiny_fit("--config", str(saved), "--seed_everything", "4")[1:], run=False).datamodule.seed == 4
    with pytest.raises(SystemExit):
        cli_main(tiny_fit("--data.seed", "3"))
    assert "--data.seed has moved: set --seed_everything (the data's seed is linked from it)" in capsys.readouterr().err
    saved.write_text("data:\n  seed: 3\n")
    with pytest.raises(SystemExit):
        cli_main(tiny_fit("--config", str(saved)))
    assert f"{saved}: data.seed has moved: set seed_everything" in capsys.readouterr().err


def test_seed_changes_the_split(tmp_path, tiny_fit):
    a = cli_main(tiny_fit("--data.budget", "20", save_dir=tmp_path / "a"))
    b = cli_main(tiny_fit("--data.budget", "20", "--seed_everything", "1", save_dir=tmp_path / "b"))
    c = cli_main(tiny_fit("--data.budget", "20", save_dir=tmp_path / "c"))
    assert a.datamodule.split.labeled.tolist() == c.datamodule.split.labeled.tolist()
    assert a.datamodule.split.labeled.tolist() != b.datamodule.split.labeled.tolist()


@pytest.mark.parametrize("every,saves", [(None, 3), ("0", 9)])
def test_checkpoint_cadence_round_ends_or_every_epoch(tmp_path, tiny_fit, every, saves):
    """One file, last.ckpt: saved at each round's end (default), or after every epoch with every_minutes 0."""
    extra = ["--loop.epochs_per_round", "3"] + (["--checkpoint.every_minutes", every] if every else [])
    cli = cli_main(tiny_fit(*extra))
    (ckpt,) = [cb for cb in cli.trainer.callbacks if type(cb).__name__ == "RoundCheckpoint"]
    assert ckpt.saves == saves
    assert [p.name for p in (run_dir(tmp_path) / "checkpoints").iterdir()] == ["last.ckpt"]
    state = torch.load(run_dir(tmp_path) / "checkpoints" / "last.ckpt", weights_only=False)
    assert len(state["ActiveDataModule"]["labeled"]) == 50  # the last save is the end of the last round


def test_lplgrad_without_aux_is_ent_gradnorm(tmp_path, tiny_fit):
    """The ablation "LPLgrad w/o A" and Ent-GradNorm are one computation (docs/method.md §4): with
    the same seed they train, query and score alike, round for round."""
    runs = {}
    for name in ("LPLgrad", "EntGradNorm"):
        cli_main(
            tiny_fit(
                "--strategy",
                f"lplgrad.strategies.{name}",
                "--model.use_aux",
                "false",
                "--loop.epochs_per_round",
                "2",
                save_dir=tmp_path / name / "logs",
            )
        )
        d = run_dir(tmp_path / name)
        runs[name] = (
            [(r["labeled"], r["test_acc"], r["queried"]) for r in read_rounds(d / "rounds.jsonl")],
            (d / "candidates" / "round_000.csv").read_text(),
        )
    assert runs["LPLgrad"] == runs["EntGradNorm"]
    assert len(runs["LPLgrad"][0]) == 3
