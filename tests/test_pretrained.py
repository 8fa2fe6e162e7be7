"""Pretrained backbones end to end: the transfer study's configs on real Fashion-MNIST, the
pretrained examples on data in its real format with weights files written here, the labeling
app with a torchvision backbone (TypiClust cold start, then trained), and the one-line error when
weights are neither on disk nor downloadable."""

from pathlib import Path

import pytest
import torch

from lplgrad.cli import cli_main
from helpers import synthetic
from helpers.fashion import require_fashion_mnist
from lplgrad.label import cli_main as label_main
from lplgrad.records import read_rounds
from helpers.shapes import make_shapes, write_labels
from helpers.records import rounds_of

ROOT = Path(__file__).resolve().parents[1]
C = ROOT / "configs"
TINY = [
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.enable_model_summary",
    "false",
    "--trainer.accelerator",
    "cpu",
    "--data.num_workers",
    "0",
    "--trainer.callbacks.embedding_points",
    "8",
]
ARMS = [
    "transfer/arms/scratch_lplgrad.yaml",
    "transfer/arms/scratch_random.yaml",
    "transfer/arms/pretrained_lplgrad.yaml",
    "transfer/arms/pretrained_random.yaml",
    "transfer/arms/pretrained_typiclust_badge.yaml",
]


@pytest.fixture(scope="module")
def pretrained_ckpt(tmp_path_factory) -> Path:
    """configs/transfer/pretrain.yaml, tiny: 60 images of classes 0-4, one epoch."""
    require_fashion_mnist()
    logs = tmp_path_factory.mktemp("pretrain")
    cli_main(
        [
            "fit",
            "--config",
            str(C / "fashion_mnist.yaml"),
            "--config",
            str(C / "transfer/pretrain.yaml"),
            "--trainer.logger.init_args.save_dir",
            str(logs),
            *TINY,
            "--model.backbone.init_args.width",
            "4",
            "--data.initial_size",
            "60",
            "--data.budget",
            "60",
            "--data.test_size",
            "50",
            "--loop.epochs_per_round",
            "1",
        ]
    )
    rows = read_rounds(logs / "fmnist_0-4" / "pretrain" / "rounds.jsonl")
    assert [r["labeled"] for r in rows] == [60]
    return logs / "fmnist_0-4" / "pretrain" / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("arm", ARMS)
def test_transfer_arm_runs_tiny(arm, pretrained_ckpt, tmp_path):
    args = [
        "fit",
        "--config",
        str(C / "fashion_mnist.yaml"),
        "--config",
        str(C / "transfer/al.yaml"),
        "--config",
        str(C / arm),
        "--trainer.logger.init_args.save_dir",
        str(tmp_path),
        *TINY,
        "--model.backbone.init_args.width",
        "4",
        "--data.initial_size",
        "6",
        "--data.query_size",
        "6",
        "--data.subset_size",
        "40",
        "--data.budget",
        "18",
        "--data.test_size",
        "40",
        "--loop.epochs_per_round",
        "1",
    ]
    if "pretrained" in arm:
        args += ["--model.backbone.init_args.weights", str(pretrained_ckpt)]
    cli = cli_main(args)
    dm, net = cli.datamodule, cli.model.net
    assert dm.num_classes == 5 and set(dm.pool.targets.tolist()) == set(range(5))  # classes 5-9, relabelled
    assert net.pretrained == ("pretrained" in arm)
    if net.pretrained:  # the backbone is the pretraining's, the classifier new
        saved = torch.load(pretrained_ckpt, weights_only=False)["state_dict"]
        assert not torch.equal(net.conv1.weight.detach(), torch.zeros_like(net.conv1.weight))
        assert net.conv1.weight.shape == saved["net.conv1.weight"].shape
    rows = rounds_of(tmp_path, "fmnist_5-9")
    assert [r["labeled"] for r in rows] == [6, 12, 18]


def save_random_weights(model: torch.nn.Module, path: Path) -> Path:
    torch.save(model.state_dict(), path)
    return path


