"""The model in use after labeling: python -m lplgrad.predict (a CSV for a folder) and python -m
lplgrad.export (TorchScript and ONNX), on a tiny labeling run over the shapes folder."""

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image
from torchvision import transforms as T

from helpers.shapes import CLASSES, make_shapes, run, write_labels
from lplgrad.export import cli_main as export_main
from lplgrad.labeling.trained import input_spec, load_trained
from lplgrad.module import ActiveLearner
from lplgrad.nets import ResNet18
from lplgrad.predict import cli_main as predict_main

#: not the labeling app's defaults, so that the rebuilt network must read them from the round
MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
TOLERANCE = 1e-4  # max abs difference of probabilities, as docs/labeling.md states


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """One trained labeling round (width-2 ResNet-18, 16x16 RGB, 1 epoch) over 39 shapes and a corrupt PNG."""
    root = tmp_path_factory.mktemp("labelled")
    truth = make_shapes(root / "shapes")
    write_labels(root / "labels.csv", [(p, truth[p]) for p in sorted(truth)[:12]])
    summary = run(
        root / "shapes",
        root / "out",
        "--labels",
        str(root / "labels.csv"),
        "--classes",
        ",".join(CLASSES),
        "--data.mean",
        json.dumps(list(MEAN)),
        "--data.std",
        json.dumps(list(STD)),
    )
    assert summary["mode"] == "trained"
    return root / "shapes", root / "out", truth


def reference_probs(out: Path, images: Path, paths: list[str]) -> torch.Tensor:
    """The round's network built by hand (as docs/labeling.md shows), on the images normalised by hand."""
    ckpt = torch.load(out / "round_001" / "model.ckpt", weights_only=True)
    learner = ActiveLearner(backbone=lambda k, c: ResNet18(k, c, width=2), num_classes=len(CLASSES))
    learner.load_state_dict(ckpt["state_dict"])
    prep = T.Compose([T.Resize((16, 16)), T.ToTensor(), T.Normalize(MEAN, STD)])
    x = torch.stack([prep(Image.open(images / p).convert("RGB")) for p in paths])
    with torch.no_grad():
        return torch.softmax(learner.eval()(x), 1)


def unit_images(images: Path, paths: list[str]) -> torch.Tensor:
    """The exported models' input: resized, in [0, 1], not normalised."""
    prep = T.Compose([T.Resize((16, 16)), T.ToTensor()])
    return torch.stack([prep(Image.open(images / p).convert("RGB")) for p in paths])


