import os
from pathlib import Path

import pytest
import torch
from helpers.tiny import tiny_fit_args

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("PYTHONWARNINGS", "ignore")


@pytest.fixture
def tiny_fit(tmp_path):
    """Builds the arguments of a tiny experiment (:func:`tiny.tiny_fit_args`), logs under
    ``tmp_path / "logs"`` unless ``save_dir`` is given."""

    def build(*extra: str, save_dir: Path | None = None, **kw) -> list[str]:
        return tiny_fit_args(save_dir if save_dir is not None else tmp_path / "logs", *extra, **kw)

    return build
