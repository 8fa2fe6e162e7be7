"""What every benchmark shares: the allocator option and the header line (where, with what, when)."""
from __future__ import annotations

import argparse
import platform
import time

import torch


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
    return (f"machine: {cpu_name()} ({platform.machine()}){gpu}; torch {torch.__version__}; device {device}; "
            f"threads {torch.get_num_threads()}; allocator {allocator}; date {time.strftime('%Y-%m-%d')}")


def add_malloc_option(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--malloc", choices=["lplgrad", "default"], default="lplgrad",
                    help="the allocator setting the lplgrad applications start with (lplgrad.allocator), or glibc's default")