def read_csv(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as f:
        r = csv.DictReader(f)
        return list(r.fieldnames), list(r)


def test_predict_writes_a_row_per_readable_image(labelled, tmp_path, capsys):
    images, out, truth = labelled
    summary = predict_main(
        ["--run", str(out), "--images", str(images), "--csv", str(tmp_path / "p.csv"), "--batch_size", "7"]
    )
    console = capsys.readouterr().out
    header, rows = read_csv(tmp_path / "p.csv")
    assert header[:3] == ["path", "predicted", "probability"] and len(header) == 3 + 2 * 3
    assert [r["path"] for r in rows] == sorted(truth)  # every readable image once, in folder order
    assert summary["predicted"] == len(truth) and summary["skipped"][0]["path"] == "set_a/broken.png"
    assert "Skipped 1 unreadable image" in console and "set_a/broken.png" in console
    ref = reference_probs(out, images, [r["path"] for r in rows])
    for r, p in zip(rows, ref):
        top = [float(r[f"top{k}_probability"]) for k in (1, 2, 3)]
        assert r["predicted"] in CLASSES and {r[f"top{k}_class"] for k in (1, 2, 3)} == set(CLASSES)
        assert r["predicted"] == r["top1_class"] == CLASSES[int(p.argmax())]
        assert float(r["probability"]) == top[0] and top == sorted(top, reverse=True)
        assert sum(top) <= 1 + 1e-5 and sum(top) == pytest.approx(1, abs=1e-5)
        assert float(r["probability"]) == pytest.approx(float(p.max()), abs=1e-6)


def test_top_k_is_clipped_and_one_column_pair_per_class(labelled, tmp_path):
    images, out, _ = labelled
    predict_main(
        [
            "--run",
            str(out / "round_001" / "model.ckpt"),
            "--images",
            str(images),
            "--csv",
            str(tmp_path / "a.csv"),
            "--top_k",
            "1",
        ]
    )
    header, rows = read_csv(tmp_path / "a.csv")
    assert header == ["path", "predicted", "probability", "top1_class", "top1_probability"]
    assert all(float(r["probability"]) <= 1 for r in rows)
    predict_main(
        ["--run", str(out / "round_001"), "--images", str(images), "--csv", str(tmp_path / "b.csv"), "--top_k", "9"]
    )
    assert read_csv(tmp_path / "b.csv")[0][-1] == "top3_probability"


def test_export_matches_pytorch_on_real_images(labelled, tmp_path, capsys):
    import onnxruntime as ort  # the export extra: missing here is a failure, not a skip

    images, out, truth = labelled
    spec = export_main(["--run", str(out), "--out", str(tmp_path / "exp")])
    console = capsys.readouterr().out
    assert "TorchScript" in console and "ONNX (onnxruntime)" in console and "8 images of" in console
    on_disk = json.loads((tmp_path / "exp" / "model.json").read_text())
    assert on_disk == spec and on_disk["classes"] == list(CLASSES)
    assert on_disk["input"]["shape"] == ["batch", 3, 16, 16] and on_disk["input"]["range"] == [0.0, 1.0]
    assert on_disk["input"]["mean"] == pytest.approx(MEAN) and on_disk["input"]["std"] == pytest.approx(STD)
    assert on_disk["output"]["name"] == "probabilities" and on_disk["output"]["shape"] == ["batch", 3]
    assert all(0 <= d <= TOLERANCE for d in on_disk["check"]["max_abs_diff"].values())

    paths = sorted(truth)
    ref, x = reference_probs(out, images, paths), unit_images(images, paths)
    scripted = torch.jit.load(str(tmp_path / "exp" / "model.pt"))
    session = ort.InferenceSession(str(tmp_path / "exp" / "model.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        assert (scripted(x) - ref).abs().max() <= TOLERANCE
        assert (scripted(x[:5]) - ref[:5]).abs().max() <= TOLERANCE
    for part in (slice(None), slice(0, 5), slice(7, 8)):  # the batch axis is dynamic
        got = torch.from_numpy(session.run(["probabilities"], {"image": x[part].numpy()})[0])
        assert got.shape == ref[part].shape and (got - ref[part]).abs().max() <= TOLERANCE


def test_export_that_disagrees_leaves_nothing(labelled, tmp_path, capsys, monkeypatch):
    import lplgrad.labeling.export as export

    images, out, _ = labelled
    monkeypatch.setattr(export, "max_differences", lambda *a: {"torchscript": 0.0, "onnxruntime": 0.5})
    with pytest.raises(SystemExit) as e:
        export_main(["--run", str(out), "--out", str(tmp_path / "exp"), "--images", str(images)])
    assert e.value.code == 6
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the onnxruntime model's probabilities differ" in err[0]
    assert list((tmp_path / "exp").iterdir()) == []


def test_a_pretrained_weights_setting_is_not_loaded_again(labelled, tmp_path):
    _, out, _ = labelled
    rdir = tmp_path / "round_001"
    shutil.copytree(out / "round_001", rdir)
    config = yaml.safe_load((rdir / "config.yaml").read_text())
    config["model"]["backbone"]["init_args"]["weights"] = str(tmp_path / "gone.pth")  # offline, moved, ...
    (rdir / "config.yaml").write_text(yaml.safe_dump(config))
    tm = load_trained(rdir)
    assert tm.classes == list(CLASSES) and tm.spec.mean == MEAN and tm.spec.image_size == 16
    assert not tm.net.training


def test_input_spec_has_the_labeling_apps_defaults():
    gray = input_spec({"grayscale": True, "image_size": 24, "mean": None, "std": None})
    assert (gray.channels, gray.mode, gray.image_size, gray.mean, gray.std) == (1, "L", 24, (0.5,), (0.5,))
    rgb = input_spec({"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "max_pixels": None})
    assert (rgb.channels, rgb.mode, rgb.image_size, rgb.std, rgb.max_pixels) == (
        3,
        "RGB",
        32,
        (0.229, 0.224, 0.225),
        None,
    )
    img = Image.new("L", (40, 30), 255)
    assert gray.transform(img).shape == gray.unit_transform(img).shape == (1, 24, 24)
    assert gray.unit_transform(img).max() == 1 and gray.transform(img).max() == 1  # (1 - 0.5) / 0.5


def untrained(out: Path, dst: Path) -> Path:
    """The round as a cold start would have saved it: the same files, ``trained`` false."""
    shutil.copytree(out / "round_001", dst)
    state = torch.load(dst / "model.ckpt", weights_only=True)
    torch.save({**state, "trained": False}, dst / "model.ckpt")
    return dst


def failures(out: Path, images: Path, tmp: Path) -> dict[str, tuple[list[str], str]]:
    """Each expected failure: (command line, what its one line says)."""
    (tmp / "empty").mkdir()
    (tmp / "broken").mkdir()
    shutil.copy(images / "set_a" / "broken.png", tmp / "broken")
    (tmp / "lonely").mkdir()
    shutil.copy(out / "round_001" / "model.ckpt", tmp / "lonely")
    (tmp / "fake.ckpt").write_text("not a checkpoint")
    return {
        "no checkpoint": (["--run", str(tmp / "empty")], "no round_NNN/model.ckpt there"),
        "no such run": (["--run", str(tmp / "nowhere")], "no such file or folder"),
        "untrained": (["--run", str(untrained(out, tmp / "cold"))], "holds an untrained network"),
        "not a checkpoint": (["--run", str(tmp / "fake.ckpt")], "is not a checkpoint written by"),
        "no config": (["--run", str(tmp / "lonely")], "config.yaml cannot be read"),
        "empty folder": (["--run", str(out), "--images", str(tmp / "empty")], "no image in"),
        "no folder": (["--run", str(out), "--images", str(tmp / "nowhere")], "does not exist"),
        "all unreadable": (["--run", str(out), "--images", str(tmp / "broken")], "none of the 1 images"),
        "bad option": (["--run", str(out), "--top_k", "x"], "top_k"),
        "bad size": (["--run", str(out), "--batch_size", "0"], "--batch_size must be positive"),
    }


def test_every_expected_failure_is_one_line(labelled, tmp_path, capsys):
    images, out, _ = labelled
    for name, (args, says) in failures(out, images, tmp_path).items():
        if "--images" not in args:
            args = [*args, "--images", str(images)]
        with pytest.raises(SystemExit) as e:
            predict_main([*args, "--csv", str(tmp_path / "p.csv")])
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and len(err) == 1, (name, err)
        assert err[0].startswith("lplgrad.predict: error: ") and says in err[0], (name, err)
    assert not (tmp_path / "p.csv").exists()
    for args, says in [
        (["--run", str(tmp_path / "empty")], "no round_NNN/model.ckpt there"),
        (["--run", str(tmp_path / "cold")], "holds an untrained network"),
        (["--run", str(out), "--tolerance", "-1"], "--tolerance must be 0 or more"),
    ]:
        with pytest.raises(SystemExit) as e:
            export_main([*args, "--out", str(tmp_path / "exp")])
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and len(err) == 1 and err[0].startswith("lplgrad.export: error: ") and says in err[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the line for a machine without CUDA")
def test_cuda_without_a_gpu_is_one_line(labelled, tmp_path, capsys):
    images, out, _ = labelled
    with pytest.raises(SystemExit) as e:
        predict_main(["--run", str(out), "--images", str(images), "--device", "cuda"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "no CUDA device here" in err[0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_predict_on_cuda_agrees_with_the_cpu(labelled, tmp_path):
    images, out, _ = labelled
    for device in ("cpu", "cuda"):
        predict_main(
            ["--run", str(out), "--images", str(images), "--csv", str(tmp_path / f"{device}.csv"), "--device", device]
        )
    cpu, gpu = (read_csv(tmp_path / f"{d}.csv")[1] for d in ("cpu", "cuda"))
    assert [r["path"] for r in cpu] == [r["path"] for r in gpu]
    assert max(abs(float(a["probability"]) - float(b["probability"])) for a, b in zip(cpu, gpu)) <= TOLERANCE
