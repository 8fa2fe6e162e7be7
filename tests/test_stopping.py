"""The stop signal: kappa and the stopping rule on hand-built predictions, and in fit's records."""

import json

import pytest
import torch

from lplgrad import stopping
from lplgrad.cli import cli_main
from helpers.records import the_run


def test_kappa_by_hand():
    a = torch.tensor([0, 0, 1, 1])
    assert stopping.kappa(a, a) == 1.0
    assert stopping.kappa(torch.zeros(5, dtype=torch.long), torch.zeros(5, dtype=torch.long)) == 1.0  # one class
    # agreement 3/4, chance (2/4 * 1/4 + 2/4 * 3/4) = 1/2: kappa = (0.75 - 0.5) / (1 - 0.5) = 0.5
    assert stopping.kappa(a, torch.tensor([0, 1, 1, 1])) == pytest.approx(0.5)
    assert stopping.kappa(a, 1 - a) == pytest.approx(-1.0)


@pytest.mark.parametrize(
    "kappas,expected",
    [
        ([], False),
        ([0.995, 0.999], False),  # only two rounds
        ([0.995, 0.999, 1.0], True),
        ([0.999, 0.98, 0.995, 0.999], False),  # the dip resets the streak
        ([0.5, 0.999, 0.991, 0.99], True),  # at the threshold counts
        ([0.999, 0.999, None], False),
    ],
)
def test_stop_rule_on_sequences(kappas, expected):
    assert stopping.stop_suggested(kappas) is expected


def test_stop_rule_threshold_and_rounds():
    assert stopping.stop_suggested([0.95, 0.96], threshold=0.95, rounds=2)
    assert not stopping.stop_suggested([0.95, 0.96], threshold=0.97, rounds=2)
    assert "consider stopping" in stopping.describe(0.995, [0.991, 0.992, 0.995])
    assert "1 of 3" in stopping.describe(0.995, [0.5, 0.995])


def test_stop_set_is_fixed_and_seeded():
    a, b = stopping.stop_set(100, 10, 3), stopping.stop_set(100, 10, 3)
    assert torch.equal(a, b) and len(a) == 10 and torch.equal(a, a.sort().values)
    assert not torch.equal(a, stopping.stop_set(100, 10, 4)) and len(stopping.stop_set(5, 10, 0)) == 5


def test_fit_records_the_signal(tiny_fit, tmp_path, capsys):
    stop = {"class_path": "lplgrad.callbacks.StopSignal", "init_args": {"size": 40, "threshold": 0.2, "rounds": 1}}
    cli_main(tiny_fit("--trainer.callbacks", json.dumps([stop])))  # the config's list, replaced
    rows = [json.loads(line) for line in (the_run(tmp_path / "logs", "digits") / "rounds.jsonl").open()]
    assert rows[0]["stop_kappa"] is None and rows[0]["stop_suggested"] is False
    assert all(isinstance(r["stop_kappa"], float) for r in rows[1:])
    assert rows[-1]["stop_suggested"] == (rows[-1]["stop_kappa"] >= 0.2)
    out = capsys.readouterr().out
    assert out.count("Stop signal:") == 3 and out.index("Round   0") < out.index("Stop signal:")
