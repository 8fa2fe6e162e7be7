"""What every process of a run must carry over or share: its random states (saved in each
checkpoint, every process's own) and rank 0's buffers (taken by every process at a round's end)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def rng_state() -> dict[str, Any]:
    """The global random states as tensors and plain values (loadable with ``weights_only=True``)."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()  # this process's GPU only (dropout draws from it)
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(tuple(v if not isinstance(v, list) else tuple(v) for v in state["python"]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if isinstance(cuda, (list, tuple)):  # older checkpoints: one state per visible GPU of the saving machine
            i = torch.cuda.current_device()
            cuda = cuda[i] if i < len(cuda) else None
        if cuda is not None:  # a machine with fewer GPUs than the saving one resumes too
            torch.cuda.set_rng_state(cuda)


def _distributed() -> bool:
    """A DDP process group is running."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def every_rank(state: dict[str, Any]) -> list[dict[str, Any]]:
    """This process's random state and every other DDP process's, in rank order (a collective:
    the checkpoint is made on every process, and only rank 0 writes it)."""
    if not _distributed():
        return [state]
    states: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(states, state)
    return states


def this_rank(states: list[dict[str, Any]]) -> dict[str, Any] | None:
    """This process's entry of :func:`every_rank`'s list (None: it was saved by fewer processes)."""
    rank = torch.distributed.get_rank() if _distributed() else 0
    return states[rank] if rank < len(states) else None


def share_rank0_buffers(module: torch.nn.Module) -> None:
    """Every DDP process takes rank 0's buffers (BatchNorm's running statistics).

    Each process's running statistics follow its own batches, so without this the processes
    evaluate and score their shards with different models, and a resumed process (which loads
    rank 0's checkpoint) with yet another one. After it, a round's evaluation and query see one
    model, the one the round's checkpoint holds, and a resume is exact.
    """
    if _distributed() and torch.distributed.get_world_size() > 1:
        for buffer in module.buffers():
            torch.distributed.broadcast(buffer, src=0)