def test_pretrained_caltech_example(tmp_path):
    """configs/pretrained/caltech101_resnet18.yaml with a local weights file (no download here)."""
    from torchvision.models import resnet18

    synthetic.write_caltech101(tmp_path / "data", per_class=2)
    weights = save_random_weights(resnet18(), tmp_path / "resnet18.pth")
    with synthetic.checksums_skipped():
        cli = cli_main(
            [
                "fit",
                "--config",
                str(C / "caltech101.yaml"),
                "--config",
                str(C / "pretrained/caltech101_resnet18.yaml"),
                "--data.dataset.init_args.root",
                str(tmp_path / "data"),
                "--data.dataset.init_args.download",
                "false",
                "--model.backbone.init_args.weights",
                str(weights),
                "--model.backbone.init_args.image_size",
                "32",
                "--data.image_size",
                "32",
                "--trainer.logger.init_args.save_dir",
                str(tmp_path / "logs"),
                *TINY,
                "--data.initial_size",
                "8",
                "--data.query_size",
                "4",
                "--data.subset_size",
                "12",
                "--data.budget",
                "12",
                "--data.batch_size",
                "4",
                "--data.test_size",
                "16",
                "--loop.epochs_per_round",
                "1",
            ]
        )
    net = cli.model.net
    assert net.head.out_features == 101 and net.pretrained
    assert torch.equal(net.model.layer1[0].conv1.weight.detach(), torch.load(weights)["layer1.0.conv1.weight"])
    assert [n for n, p in net.named_parameters() if p.requires_grad][0].startswith("model.layer3.")  # 2 stages + head


def test_pretrained_cdd_vit_example(tmp_path):
    """configs/pretrained/cdd_vit_tiny.yaml (timm) with a local weights file."""
    timm = pytest.importorskip("timm")
    synthetic.write_image_folder(tmp_path / "cdd", classes=6, per_class=4)
    weights = tmp_path / "vit.pth"
    save_random_weights(timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8), weights)
    cli = cli_main(
        [
            "fit",
            "--config",
            str(C / "cdd.yaml"),
            "--config",
            str(C / "pretrained/cdd_vit_tiny.yaml"),
            "--data.dataset.init_args.root",
            str(tmp_path / "cdd"),
            "--model.backbone.init_args.weights",
            str(weights),
            "--model.backbone.init_args.image_size",
            "32",
            "--model.backbone.init_args.model_args",
            "{patch_size: 8}",
            "--data.image_size",
            "32",
            "--trainer.logger.init_args.save_dir",
            str(tmp_path / "logs"),
            *TINY,
            "--data.initial_size",
            "8",
            "--data.query_size",
            "4",
            "--data.subset_size",
            "12",
            "--data.budget",
            "12",
            "--data.batch_size",
            "4",
            "--loop.epochs_per_round",
            "1",
        ]
    )
    assert cli.model.net.head.out_features == 6 and cli.model.net.feature_channels == [192] * 4


def test_missing_weights_offline_is_one_line_naming_the_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # an empty cache
    from torchvision.models import _api

    def offline(*a, **k):  # as on a machine without internet, whatever this one has
        raise OSError("network is unreachable")

    monkeypatch.setattr(_api, "load_state_dict_from_url", offline)
    with pytest.raises(SystemExit) as e:
        cli_main(
            [
                "fit",
                "--config",
                str(ROOT / "configs/digits.yaml"),
                "--model.backbone",
                "lplgrad.nets.TorchvisionNet",
                "--model.backbone.init_args.weights",
                "IMAGENET1K_V1",
                "--trainer.logger.init_args.save_dir",
                str(tmp_path / "logs"),
            ]
        )
    assert e.value.code == 2
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("lplgrad: error:")]
    assert "resnet18-f37072fd.pth" in line and str(tmp_path / "torch_home") in line and "download.pytorch.org" in line


def test_labeling_with_a_pretrained_torchvision_backbone(tmp_path, capsys):
    """configs/label_folder_pretrained.yaml: TypiClust picks the first batch from the pretrained
    features, then the network trains on the labels and LPLgrad proposes."""
    from torchvision.models import resnet18

    images = tmp_path / "shapes"
    truth = make_shapes(images, n=30)
    weights = save_random_weights(resnet18(), tmp_path / "resnet18.pth")
    args = [
        "--config",
        str(C / "label_folder_pretrained.yaml"),
        "--images",
        str(images),
        "--labels",
        str(tmp_path / "labels.csv"),
        "--out",
        str(tmp_path / "out"),
        "--model.backbone.init_args.weights",
        str(weights),
        "--model.backbone.init_args.image_size",
        "32",
        "--data.image_size",
        "32",
        "--trainer.max_epochs",
        "1",
        "--data.query_size",
        "8",
        "--data.min_labels",
        "6",
    ]
    first = label_main(args)
    assert first["mode"] == "cold_start" and first["strategy"].startswith("TypiClust") and len(first["proposed"]) == 8
    assert "TypiClust" in capsys.readouterr().out
    write_labels(tmp_path / "labels.csv", [(p, truth[p]) for p in first["proposed"]])
    second = label_main(args + ["--resume"])
    assert second["mode"] == "trained" and second["strategy"].startswith("LPLgrad")
    assert not set(second["proposed"]) & set(first["proposed"])
