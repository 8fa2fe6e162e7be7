"""What the benchmarks share: the allocator option and setting, the header line (where, with
what, when), an epoch clock, peak memory and device sync.

The benchmarks are a package: run each from the repository root as ``python -m benchmarks.NAME``.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
from lightning.pytorch import Callback, Trainer

from lplgrad.allocator import keep_freed_memory, user_chose_allocator


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe(device: torch.device, allocator: str) -> str:
    gpu = f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    return (
        f"machine: {cpu_name()} ({platform.machine()}){gpu}; torch {torch.__version__}; device {device}; "
        f"threads {torch.get_num_threads()}; allocator {allocator}; date {time.strftime('%Y-%m-%d')}"
    )


def add_malloc_option(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--malloc",
        choices=["lplgrad", "default"],
        default="lplgrad",
        help="the allocator setting the lplgrad applications start with (lplgrad.allocator), or glibc's default",
    )


def malloc_setting(mode: str = "lplgrad") -> str:
    """``lplgrad``: the allocator setting the applications start with
    (:func:`lplgrad.allocator.keep_freed_memory`); ``default``: leave glibc alone. Describes the
    outcome for the header line."""
    if mode == "default":
        return "glibc default"
    if mode != "lplgrad":
        raise ValueError(f"mode must be 'lplgrad' or 'default', got {mode!r}")
    if keep_freed_memory():
        return "lplgrad (freed memory kept for reuse)"
    return "lplgrad (not applied: " + ("the user's choice)" if user_chose_allocator() else "no glibc)")


def one_epoch_trainer(accelerator: str) -> Trainer:
    """A Trainer for one epoch on one device with nothing around the steps: no logger, checkpoint,
    progress bar, model summary or sanity check (what the step benchmarks time)."""
    return Trainer(
        max_epochs=1,
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )


class EpochClock(Callback):
    """Per epoch: wall time from its start to the next epoch's start, and the time inside steps."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.steps: list[float] = []
        self._t = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.starts.append(time.perf_counter())
        self.steps.append(0.0)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._t = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps[-1] += time.perf_counter() - self._t


def _rss(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return 0


class PeakMemory:
    """Peak extra memory of a block: CUDA allocator peak, or the process's RSS high-water mark
    (reset through /proc/self/clear_refs) above the RSS at entry."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.base = _rss("VmRSS:")
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.base
        else:
            self.peak = _rss("VmHWM:") - self.base


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
