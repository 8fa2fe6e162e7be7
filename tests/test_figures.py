"""The per-round figures in TensorBoard (RoundFigures), the query progress bar, the PNG export."""

import importlib.util
import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from lplgrad.callbacks import QueryProgressBar
from lplgrad.callbacks.figures import class_tags
from lplgrad.cli import cli_main
from lplgrad.records import read_rounds
from helpers.tiny import tiny_fit_args
from helpers.records import the_run

ROOT = Path(__file__).resolve().parents[1]
STEPS = [20, 35, 50]  # labeled-set sizes of the three rounds
QUERY_STEPS = [20, 35]  # the rounds that made a query
POINTS = 40


def events(run: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(
        str(run), size_guidance={"scalars": 0, "images": 0, "histograms": 0, "tensors": 0, "compressedHistograms": 0}
    )
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same tiny experiment with every figure on, and with every switch off."""
    out = {}
    for name, extra in (
        ("on", []),
        (
            "off",
            [
                "--trainer.callbacks.embeddings",
                "false",
                "--trainer.callbacks.images",
                "false",
                "--trainer.callbacks.confidence",
                "false",
            ],
        ),
    ):
        save = tmp_path_factory.mktemp(name)
        cli = cli_main(tiny_fit_args(save, "--trainer.callbacks.embedding_points", str(POINTS), *extra))
        run = the_run(save)
        out[name] = SimpleNamespace(cli=cli, run=run, acc=events(run))
    return out


def test_scalars_per_class_and_class_balance_every_round(runs):
    r = runs["on"]
    dm = r.cli.datamodule
    tags = r.acc.Tags()["scalars"]
    names = class_tags(dm.dataset.class_names())
    for name in names:
        for prefix in ("al/per_class_acc/", "al/class_balance/"):
            assert f"{prefix}{name}" in tags
            assert [e.step for e in r.acc.Scalars(f"{prefix}{name}")] == STEPS
    # class balance = counts of the set each round trained on: sums to the step, first is the initial set
    for i, step in enumerate(STEPS):
        counts = [r.acc.Scalars(f"al/class_balance/{n}")[i].value for n in names]
        assert sum(counts) == step
    initial = torch.bincount(dm.labels(dm.split.labeled[:20]), minlength=10).tolist()
    assert [r.acc.Scalars(f"al/class_balance/{n}")[0].value for n in names] == initial
    # per-class accuracies are the loop's torchmetrics values, their support-weighted mean the accuracy
    test_y = torch.tensor([int(y) for _, y in dm.test_view])
    support = torch.bincount(test_y, minlength=10).double()
    acc = {e.step: e.value for e in r.acc.Scalars("al/test_acc")}
    for i, step in enumerate(STEPS):
        per = torch.tensor([r.acc.Scalars(f"al/per_class_acc/{n}")[i].value for n in names]).double()
        assert float((per * support).sum() / support.sum()) == pytest.approx(acc[step], abs=1e-5)


def test_histograms_every_round(runs):
    r = runs["on"]
    tags = r.acc.Tags()["histograms"]
    expect = {
        "al/confidence/labeled": STEPS,
        "al/confidence/candidates": STEPS,
        "al/confidence/selected": QUERY_STEPS,
        "al/scores/all": QUERY_STEPS,
        "al/scores/selected": QUERY_STEPS,
        "al/scores/rest": QUERY_STEPS,
    }
    for tag, steps in expect.items():
        assert tag in tags
        assert [e.step for e in r.acc.Histograms(tag)] == steps, tag
    counts = lambda tag: [e.histogram_value.num for e in r.acc.Histograms(tag)]  # noqa: E731
    assert counts("al/confidence/labeled") == STEPS  # the set each round trained on
    assert counts("al/confidence/candidates") == [60, 60, 60]
    assert counts("al/confidence/selected") == [15, 15]
    assert counts("al/scores/all") == [60, 60]
    assert counts("al/scores/rest") == [45, 45]
    for e in r.acc.Histograms("al/confidence/candidates"):
        assert 0.0 < e.histogram_value.min <= e.histogram_value.max <= 1.0
    # the picked samples' scores are the top ones
    for sel, rest in zip(r.acc.Histograms("al/scores/selected"), r.acc.Histograms("al/scores/rest")):
        assert sel.histogram_value.min >= rest.histogram_value.max


def test_images_every_round_decode_as_png(runs):
    r = runs["on"]
    expect = {
        "figures/per_class_acc": STEPS,
        "figures/confusion_matrix": STEPS,
        "figures/class_balance": STEPS,
        "figures/confidence": STEPS,
        "figures/scores": QUERY_STEPS,
    }
    assert set(r.acc.Tags()["images"]) == set(expect)
    for tag, steps in expect.items():
        imgs = r.acc.Images(tag)
        assert [e.step for e in imgs] == steps, tag
        for e in imgs:
            im = Image.open(io.BytesIO(e.encoded_image_string))
            assert im.format == "PNG" and im.size == (e.width, e.height)
            assert im.size[0] >= 300 and im.size[1] >= 250
            px = np.asarray(im.convert("RGB"))
            assert px.std() > 10  # something is drawn


def test_projector_files_per_round(runs):
    r = runs["on"]
    cfg = (r.run / "projector_config.pbtxt").read_text()
    dm = r.cli.datamodule
    names = dm.dataset.class_names()
    for rnd, step in enumerate(STEPS):
        d = r.run / f"{step:05d}" / f"round_{rnd:02d}"
        assert f'tensor_name: "round_{rnd:02d}:{step:05d}"' in cfg
        assert f'tensor_path: "{step:05d}/round_{rnd:02d}/tensors.tsv"' in cfg
        vectors = np.loadtxt(d / "tensors.tsv", delimiter="\t", ndmin=2)
        assert vectors.shape == (POINTS, 8 * 4)  # SmallCNN width 4: 32 pooled features
        meta = (d / "metadata.tsv").read_text().splitlines()
        assert meta[0].split("\t") == ["label", "prediction", "correct", "test_index"]
        assert len(meta) == POINTS + 1
        for row in meta[1:]:  # the metadata's labels are the test images' labels
            label, pred, correct, pos = row.split("\t")
            assert label == names[dm.test_view[int(pos)][1]] and (correct == "yes") == (label == pred)
        sprite = Image.open(d / "sprite.png")
        assert sprite.size[0] == sprite.size[1] >= 7 * 8  # ceil(sqrt(40)) = 7 thumbnails a side
    # the same fixed sample of test images every round
    positions = [
        [
            ln.split("\t")[3]
            for ln in (r.run / f"{s:05d}" / f"round_{i:02d}" / "metadata.tsv").read_text().splitlines()[1:]
        ]
        for i, s in enumerate(STEPS)
    ]
    assert positions[0] == positions[1] == positions[2]


def test_switches_off_and_figures_do_not_change_the_run(runs):
    on, off = runs["on"], runs["off"]
    assert not (off.run / "projector_config.pbtxt").exists()
    assert not any(p.is_dir() and p.name.isdigit() for p in off.run.iterdir())
    tags = off.acc.Tags()
    assert tags["images"] == []
    assert sorted(tags["histograms"]) == ["al/scores/all", "al/scores/rest", "al/scores/selected"]  # cheap: stay
    assert "al/per_class_acc/0" in tags["scalars"]  # scalars stay
    # same selections and accuracies with or without figures: the run's random streams are untouched
    a, b = read_rounds(on.run / "rounds.jsonl"), read_rounds(off.run / "rounds.jsonl")
    assert [r["queried"] for r in a] == [r["queried"] for r in b]
    assert [r["test_acc"] for r in a] == [r["test_acc"] for r in b]


def test_progress_bar_totals_in_a_run(runs):
    (bar,) = [cb for cb in runs["on"].cli.trainer.callbacks if isinstance(cb, QueryProgressBar)]
    assert bar.finished == [("candidates", 60, 60), ("candidates", 60, 60)]
    assert bar.bar is None  # progress bars disabled: none was shown


def test_export_script_writes_every_kind(runs, tmp_path):
    spec = importlib.util.spec_from_file_location("export_figures", ROOT / "scripts" / "export_figures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    written = mod.main([str(runs["on"].run), "--out", str(tmp_path)])
    assert sorted(p.name for p in written) == sorted(
        ["per_class_acc.png", "confusion_matrix.png", "class_balance.png", "confidence.png", "scores.png", "tsne.png"]
    )
    for p in written:
        assert Image.open(p).format == "PNG"
    assert mod.pick_rounds(list(range(10)), None) == [0, 3, 6, 9]


# ---- the progress bar, driven directly -------------------------------------------------------
def fake_trainer(bar, rank0=True):
    return SimpleNamespace(is_global_zero=rank0, progress_bar_callback=bar)


def test_progress_bar_shows_totals_and_counts(capsys):
    from lightning.pytorch.callbacks import TQDMProgressBar

    cb = QueryProgressBar()
    module = SimpleNamespace(round_index=3)
    trainer = fake_trainer(TQDMProgressBar())
    cb.on_query_start(trainer, module, 100, "candidates")
    assert cb.bar is not None and cb.bar.total == 100
    for n in (32, 32, 32, 4):
        cb.on_query_progress(trainer, module, n)
    assert cb.bar.n == 100
    cb.on_query_end(trainer, module)
    assert cb.bar is None
    cb.on_query_start(trainer, module, 7, "labeled")
    cb.on_query_progress(trainer, module, 7)
    cb.on_query_end(trainer, module)
    assert cb.finished == [("candidates", 100, 100), ("labeled", 7, 7)]
    out = capsys.readouterr().out
    assert "Round 3 query (candidates)" in out and "Round 3 query (labeled)" in out


@pytest.mark.parametrize("case", ["no progress bar", "refresh 0", "disabled", "other rank"])
def test_progress_bar_hidden(case):
    from lightning.pytorch.callbacks import TQDMProgressBar

    bar = TQDMProgressBar(refresh_rate=0 if case == "refresh 0" else 1)
    if case == "disabled":
        bar.disable()
    cb = QueryProgressBar()
    trainer = fake_trainer(None if case == "no progress bar" else bar, rank0=case != "other rank")
    cb.on_query_start(trainer, SimpleNamespace(), 10, "candidates")
    assert cb.bar is None
    cb.on_query_progress(trainer, SimpleNamespace(), 10)
    cb.on_query_end(trainer, SimpleNamespace())
    assert cb.finished == ([] if case == "other rank" else [("candidates", 10, 10)])


# ---- resume: the projector keeps the rounds an earlier process logged -------------------------
def test_projector_config_survives_a_new_writer(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    from lplgrad.projector import add_embedding, read_entries

    first = SummaryWriter(str(tmp_path))
    add_embedding(first, torch.randn(5, 3), [["a"]] * 5, torch.rand(5, 3, 8, 8), 20, "round_00", ["l"], [])
    first.close()
    second = SummaryWriter(str(tmp_path))  # a resumed run: a new process, a new writer
    earlier = read_entries(tmp_path)  # what the callback reads once per process
    add_embedding(second, torch.randn(5, 3), [["b"]] * 5, torch.rand(5, 3, 8, 8), 35, "round_01", ["l"], earlier)
    add_embedding(second, torch.randn(5, 3), [["c"]] * 5, torch.rand(5, 3, 8, 8), 35, "round_01", ["l"], earlier)
    second.close()
    cfg = (tmp_path / "projector_config.pbtxt").read_text()
    assert cfg.count("tensor_name") == 2
    assert '"round_00:00020"' in cfg and '"round_01:00035"' in cfg
    assert (tmp_path / "00035" / "round_01" / "metadata.tsv").read_text().splitlines()[1] == "c"


def test_class_tags_are_tag_safe_and_unique():
    assert class_tags(["T-shirt/top", "Ankle boot", "a b", "a/b"]) == ["T-shirt_top", "Ankle_boot", "a_b_2", "a_b_3"]
