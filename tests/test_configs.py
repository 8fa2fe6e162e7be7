"""Every YAML in configs/ parses, instantiates and runs a tiny experiment on data in its real format."""

from pathlib import Path

import pytest

from helpers import synthetic
from lplgrad.cli import cli_main
from lplgrad.records import read_rounds
from helpers.records import the_run

ROOT = Path(__file__).resolve().parents[1]
# configs run tiny by other tests: other entry points, and overlays that need weights or a pretraining
OTHER_TESTS = {
    "label_folder.yaml": "tests/helpers/shapes.py",  # python -m lplgrad.label (tests/test_labeling*.py)
    "label_folder_pretrained.yaml": "tests/test_pretrained.py",
    "label_folder_pretrained_cached.yaml": "tests/test_feature_cache.py",
    "pretrained/": "tests/test_pretrained.py",
    "transfer/": "tests/test_pretrained.py",
    "pretrain/": "tests/test_pretrain.py",  # python -m lplgrad pretrain
    "compare/": "tests/test_compare_sweep.py",  # arms of python -m lplgrad.compare
    "ssl_study/": "tests/test_ssl_study.py",  # arms that start from a pretrained weights file
}
ALL_CONFIGS = sorted(p.relative_to(ROOT / "configs").as_posix() for p in (ROOT / "configs").rglob("*.yaml"))
CONFIGS = [c for c in ALL_CONFIGS if not any(c == k or (k.endswith("/") and c.startswith(k)) for k in OTHER_TESTS)]

WRITERS = {
    "cifar10": synthetic.write_cifar10,
    "cifar100": synthetic.write_cifar100,
    "svhn": synthetic.write_svhn,
    "caltech101": synthetic.write_caltech101,
    "cdd": synthetic.write_image_folder,
}
EXPECTED_CLASSES = {
    "cifar10": 10,
    "cifar100": 100,
    "svhn": 10,
    "caltech101": 101,
    "cdd": 6,
    "fashion_mnist": 10,
    "digits": 10,
}


@pytest.fixture
def no_checksums():
    """The fake files have the real layout but not the real bytes: skip torchvision's MD5 check."""
    with synthetic.checksums_skipped():
        yield


def test_all_configs_are_covered():
    tops = {c for c in CONFIGS if "/" not in c}
    assert tops == {f"{n}.yaml" for n in EXPECTED_CLASSES}
    assert {c for c in CONFIGS if "/" in c} == {f"low_budget/{n}.yaml" for n in WRITERS}
    others = [c for c in ALL_CONFIGS if c not in CONFIGS]
    for config in others:  # each named in the test that runs it
        test = next(t for k, t in OTHER_TESTS.items() if config == k or (k.endswith("/") and config.startswith(k)))
        assert config in (ROOT / test).read_text(), (config, test)


@pytest.mark.parametrize("config", CONFIGS)
def test_config_runs_tiny(config, tmp_path, no_checksums):
    name = Path(config).stem
    files = [str(ROOT / "configs" / f"{name}.yaml")]
    if config.startswith("low_budget/"):
        files.append(str(ROOT / "configs" / config))
    args = ["fit"]
    for f in files:
        args += ["--config", f]
    if name in WRITERS:
        WRITERS[name](tmp_path / "data")
        args += ["--data.dataset.init_args.root", str(tmp_path / "data")]
        if name != "cdd":
            args += ["--data.dataset.init_args.download", "false"]
    args += [
        "--trainer.logger.init_args.save_dir",
        str(tmp_path / "logs"),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        "--trainer.accelerator",
        "cpu",
        "--data.initial_size",
        "8",
        "--data.query_size",
        "4",
        "--data.subset_size",
        "12",
        "--data.budget",
        "12",
        "--data.num_workers",
        "0",
        "--data.batch_size",
        "4",
        "--data.test_size",
        "16",
        "--loop.epochs_per_round",
        "1",
    ]
    args += ["--model.backbone.init_args.width", "2"]
    cli = cli_main(args)
    assert cli.model.net.linear.out_features == EXPECTED_CLASSES[name]
    run = the_run(tmp_path / "logs")
    rows = read_rounds(run / "rounds.jsonl")
    assert [r["labeled"] for r in rows] == [8, 12]


def test_paper_numbers_are_exact():
    """docs/method.md §6: b, S, A per dataset (high and low budget), epochs, lr and milestone."""
    import yaml

    spec = {  # name: (b, S, A), (b, S, A) low, epochs, lr, milestone, batch
        "cifar10": ((1000, 25000, 10000), (500, 5000, 5000), 200, 0.1, 160, 128),
        "cifar100": ((2500, 25000, 20000), (1000, 15000, 8000), 200, 0.1, 160, 128),
        "svhn": ((1000, 25000, 10000), (500, 10000, 5000), 200, 0.01, 40, 128),
        "caltech101": ((500, 2000, 3500), (200, 1000, 1400), 50, 0.01, 40, 80),
        "cdd": ((500, 1000, 2500), (200, 1000, 1000), 200, 0.01, 40, 128),
    }
    for name, (high, low, epochs, lr, ms, bs) in spec.items():
        cfg = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())
        lowc = yaml.safe_load((ROOT / "configs" / "low_budget" / f"{name}.yaml").read_text())
        d = cfg["data"]
        assert (d["query_size"], d["subset_size"], d["budget"]) == high and d["initial_size"] == high[0]
        assert (lowc["data"]["query_size"], lowc["data"]["subset_size"], lowc["data"]["budget"]) == low
        assert lowc["data"]["initial_size"] == low[0]
        assert cfg["loop"]["epochs_per_round"] == epochs and d["batch_size"] == bs
        opt = cfg["model"]["optimizer"]["init_args"]
        assert (opt["lr"], opt["momentum"], opt["weight_decay"]) == (lr, 0.9, 0.0005)
        assert cfg["model"]["scheduler"]["init_args"] == {"milestones": [ms], "gamma": 0.1}
        assert cfg["model"]["backbone"]["init_args"]["width"] == 64
        assert (cfg["model"]["margin"], cfg["model"]["aux_weight"], cfg["model"]["epoch_loss"]) == (1.0, 1.0, 120)


def test_missing_dataset_is_one_clear_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(
            [
                "fit",
                "--config",
                str(ROOT / "configs/cifar10.yaml"),
                "--data.dataset.init_args.root",
                str(tmp_path / "nothing"),
                "--data.dataset.init_args.download",
                "false",
                "--trainer.logger.init_args.save_dir",
                str(tmp_path / "logs"),
            ]
        )
    assert e.value.code == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if "error" in ln.lower()]
    assert len(err) == 1 and err[0].startswith("lplgrad: error: CIFAR-10 not found")
    assert "cifar-10-python.tar.gz" in err[0] and "Traceback" not in err[0]
