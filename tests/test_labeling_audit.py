"""The audit sample (issue 25, item 4): random images apart from the active batch, labelled like
any task, never trained on or proposed, and the accuracy on them with its interval."""

import csv
import json
from pathlib import Path

import pytest
import torch

from helpers.shapes import B, make_shapes, read_to_label, run, write_labels
from lplgrad.estimate import clopper_pearson, wilson
from lplgrad.split import Split


def drawn(round_dir: Path) -> list[str]:
    with open(round_dir / "audit_drawn.csv", newline="") as f:
        return [r["path"] for r in csv.DictReader(f)]


def test_held_out_images_are_neither_labeled_nor_candidates():
    split = Split(10, 0, torch.tensor([0, 1]), held_out=torch.tensor([5, 7]))
    assert split.unlabeled().tolist() == [2, 3, 4, 6, 8, 9] and split.candidates(0, None).tolist() == [2, 3, 4, 6, 8, 9]
    split.hold_out(torch.tensor([9]))
    assert 9 not in split.candidates(3, 4).tolist()
    with pytest.raises(RuntimeError):
        split.hold_out(torch.tensor([0]))  # a labeled image


def test_the_audit_is_drawn_apart_held_out_and_measured(tmp_path):
    images = tmp_path / "shapes"
    truth = make_shapes(images)
    labels, out = tmp_path / "labels.csv", tmp_path / "out"
    first = sorted(truth)[:12]
    write_labels(labels, [(p, truth[p]) for p in first])
    audit = ["--audit.size", "5", "--audit.interval", "clopper-pearson"]
    s1 = run(images, out, "--labels", str(labels), *audit)
    r1 = Path(s1["round_dir"])
    sample = drawn(r1)
    proposed = [r["path"] for r in read_to_label(r1)]
    assert len(sample) == 5 == len(set(sample)) and not set(sample) & (set(proposed) | set(first))
    assert len(proposed) == B and s1["audit"]["drawn"] == sample and (r1 / "to_label_audit.csv").is_file()
    assert s1["audit"]["estimate"] == clopper_pearson(0, 0).as_dict()  # nothing labelled yet: [0, 1]
    assert s1["audit"]["estimate"]["accuracy"] is None

    # the annotator labels the audit images too: they are held out of training and of the proposal
    write_labels(labels, [(p, truth[p]) for p in first + sample])
    s2 = run(images, out, "--labels", str(labels), *audit)
    r2 = Path(s2["round_dir"])
    trained_on = torch.load(r2 / "model.ckpt", weights_only=True)["labeled"]
    assert sorted(trained_on) == sorted(first) and s2["labeled"] == len(first)
    assert not set(sample) & {r["path"] for r in read_to_label(r2)} and not set(sample) & set(drawn(r2))
    got = s2["audit"]["estimate"]
    assert got["n"] == 5 and got["method"] == "Clopper-Pearson"
    assert (got["low"], got["high"]) == pytest.approx(
        (clopper_pearson(got["correct"], 5).low, clopper_pearson(got["correct"], 5).high)
    )
    assert (out / "tensorboard").is_dir() and any((out / "tensorboard").iterdir())


def test_no_audit_by_default_and_bad_options_are_one_line(tmp_path, capsys):
    images = tmp_path / "shapes"
    truth = make_shapes(images)
    labels = tmp_path / "labels.csv"
    write_labels(labels, [(p, truth[p]) for p in sorted(truth)[:12]])
    s = run(images, tmp_path / "out", "--labels", str(labels))
    assert "audit" not in s and not (Path(s["round_dir"]) / "audit_drawn.csv").exists()
    assert json.loads((Path(s["round_dir"]) / "proposal.json").read_text()).keys() == s.keys() - {"round_dir"}
    with pytest.raises(SystemExit):
        run(images, tmp_path / "bad", "--labels", str(labels), "--audit.interval", "agresti")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "audit.interval must be one of wilson, clopper-pearson" in err[0]
    assert wilson(3, 5).describe().endswith("(Wilson 95%, 3 of 5)")
