"""The feature cache (docs/features.md): the frozen part of M computed once per image, training and
querying on its rows give what the uncached run gives; the closed-form classifier norms; the cache
is keyed by the images and the frozen weights; both applications and the config run with it."""

import copy
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from helpers import features as H
from helpers.shapes import CLASSES, TINY_LABEL, make_shapes, write_labels
from lplgrad.errors import ConfigError
from lplgrad.gradnorm import combine, per_sample_sq_norms, per_sample_sq_norms_loop
from lplgrad.gradnorm.head import head_only, per_sample_sq_norms_head
from lplgrad.label import cli_main as label_main
from lplgrad.losses import entropy
from lplgrad.nets import ResNet18, TorchvisionNet
from lplgrad.nets.classifier_input import classifier_inputs
from lplgrad.nets.cut import FeatureCut
from lplgrad.query import measure
from lplgrad.strategies import BADGE, VAAL, Coreset, Entropy, LearningLoss, LPLgrad, TypiClust

ROOT = Path(__file__).resolve().parents[1]
CACHED_CONFIG = ROOT / "configs" / "label_folder_pretrained_cached.yaml"
CPU = torch.device("cpu")


@pytest.mark.parametrize("trainable_stages", [1, 0])
def test_cached_training_and_query_equal_the_uncached_ones(trainable_stages, tmp_path):
    plain, plain_dm, plain_losses = H.fit(False, tmp_path / "plain", trainable_stages=trainable_stages)
    cached, cached_dm, cached_losses = H.fit(True, tmp_path / "cached", trainable_stages=trainable_stages)
    assert isinstance(cached.net, FeatureCut) and cached_dm.features["pool"].shape[0] == cached_dm.pool_size
    assert len(plain_losses) == len(cached_losses) > 4
    assert torch.allclose(torch.tensor(cached_losses), torch.tensor(plain_losses), rtol=1e-5, atol=1e-6)
    assert torch.equal(cached_dm.split.labeled, plain_dm.split.labeled)  # the same two queries
    cand = cached_dm.split.candidates(2, 60)
    for strategy in (LPLgrad(), LPLgrad(norm="global"), Entropy(), BADGE(), TypiClust(), Coreset(), LearningLoss()):
        want = measure(plain, strategy, plain_dm.pool_dataloader(cand), CPU)
        got = measure(cached, strategy, cached_dm.pool_dataloader(cand), CPU)
        for w, g in zip(*(m if isinstance(m, tuple) else (m,) for m in (want, got))):
            assert torch.allclose(g, w, rtol=1e-4, atol=1e-6), type(strategy).__name__
    assert list(cached.state_dict()) == list(plain.state_dict())  # checkpoints are an uncached run's


def test_closed_form_classifier_norms_equal_the_batched_and_the_loop():
    torch.manual_seed(0)
    net = ResNet18(5, 3, 4, trainable_stages=0).eval()
    x = torch.randn(7, 3, 16, 16)
    assert head_only(net) and not head_only(ResNet18(5, 3, 4, trainable_stages=1))
    closed = per_sample_sq_norms_head(net, x, entropy)  # (7, 2): the weight's, the bias's
    batched = per_sample_sq_norms(net, x, lambda m, x: entropy(m(x)[0]))
    loop = per_sample_sq_norms_loop(copy.deepcopy(net).double(), x.double(), lambda m, x: entropy(m(x)[0]))
    assert closed.shape == (7, 2)
    assert torch.allclose(closed, batched, rtol=1e-5) and torch.allclose(closed, loop.float(), rtol=1e-4)
    with classifier_inputs(net) as seen, torch.no_grad():
        net(x)
    g_sq, a_sq = closed[:, 1], seen[0].pow(2).sum(1)  # ||g||^2, ||a||^2 with a the classifier's input
    assert torch.allclose(combine(closed, "per_tensor"), g_sq.sqrt() * (a_sq.sqrt() + 1), rtol=1e-5)
    assert torch.allclose(combine(closed, "global"), (g_sq * (a_sq + 1)).sqrt(), rtol=1e-5)
    assert torch.allclose(LPLgrad().measure(SimpleNamespace(net=net), x), combine(batched), rtol=1e-5)


def _cache(dm, net, folder):
    return dm.cache_features(net, CPU, folder)


def test_the_cache_is_reused_and_invalidated_by_the_weights_the_images_and_the_transform(tmp_path, monkeypatch):
    folder = tmp_path / "features"
    net = H.learner(True).net
    calls = []
    import lplgrad.pool_data as pool_data

    real = pool_data.fill_rows
    monkeypatch.setattr(pool_data, "fill_rows", lambda *a: (calls.append(1), real(*a)))
    first = _cache(H.data(True), net, folder)
    assert "computed" in first[1] and "(none yet)" in first[1] and len(calls) == 2  # pool and test
    rows = H.data(True)
    again = _cache(rows, net, folder)
    assert all("reused" in line for line in again[1:]) and len(calls) == 2  # read, not recomputed
    with torch.no_grad():
        net.linear.weight.add_(1.0)  # a trainable weight: the rows do not depend on it
        net.layer4[0].conv1.weight.add_(1.0)
    assert all("reused" in line for line in _cache(H.data(True), net, folder)[1:]) and len(calls) == 2
    with torch.no_grad():
        net.conv1.weight.mul_(1.5)  # a frozen one: they do
    changed = _cache(H.data(True), net, folder)
    assert "frozen part of the backbone" in changed[1] and len(calls) == 4
    shifted = _cache(H.data(True, H.ShiftedDigits()), net, folder)
    assert "the images changed" in shifted[1] and "reused" in shifted[2]  # the test split is the same
    moved = _cache(H.data(True, mean=[0.5]), net, folder)
    assert "the evaluation transform changed" in moved[2]  # the test split: the same images as before
    now = torch.from_file(str(folder / "pool.f32"), shared=False, size=rows.features["pool"].numel())
    assert not torch.equal(now.view_as(rows.features["pool"]), rows.features["pool"])  # rows already read stay as read


