"""The GPU's code paths, run on the CPU: the on-device data path (seeded draws, tensors for
scoring and testing) in a whole experiment with exact resume, no host sync per training step,
true precisions, 16-mixed with two optimisers, and CUDA random state on fewer GPUs."""

import subprocess
import sys

import pytest
import torch
from lightning.pytorch import Callback, Trainer

from helpers.pause import pause_args
from helpers.runs import HANG_S, ENV, start_and_kill
from lplgrad.callbacks import process_state as loop_module
from lplgrad.cli import cli_main
from lplgrad.data import ActiveDataModule
from lplgrad.datasets import Digits
from lplgrad.module import ActiveLearner
from lplgrad.nets import SmallCNN
from lplgrad.records import read_rounds
from helpers.tiny import tiny_fit_args

SYNCS = ("item", "tolist", "__bool__", "cpu", "__float__", "__int__", "numpy")


class CountSyncs(Callback):
    """Counts the calls that make the host wait for the device, from the first training batch
    of the epoch to the end of its last (the loader's iteration included)."""

    def __init__(self, monkeypatch) -> None:
        self.count, self.on, self.steps = 0, False, 0
        for name in SYNCS:
            real = getattr(torch.Tensor, name)

            def counted(t, *a, _real=real, **kw):
                if self.on:
                    self.count += 1
                return _real(t, *a, **kw)

            monkeypatch.setattr(torch.Tensor, name, counted)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.on = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps += 1

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.on = False


def epoch_syncs(monkeypatch, n_labeled: int) -> tuple[int, int]:
    torch.manual_seed(0)
    dm = ActiveDataModule(
        Digits(),
        initial_size=n_labeled,
        query_size=8,
        subset_size=64,
        budget=n_labeled + 8,
        batch_size=8,
        seed=0,
        on_device=True,
    )
    model = ActiveLearner(lambda c, i: SmallCNN(c, i, 4), num_classes=10, in_channels=1)
    counter = CountSyncs(monkeypatch)
    Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[counter],
        num_sanity_val_steps=0,
    ).fit(model, datamodule=dm)
    assert dm.evaluates_on_device and dm.draws == "seeded"
    return counter.steps, counter.count


def test_no_host_sync_per_training_step(monkeypatch):
    short, long = epoch_syncs(monkeypatch, 32), epoch_syncs(monkeypatch, 96)
    assert (short[0], long[0]) == (4, 12)
    assert short[1] == long[1] <= 2, (short, long)  # the epoch's own (the finiteness check), not one per step


def command(save_dir, version, *extra):
    return [
        sys.executable,
        "-m",
        "lplgrad",
        *tiny_fit_args(
            save_dir,
            "--trainer.logger.init_args.version",
            version,
            "--data.on_device",
            "true",
            *extra,
            query=10,
            budget=40,
            epochs=4,
        ),
    ]


def run(cmd):
    out = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=HANG_S)
    assert out.returncode == 0, out.stderr[-3000:]


def test_a_whole_experiment_on_the_device_path_resumes_exactly(tmp_path):
    run(command(tmp_path, "reference"))
    ref = read_rounds(tmp_path / "digits" / "reference" / "rounds.jsonl")
    assert [r["labeled"] for r in ref] == [20, 30, 40]
    cmd = command(tmp_path, "crashed")
    marker = tmp_path / "paused"
    start_and_kill(cmd + pause_args(marker, 6, "batch_end"), marker)  # inside round 1, after round 0's save
    run(cmd + ["--ckpt_path", "last"])
    got = read_rounds(tmp_path / "digits" / "crashed" / "rounds.jsonl")
    assert [(r["queried"], r["test_acc"]) for r in got] == [(r["queried"], r["test_acc"]) for r in ref]


@pytest.mark.parametrize("precision", ["64-true", "bf16-true"])
def test_true_precisions_evaluate_and_query(tmp_path, precision):
    """Lightning converts the network and the training batches; the evaluation and the query
    cast theirs (they crashed at the end of round 0)."""
    cli_main(
        tiny_fit_args(
            tmp_path,
            "--trainer.precision",
            precision,
            "--trainer.logger.init_args.version",
            "v",
            query=10,
            budget=30,
            subset=40,
        )
    )
    rows = read_rounds(tmp_path / "digits" / "v" / "rounds.jsonl")
    assert [r["labeled"] for r in rows] == [20, 30] and len(rows[0]["queried"]) == 10


def test_16_mixed_with_two_optimisers_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(tiny_fit_args(tmp_path, "--trainer.precision", "16-mixed"))
    assert e.value.code == 2
    assert "use bf16-mixed" in capsys.readouterr().err


def test_cuda_random_state_of_more_gpus_than_visible(monkeypatch):
    """A checkpoint saved with two GPUs resumes on one: only this process's GPU is restored."""
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device="cuda": restored.append(s))

    def all_devices(states):  # torch's own raises when given more states than visible GPUs
        raise RuntimeError("invalid device ordinal")

    monkeypatch.setattr(torch.cuda, "set_rng_state_all", all_devices)
    state = loop_module.rng_state()
    two = [torch.full((16,), 1, dtype=torch.uint8), torch.full((16,), 2, dtype=torch.uint8)]
    loop_module.set_rng_state({**state, "cuda": two})
    assert len(restored) == 1 and torch.equal(restored[0], two[0])
    loop_module.set_rng_state({**state, "cuda": two[1]})  # what is saved now: one state
    assert torch.equal(restored[1], two[1])


def test_gathered_measures_stay_on_their_device():
    """The strategies score where the measures live: gathering moves only the indices to the CPU
    (a meta tensor stands in for a GPU's: moving it to the CPU raises)."""
    from lplgrad.query import gather_padded

    indices, values = torch.tensor([3, 1, 2]), torch.empty(3, 5, device="meta")
    got_idx, got_val = gather_padded(indices, values, 1, None)
    assert got_idx.tolist() == [1, 2, 3] and got_idx.device.type == "cpu"
    assert got_val.device.type == "meta" and got_val.shape == (3, 5)
