"""Labeling your own images (python -m lplgrad.label) on a tiny folder of coloured shapes."""

import csv
import hashlib
import json
from pathlib import Path

import pytest
import torch

from helpers.shapes import B, CLASSES, CONFIG, append, make_shapes, read_to_label, run, write_labels
from lplgrad.labeling import LabelFolderData, read_labels
from lplgrad.labeling.checkpoint import load_checkpoint, save_checkpoint
from lplgrad.labeling.label_studio import read_export
from lplgrad.module import ActiveLearner
from lplgrad.nets import SmallCNN


def folder_hash(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        h.update(p.relative_to(root).as_posix().encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture
def shapes(tmp_path):
    images = tmp_path / "shapes"
    return images, make_shapes(images)


def test_two_rounds_with_bad_rows_leave_the_folder_unchanged(tmp_path, shapes, capsys):
    images, truth = shapes
    before = folder_hash(images)
    labels = tmp_path / "labels.csv"
    good = [(p, truth[p]) for p in sorted(truth)[:9]]  # lines 2-10, 3 per class
    write_labels(labels, good)
    append(
        labels,
        [
            ("set_a/ghost.png", "circle"),  # line 11: no such file
            (sorted(truth)[10], "hexagon"),  # line 12: unknown class
            good[0],  # line 13: duplicate of line 2
            ("set_a/broken.png", "square"),
        ],
    )  # line 14: corrupt image
    out = tmp_path / "out"

    s1 = run(images, out, "--labels", str(labels), "--classes", ",".join(CLASSES))
    console = capsys.readouterr().out
    assert "set_a/broken.png" in console and "unreadable" in console
    assert "line 11: set_a/ghost.png: no such image in the folder" in console
    assert f"line 12: {sorted(truth)[10]}: unknown class 'hexagon'" in console
    assert f"line 13: {good[0][0]}: duplicate of line 2" in console
    assert "line 14: set_a/broken.png: the image cannot be read" in console
    assert "notes.txt" not in console
    assert s1["mode"] == "trained" and s1["labeled"] == 9 and s1["classes"] == list(CLASSES)
    assert [p["line"] for p in s1["label_problems"]] == [11, 12, 13, 14]
    assert [u["path"] for u in s1["unreadable_images"]] == ["set_a/broken.png"]
    assert Path(s1["checkpoint"]).is_file() and s1["checkpoint"] in console

    r1 = Path(s1["round_dir"])
    rows = read_to_label(r1)
    proposed1 = [r["path"] for r in rows]
    labeled = {p for p, _ in good}
    assert len(proposed1) == B == len(set(proposed1)) and not set(proposed1) & labeled
    assert set(proposed1) <= set(truth)
    assert [int(r["rank"]) for r in rows] == list(range(1, B + 1))
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert all(r["predicted"] in CLASSES for r in rows)
    tasks = json.loads((r1 / "label_studio.json").read_text())
    assert [t["data"]["path"] for t in tasks] == proposed1
    assert [t["data"]["image"] for t in tasks] == [f"/data/local-files/?d=shapes/{p}" for p in proposed1]
    assert [t["meta"]["score"] for t in tasks] == pytest.approx(scores)
    assert "circle" in (r1 / "label_studio_config.xml").read_text()

    # the annotator labels the proposed images; the next run continues from the checkpoint
    append(labels, [(p, truth[p]) for p in proposed1])
    s2 = run(images, out, "--labels", str(labels), "--classes", ",".join(CLASSES), "--resume")
    assert s2["round"] == 2 and s2["resumed_from"] == s1["checkpoint"]
    assert s2["labeled"] == 9 + B
    proposed2 = [r["path"] for r in read_to_label(Path(s2["round_dir"]))]
    assert len(proposed2) == B == len(set(proposed2))
    assert not set(proposed2) & (labeled | set(proposed1))
    assert folder_hash(images) == before


def test_cold_start_is_random_seeded_and_said(tmp_path, shapes, capsys):
    images, truth = shapes
    before = folder_hash(images)
    s = run(images, tmp_path / "out", "--labels", str(tmp_path / "none_yet.csv"))
    console = capsys.readouterr().out
    assert s["mode"] == "cold_start" and s["cold_start_reason"] == "no image is labeled yet"
    assert "Cold start: no image is labeled yet" in console and "at random" in console
    assert s["checkpoint"] is None and s["strategy"].startswith("Random")
    proposed = [r["path"] for r in read_to_label(Path(s["round_dir"]))]
    assert len(proposed) == B == len(set(proposed)) and set(proposed) <= set(truth)
    again = run(images, tmp_path / "out2")
    assert again["proposed"] == proposed  # same seed, same round: same batch
    assert folder_hash(images) == before


def test_cold_start_coreset_uses_the_untrained_network(tmp_path, shapes, capsys):
    images, truth = shapes
    s = run(images, tmp_path / "out", "--cold_start", "coreset")
    assert "by Coreset" in capsys.readouterr().out
    assert s["mode"] == "cold_start" and s["strategy"].startswith("Coreset")
    assert Path(s["checkpoint"]).is_file()
    assert len(s["proposed"]) == B == len(set(s["proposed"]))


def test_one_class_explains_and_falls_back(tmp_path, shapes, capsys):
    images, truth = shapes
    labels = tmp_path / "labels.csv"
    circles = [(p, c) for p, c in sorted(truth.items()) if c == "circle"][:8]
    write_labels(labels, circles)
    s = run(images, tmp_path / "out", "--labels", str(labels))
    console = capsys.readouterr().out
    assert s["mode"] == "cold_start" and "at least 2 classes" in s["cold_start_reason"]
    assert "every label is 'circle'" in console
    assert len(s["proposed"]) == B and not set(s["proposed"]) & {p for p, _ in circles}


def test_label_studio_round_trip(tmp_path, shapes, capsys):
    """Cold start -> Label Studio tasks -> an export with annotations -> --import_from -> trained round."""
    images, truth = shapes
    labels = tmp_path / "labels.csv"
    s1 = run(images, tmp_path / "out", "--labels", str(labels), "--data.query_size", "9")
    tasks = json.loads((Path(s1["round_dir"]) / "label_studio.json").read_text())
    assert len(tasks) == 9
    export = []  # what Label Studio's JSON export of those tasks looks like once labelled
    for n, t in enumerate(tasks, 1):
        label = truth[t["data"]["path"]]
        export.append(
            {
                "id": n,
                "data": t["data"],
                "meta": t["meta"],
                "annotations": [
                    {
                        "id": 100 + n,
                        "was_cancelled": False,
                        "result": [
                            {"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}
                        ],
                    }
                ],
            }
        )
    export[-1]["annotations"][0]["was_cancelled"] = True  # a skipped task is not imported
    (tmp_path / "export.json").write_text(json.dumps(export))
    pairs, notes = read_export(tmp_path / "export.json")
    assert len(pairs) == 8 and len(notes) == 1
    # JSON-MIN: flat objects, the choice under the Choices tag's name
    mini = [
        {"id": n, "image": t["data"]["image"], "path": t["data"]["path"], "label": truth[t["data"]["path"]]}
        for n, t in enumerate(tasks, 1)
    ]
    (tmp_path / "export_min.json").write_text(json.dumps(mini))
    assert read_export(tmp_path / "export_min.json")[0] == [(m["path"], m["label"]) for m in mini]
    # CSV export: with the labeling config written by the run, it has 'path' and 'label' columns
    (tmp_path / "export.csv").write_text(
        "image,path,id,label,annotator\n"
        + "".join(f"{m['image']},{m['path']},{m['id']},{m['label']},1\n" for m in mini)
    )
    assert read_export(tmp_path / "export.csv")[0] == [(m["path"], m["label"]) for m in mini]

    s2 = run(images, tmp_path / "out", "--labels", str(labels), "--import_from", str(tmp_path / "export.json"))
    assert "8 new rows appended" in capsys.readouterr().out
    assert s2["mode"] == "trained" and s2["labeled"] == 8
    with open(labels, newline="") as f:
        assert [(r["path"], r["label"]) for r in csv.DictReader(f)] == pairs
    assert not set(s2["proposed"]) & {p for p, _ in pairs}
    # importing the same export again appends nothing
    from lplgrad.labeling.label_studio import import_export, local_files_prefix

    again = import_export(tmp_path / "export.json", labels, images, local_files_prefix(images))
    assert (again.pairs, again.new) == (8, 0)
    assert len(labels.read_text().splitlines()) == 9


def test_fatal_inputs_are_one_clear_line(tmp_path, shapes, capsys):
    images, _ = shapes
    bad = tmp_path / "bad.csv"
    bad.write_text("file,class\na.png,circle\n")
    with pytest.raises(SystemExit) as e:
        run(images, tmp_path / "out", "--labels", str(bad))
    assert e.value.code == 2
    assert "header naming the columns 'path' and 'label'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run(images, images / "out")
    assert "inside the image folder" in capsys.readouterr().err
    assert not (images / "out").exists()
    with pytest.raises(SystemExit):
        run(tmp_path / "nowhere", tmp_path / "out")
    assert "does not exist" in capsys.readouterr().err
    inside = images / "labels.csv"  # --import_from would write into the image folder: refused
    with pytest.raises(SystemExit):
        run(images, tmp_path / "out", "--labels", str(inside), "--import_from", str(bad))
    assert "inside the image folder" in capsys.readouterr().err and not inside.exists()


def test_paths_in_the_csv_are_normalised(tmp_path, shapes):
    images, truth = shapes
    a, b, c = sorted(truth)[:3]
    labels = tmp_path / "l.csv"
    labels.write_text(
        "\ufeffPath,Label,annotator\n"  # Excel's BOM, capitalised header, an extra column
        f"./{a},circle,x\n"
        f"{(images / b).resolve()},square,x\n"
        f"{c.replace('/', chr(92))},triangle,x\n"  # Windows separators
        "../outside.png,circle,x\n"
        f"{a},,x\n"
        f"{a},square,x\n"
        f"shapes/{b},square,x\n"  # relative to the wrong folder
    )
    lab = read_labels(labels, images, set(truth))
    assert lab.label == {a: "square", b: "square", c: "triangle"}
    assert [(p.line, p.message.split(":")[0]) for p in lab.problems] == [
        (5, "not inside the image folder"),
        (6, "no label"),
        (7, "labelled 'circle' on line 2 and 'square' here"),
        (8, "no such image in the folder (paths are relative to the image folder"),
    ]


def test_checkpoint_rows_follow_class_names(tmp_path):
    def learner(n):
        return ActiveLearner(backbone=lambda k, c: SmallCNN(k, c, width=2), num_classes=n, use_aux=True)

    old = learner(2)
    save_checkpoint(tmp_path / "m.ckpt", old, ["cat", "dog"], 1, [], trained=True)
    new = learner(3)
    fresh_row = new.net.linear.weight[0].detach().clone()
    notes = load_checkpoint(tmp_path / "m.ckpt", new, ["bird", "dog", "cat"])
    assert "new: bird" in notes[0]
    w, w_old = new.net.linear.weight.detach(), old.net.linear.weight.detach()
    assert torch.equal(w[1], w_old[1]) and torch.equal(w[2], w_old[0]) and torch.equal(w[0], fresh_row)
    assert torch.equal(new.net.stages[0][0].weight, old.net.stages[0][0].weight)


def test_config_defaults():
    import yaml

    cfg = yaml.safe_load(Path(CONFIG).read_text())
    assert cfg["model"]["backbone"] == {"class_path": "lplgrad.nets.ResNet18", "init_args": {"width": 16}}
    assert cfg["strategy"]["class_path"] == "lplgrad.strategies.LPLgrad" and cfg["model"]["use_aux"]
    assert (cfg["data"]["image_size"], cfg["data"]["grayscale"], cfg["data"]["query_size"]) == (32, False, 20)
    assert cfg["trainer"]["max_epochs"] <= 50 and cfg["data"]["batch_size"] <= 32


def test_datamodule_alone(tmp_path, shapes):
    images, truth = shapes
    labels = tmp_path / "l.csv"
    write_labels(labels, [(p, truth[p]) for p in sorted(truth)[:6]])
    dm = LabelFolderData(str(images), str(labels), image_size=16, batch_size=4)
    dm.setup()
    assert dm.num_classes == 3 and len(dm.files) == len(truth) and len(dm.split.labeled) == 6
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 16, 16) and set(y.tolist()) <= {0, 1, 2}
    x, y = next(iter(dm.pool_dataloader(dm.split.unlabeled()[:3])))
    assert x.shape == (3, 3, 16, 16) and y.tolist() == [-1, -1, -1]


@pytest.mark.parametrize(
    "extra",
    [
        ["--strategy", "lplgrad.strategies.BALD", "--model.head_dropout", "0.5"],
        ["--strategy", "lplgrad.strategies.BatchBALD", "--model.head_dropout", "0.5"],
        ["--strategy", "lplgrad.strategies.ProbCover"],
        ["--strategy", "lplgrad.strategies.VAAL", "--strategy.init_args.width", "4"],
        ["--strategy", "lplgrad.strategies.WAAL", "--model.adversary", "lplgrad.adversary.WAALAdversary"],
    ],
    ids=["BALD", "BatchBALD", "ProbCover", "VAAL", "WAAL"],
)
def test_the_related_methods_propose_in_the_labeling_app(tmp_path, shapes, extra):
    images, truth = shapes
    labels = tmp_path / "labels.csv"
    write_labels(labels, [(p, truth[p]) for p in sorted(truth)[:9]])
    s = run(images, tmp_path / "out", "--labels", str(labels), *extra)
    assert s["mode"] == "trained" and s["strategy"].startswith(extra[1].rsplit(".", 1)[1] + "(")
    proposed = [r["path"] for r in read_to_label(Path(s["round_dir"]))]
    assert len(proposed) == B == len(set(proposed)) and not set(proposed) & set(sorted(truth)[:9])
    assert run(images, tmp_path / "again", "--labels", str(labels), *extra)["proposed"] == proposed  # seeded


def test_bald_without_dropout_is_one_line(tmp_path, shapes, capsys):
    images, truth = shapes
    labels = tmp_path / "labels.csv"
    write_labels(labels, [(p, truth[p]) for p in sorted(truth)[:9]])
    with pytest.raises(SystemExit):
        run(images, tmp_path / "out", "--labels", str(labels), "--strategy", "lplgrad.strategies.BALD")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "set model.head_dropout" in err[0]