def test_rows_give_the_image_outputs_and_chains_that_break_are_refused():
    torch.manual_seed(0)
    net = TorchvisionNet(4, 3, "resnet18", image_size=32, trainable_stages=2)
    cut = FeatureCut(net).eval()
    x = torch.randn(3, 3, 32, 32)
    plan = cut.prepare(x)
    assert plan.first == "model.layer3" and len(plan.stage_widths) == 2
    with torch.no_grad():
        logits, feats = net.eval()(x)
        got, got_feats = cut(cut.features(x))
    assert torch.allclose(got, logits, atol=1e-5) and [f.shape[1] for f in got_feats] == [f.shape[1] for f in feats]
    assert list(cut.state_dict()) == list(net.state_dict())
    with pytest.raises(ConfigError, match="trains every parameter"):
        FeatureCut(ResNet18(4, 3, 4))
    with pytest.raises(ConfigError, match="cannot be cut before s2"):
        FeatureCut(H.Unchained()).prepare(torch.randn(2, 1, 8, 8))


def _label(images, out, labels, *extra):
    return label_main(
        [
            "--config",
            str(ROOT / "configs" / "label_folder.yaml"),
            "--images",
            str(images),
            "--labels",
            str(labels),
            "--out",
            str(out),
            *TINY_LABEL,
            "--data.query_size",
            "6",
            "--data.min_labels",
            "6",
            "--model.backbone.init_args.trainable_stages",
            "0",
            "--data.feature_cache",
            "true",
            *extra,
        ]
    )


def _labels_for(proposed: list[str], truth: dict[str, str]) -> list[tuple[str, str]]:
    """The proposed images' labels, and one image of each class (so that the next round trains)."""
    one_each = {c: p for p, c in sorted(truth.items(), reverse=True)}
    return [(p, truth[p]) for p in dict.fromkeys([*proposed, *one_each.values()])]


def test_a_labelling_round_in_cached_mode(tmp_path, capsys):
    images, out, labels = tmp_path / "shapes", tmp_path / "out", tmp_path / "labels.csv"
    truth = make_shapes(images, n=24)
    first = _label(images, out, labels, "--cold_start", "typiclust")  # TypiClust on the cached embeddings
    said = capsys.readouterr().out
    assert first["mode"] == "cold_start" and len(first["proposed"]) == 6
    assert "Feature cache (pool): computed for 24 images" in said and (out / "features" / "pool.f32").is_file()
    write_labels(labels, _labels_for(first["proposed"], truth))
    second = _label(images, out, labels, "--resume")
    said = capsys.readouterr().out
    assert second["mode"] == "trained" and second["strategy"].startswith("LPLgrad") and len(second["proposed"]) == 6
    assert "Feature cache (pool): reused for 24 images" in said
    assert not set(second["proposed"]) & set(first["proposed"])
    from lplgrad.labeling.trained import load_trained

    tm = load_trained(out)  # the round's network takes images again (predict, export)
    assert not isinstance(tm.net, FeatureCut) and tm.net(torch.zeros(1, 3, 16, 16))[0].shape == (1, len(CLASSES))
    (images / "set_a" / "img_000.png").touch()  # a changed file: its row is computed again
    _label(images, out, labels, "--resume")
    assert "the images changed" in capsys.readouterr().out


def test_cached_mode_refusals_are_one_line(tmp_path, capsys):
    images = tmp_path / "shapes"
    make_shapes(images, n=12)
    for extra, words in (
        (["--model.backbone.init_args.trainable_stages", "null"], "trains every parameter"),
        (["--strategy", "lplgrad.strategies.VAAL"], "VAAL reads the images themselves"),
    ):
        with pytest.raises(SystemExit) as e:
            _label(images, tmp_path / "out", tmp_path / "labels.csv", *extra)
        assert e.value.code == 2
        errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("lplgrad.label: error:")]
        assert len(errors) == 1 and words in errors[0], errors
    assert VAAL.reads_raw_images and not LPLgrad.reads_raw_images


def test_the_cached_labelling_config_runs_tiny(tmp_path):
    """configs/label_folder_pretrained_cached.yaml: a frozen torchvision ResNet-18 (random weights
    written here), the first batch by TypiClust on the cached features, then a trained round."""
    from torchvision.models import resnet18

    images, labels = tmp_path / "shapes", tmp_path / "labels.csv"
    truth = make_shapes(images, n=18)
    weights = tmp_path / "resnet18.pth"
    torch.save(resnet18().state_dict(), weights)
    args = ["--config", str(CACHED_CONFIG), "--images", str(images), "--labels", str(labels)]
    args += ["--out", str(tmp_path / "out"), "--model.backbone.init_args.weights", str(weights)]
    args += ["--model.backbone.init_args.image_size", "32", "--data.image_size", "32", "--trainer.max_epochs", "1"]
    args += ["--data.query_size", "6", "--data.min_labels", "6", "--trainer.accelerator", "cpu"]
    first = label_main(args)
    assert first["mode"] == "cold_start" and first["strategy"].startswith("TypiClust")
    write_labels(labels, _labels_for(first["proposed"], truth))
    second = label_main(args + ["--resume"])
    assert second["mode"] == "trained" and len(second["proposed"]) == 6
