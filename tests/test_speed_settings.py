"""Optional speed settings give the same scores and train: channels_last, bf16 mixed precision."""
import copy
from pathlib import Path

import torch

from lplgrad.cli import cli_main
from lplgrad.gradnorm import per_sample_sq_norms, per_sample_sq_norms_loop
from lplgrad.losses import entropy
from lplgrad.nets import ResNet18
from lplgrad.records import read_rounds

ROOT = Path(__file__).resolve().parents[1]


def sample_entropy(model, x):
    return entropy(model(x)[0])


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
    cli_main(["fit", "--config", str(ROOT / "configs/digits.yaml"),
              "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.enable_progress_bar", "false",
              "--trainer.precision", "bf16-mixed", "--model.channels_last", "true",
              "--model.backbone.init_args.width", "4", "--data.initial_size", "20", "--data.query_size", "15",
              "--data.subset_size", "60", "--data.budget", "35", "--loop.epochs_per_round", "2"])
    rows = read_rounds(next(tmp_path.glob("digits/version_*")) / "rounds.jsonl")
    assert [r["labeled"] for r in rows] == [20, 35]
    assert all(0.0 <= r["test_acc"] <= 1.0 for r in rows)
