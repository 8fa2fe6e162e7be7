"""Optional speed settings give the same scores and train: channels_last, bf16 mixed precision, torch.compile."""

import copy
from pathlib import Path

import pytest
import torch

from lplgrad.cli import cli_main
from lplgrad.gradnorm import per_sample_sq_norms, per_sample_sq_norms_loop
from lplgrad.nets import ResNet18
from helpers.tiny import tiny_fit_args
from helpers.records import rounds_of, sample_entropy

ROOT = Path(__file__).resolve().parents[1]


def tiny_experiment(tmp_path, *options: str) -> list[dict]:
    """Two rounds on the digits, width-4 ResNet-18, with ``options``; the rounds' records."""
    cli_main(tiny_fit_args(tmp_path, *options, budget=35, epochs=2))
    rows = rounds_of(tmp_path, "digits")
    assert [r["labeled"] for r in rows] == [20, 35]
    assert all(0.0 <= r["test_acc"] <= 1.0 for r in rows)
    return rows


def test_channels_last_scores_equal_the_loop():
    torch.manual_seed(0)
    net = ResNet18(10, 3, 4)
    net.train()
    with torch.no_grad():
        net(torch.randn(8, 3, 16, 16))
    net.eval()
    x = torch.randn(5, 3, 16, 16)
    oracle = per_sample_sq_norms_loop(copy.deepcopy(net).double(), x.double(), sample_entropy)
    nhwc = net.to(memory_format=torch.channels_last)
    fast = per_sample_sq_norms(nhwc, x.contiguous(memory_format=torch.channels_last), sample_entropy)
    assert torch.allclose(fast.double(), oracle, rtol=1e-4, atol=1e-10 * oracle.max().item())


def test_bf16_mixed_and_channels_last_run(tmp_path):
    tiny_experiment(tmp_path, "--trainer.precision", "bf16-mixed", "--model.channels_last", "true")


def _step_grads(learner, x, y):
    learner.train()
    loss = learner.losses(x, y)[0]
    params = [p for p in learner.parameters() if p.requires_grad]
    return loss.detach(), torch.autograd.grad(loss, params)


def test_compiled_training_step_equals_eager():
    """model.compile: the same loss and gradients as eager M; checkpoint keys and the query untouched."""
    from lplgrad.module import ActiveLearner

    torch.manual_seed(0)
    eager = ActiveLearner(backbone=lambda c, i: ResNet18(c, i, 4), num_classes=5, in_channels=1)
    compiled = ActiveLearner(
        backbone=lambda c, i: ResNet18(c, i, 4), num_classes=5, in_channels=1, compile={"backend": "aot_eager"}
    )
    compiled.load_state_dict(eager.state_dict())
    x, y = torch.randn(6, 1, 16, 16), torch.randint(0, 5, (6,))
    loss_e, grads_e = _step_grads(eager, x, y)
    assert "_compiled_net" not in vars(compiled)  # built on first use
    loss_c, grads_c = _step_grads(compiled, x, y)
    assert vars(compiled)["_compiled_net"]._orig_mod is compiled.net  # the training step ran it
    assert torch.allclose(loss_c, loss_e, rtol=1e-5)
    for ge, gc in zip(grads_e, grads_c):
        assert torch.allclose(gc, ge, rtol=1e-4, atol=1e-6)
    assert set(compiled.state_dict()) == set(eager.state_dict())
    assert "_compiled_net" not in vars(copy.deepcopy(compiled))  # copies compile anew when they train
    compiled.eval()
    fast = per_sample_sq_norms(compiled.net, x, sample_entropy)  # the query runs eager M
    assert torch.allclose(fast, per_sample_sq_norms(eager.eval().net, x, sample_entropy), rtol=1e-5)


def test_compile_runs_an_experiment(tmp_path):
    tiny_experiment(tmp_path, "--model.compile", '{"backend": "aot_eager"}', "--trainer.callbacks.images", "false")


@pytest.mark.slow
def test_compile_with_inductor_runs_an_experiment(tmp_path):
    """The default backend (inductor; needs a C++ compiler on a CPU): compiling took about 30 s here."""
    tiny_experiment(tmp_path, "--model.compile", "true", "--trainer.callbacks.images", "false")


def test_speed_settings_times_batches_not_optimiser_steps():
    """benchmarks/speed_settings.py: M and A make two optimiser steps per batch, so the clock
    counts batches itself (global_step made the images/s twice the real figure)."""
    from lightning.pytorch import Trainer
    from torch.utils.data import DataLoader, TensorDataset

    from lplgrad.module import ActiveLearner

    from benchmarks.speed_settings import StepClock

    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(32, 3, 32, 32, generator=g), torch.randint(0, 10, (32,), generator=g))
    clock = StepClock(warmup=2, steps=3)
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=-1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[clock],
    )
    model = ActiveLearner(backbone=lambda c, i: ResNet18(c, i, 4), num_classes=10, in_channels=3)
    trainer.fit(model, DataLoader(data, batch_size=4))
    assert clock.seen == 5 and trainer.global_step == 10 and clock.t1 > clock.t0 > 0
