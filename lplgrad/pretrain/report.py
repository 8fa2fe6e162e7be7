"""What a pretraining run prints and leaves: a line as it starts, one per epoch, and at the end
the backbone's weights file (``backbone.pt``) and ``finished.json`` in the run folder.

``backbone.pt`` is the backbone's ``state_dict`` alone (tensors only: ``torch.load(...,
weights_only=True)`` reads it), the file an active-learning config's
``model.backbone.init_args.weights`` takes. For a torchvision or timm backbone it is the
library model's own state_dict (what their ``weights`` take as a local file).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor, nn

from lplgrad.nets.library import LibraryNet
from lplgrad.records import atomic_save, atomic_write

FINISHED = "finished.json"


def backbone_state(net: nn.Module) -> dict[str, Tensor]:
    """The tensors a backbone of the same class loads as ``weights``, on the CPU."""
    inner = net.model if isinstance(net, LibraryNet) else net
    return {k: v.detach().cpu().clone() for k, v in inner.state_dict().items()}


def save_weights(state: dict[str, Tensor], path: Path) -> None:
    """The weights saved atomically: a crash leaves the old file or the new."""
    atomic_save(state, path)


def plural(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def say(line: str) -> None:
    print(line, flush=True)


class PretrainReport(Callback):
    """Prints the run's lines and writes ``filename`` (and ``finished.json`` once every epoch of
    ``trainer.max_epochs`` is done) in the run folder when training ends.

    Args:
        filename: the weights file's name in the run folder.
    """

    def __init__(self, filename: str = "backbone.pt") -> None:
        if not filename or Path(filename).name != filename:
            raise ValueError(f"export.filename must be a file name without a folder, got {filename!r}")
        self.filename = filename
        self._started = time.monotonic()

    @staticmethod
    def run_folder(trainer: Trainer) -> Path:
        return Path(trainer.log_dir or trainer.default_root_dir)

    @rank_zero_only
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        dm = trainer.datamodule
        method = {"simclr": "SimCLR", "byol": "BYOL"}[pl_module.method]
        epochs = plural(trainer.max_epochs, "epoch")
        say(
            f"Pretraining {type(pl_module.net).__name__} with {method} on {dm.source} (labels are not read): "
            f"{trainer.num_training_batches} steps of {dm.batch_size} per epoch, {epochs}, "
            f"in {self.run_folder(trainer)}"
            + (f" (resumed after epoch {trainer.current_epoch})" if trainer.current_epoch else "")
        )

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._started = time.monotonic()

    @rank_zero_only
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        m = trainer.callback_metrics
        loss, spread, lr = m.get("pretrain/loss_epoch"), m.get("pretrain/spread"), m.get("pretrain/lr")
        say(
            f"Epoch {trainer.current_epoch + 1:>3}/{trainer.max_epochs}"
            + (f" | loss {float(loss):.4f}" if loss is not None else "")
            + (f" | spread {float(spread):.3f}" if spread is not None else "")
            + (f" | lr {float(lr):.4f}" if lr is not None else "")
            + f" | {time.monotonic() - self._started:.1f}s"
        )

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        run = self.run_folder(trainer)
        run.mkdir(parents=True, exist_ok=True)
        path = run / self.filename
        save_weights(backbone_state(pl_module.net), path)
        done = trainer.max_epochs is not None and trainer.current_epoch >= trainer.max_epochs
        if done:
            loss = trainer.callback_metrics.get("pretrain/loss_epoch")
            record = {
                "method": pl_module.method,
                "epochs": trainer.current_epoch,
                "steps": trainer.global_step,
                "loss": float(loss) if loss is not None else None,
                "weights": self.filename,
            }
            atomic_write(run / FINISHED, json.dumps(record) + "\n")
        early = "" if done else "(the run stopped before its last epoch: --ckpt_path last goes on) "
        say(
            f"Backbone weights {early}written to {path}: start an active-learning run from them with "
            f"--model.backbone.init_args.weights {path}"
        )
