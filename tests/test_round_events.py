"""The rounds loop's event: the labeled set before and after the query, and the one way a
callback adds to a round's record."""

import json

import pytest
import torch

from lplgrad.callbacks import RoundCallback, RoundEnd
from lplgrad.cli import cli_main
from helpers.records import the_run


def event() -> RoundEnd:
    return RoundEnd(0, torch.arange(3), torch.arange(5), {"acc": torch.tensor(0.5)}, 1.0, 0.1)


def test_record_adds_fields_and_refuses_what_is_already_written():
    e = event()
    e.record(mine=1, other="x")
    assert e.fields == {"mine": 1, "other": "x"} and e.labeled == 3
    with pytest.raises(ValueError, match="test_acc"):
        e.record(test_acc=0.9)  # the loop's own field
    with pytest.raises(ValueError, match="mine"):
        e.record(mine=2)  # another callback's
    e.note("a line")
    assert e.lines == ["a line"]


class Spy(RoundCallback):
    def __init__(self):
        self.events = []

    def on_round_end(self, trainer, pl_module, event):
        event.record(spy_round=event.round)
        event.note(f"spy saw round {event.round}")
        self.events.append(event)


def test_the_event_carries_the_labeled_set_before_and_after_the_query(tmp_path, tiny_fit, capsys):
    spy = Spy()
    cli = cli_main(tiny_fit(subcommand=False), run=False)
    cli.trainer.callbacks.append(spy)
    cli.trainer.fit(cli.model, cli.datamodule)
    final = cli.datamodule.split.labeled
    for e in spy.events:
        queried = e.selected.tolist() if e.selected is not None else []
        assert e.labeled_after.tolist() == e.labeled_before.tolist() + queried
        assert e.labeled_after.tolist() == final[: len(e.labeled_after)].tolist()
    assert [e.labeled for e in spy.events] == [20, 35, 50] and spy.events[-1].selected is None
    run = the_run(tmp_path / "logs")
    rows = [json.loads(line) for line in (run / "rounds.jsonl").read_text().splitlines()]
    assert [r["spy_round"] for r in rows] == [0, 1, 2]
    assert "spy saw round 2" in capsys.readouterr().out


def test_the_optional_callbacks_change_no_training_or_selection(tmp_path, tiny_fit):
    """The query bar, stop signal and figures are listed in the config; without them (an empty
    trainer.callbacks) a run trains and selects exactly the same, and has no stop signal."""
    rows = {}
    for name, extra in (("listed", []), ("none", ["--trainer.callbacks", "[]"])):
        cli = cli_main(tiny_fit(*extra, save_dir=tmp_path / name))
        names = {type(cb).__name__ for cb in cli.trainer.callbacks}
        assert ({"QueryProgressBar", "StopSignal", "RoundFigures"} <= names) == (name == "listed")
        rows[name] = [json.loads(line) for line in (the_run(tmp_path / name, "digits") / "rounds.jsonl").open()]
    assert all("stop_kappa" in r for r in rows["listed"]) and not any("stop_kappa" in r for r in rows["none"])
    for a, b in zip(rows["listed"], rows["none"], strict=True):
        assert (a["test_acc"], a["queried"]) == (b["test_acc"], b["queried"])
