"""``python -m lplgrad.export``: the network of a labeling round as TorchScript (``model.pt``) and
ONNX (``model.onnx``), with ``model.json`` saying what they take and return, checked against the
PyTorch network before anything is kept.

Both files hold :class:`Deployable`: M (rebuilt by :mod:`~lplgrad.labeling.trained`) in eval mode
with its input normalisation and the softmax built in. Input: float32 images ``(batch, C, H, W)``
in [0, 1] (RGB, or one channel for a grayscale run), already resized to the round's size; the
batch size is free (ONNX: a dynamic first axis). Output: float32 ``(batch, classes)``, the softmax
probabilities of the round's classes in ``model.json``'s order, exactly what
``python -m lplgrad.predict`` writes.

The check: on a few real images (the first ``--check_images`` readable ones of ``--images``, by
default the labeling run's folder; random inputs in [0, 1] when none is there), TorchScript's
and onnxruntime's probabilities must lie within ``--tolerance`` (max abs difference) of the PyTorch
network's computed as the labeling app computes them (normalised by the transform, not in the
graph); onnxruntime also runs one image at a time, for the dynamic batch axis. The measured
differences are printed and kept in ``model.json``; beyond the tolerance the export stops
(exit status 6) and leaves no file.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from jsonargparse import ArgumentParser
from torch import Tensor, nn

from lplgrad.errors import ConfigError, ExportCheckError
from lplgrad.guard import guarded
from lplgrad.labeling.report import say
from lplgrad.labeling.scan import scan_folder
from lplgrad.labeling.trained import InputSpec, TrainedModel, add_run_argument, load_trained, probabilities
from lplgrad.records import atomic_write

PROG = "lplgrad.export"
FILES = {"torchscript": "model.pt", "onnx": "model.onnx", "spec": "model.json"}
INPUT, OUTPUT = "image", "probabilities"
TOLERANCE = 1e-4
#: the deprecation notices of the two exporters asked for (TorchScript, and ONNX through it): said once here
QUIET = r"`torch\.jit\.|You are using the legacy TorchScript-based ONNX export|The feature will be removed"


class Deployable(nn.Module):
    """M with its normalisation and softmax built in: images ``(B, C, H, W)`` in [0, 1] ->
    probabilities of the named classes ``(B, n_classes)``."""

    def __init__(self, net: nn.Module, spec: InputSpec, n_classes: int) -> None:
        super().__init__()
        self.net, self.n_classes = net, n_classes
        self.register_buffer("mean", torch.tensor(spec.mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return probabilities(self.net, (x - self.mean) / self.std, self.n_classes)


def check_inputs(tm: TrainedModel, folder: Path | None, n: int) -> tuple[Tensor, Tensor, str]:
    """``n`` inputs to compare on: ([0, 1] images (n, C, H, W), the same normalised by the
    labeling app's transform, what they are). The first ``n`` readable images of ``folder``;
    seeded random images when there are none."""
    unit, normed = [], []
    if folder is not None and folder.is_dir():
        for rel in scan_folder(folder, tm.spec.mode, tm.spec.image_size, check=False).files:
            try:
                unit.append(tm.spec.load_unit(folder / rel))
                normed.append(tm.spec.load(folder / rel))
            except Exception:  # noqa: BLE001 - an unreadable image is simply not used
                continue
            if len(unit) == n:
                break
    if unit:
        return torch.stack(unit), torch.stack(normed), f"{len(unit)} images of {folder}"
    s = tm.spec
    x = torch.rand(n, s.channels, s.image_size, s.image_size, generator=torch.Generator().manual_seed(0))
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (s.mean, s.std))
    return x, (x - mean) / std, f"{n} random inputs in [0, 1] (no readable image in {folder})"


def onnx_export(model: nn.Module, example: Tensor, path: Path, opset: int) -> None:
    """``model`` as ONNX with a dynamic batch axis. ``dynamo=False``: torch's TorchScript-based
    exporter, which needs the ``onnx`` package only; the torch.export-based one (torch's default
    since 2.9) would also need ``onnxscript``, and traces the library backbones' stage hooks no better."""
    kwargs = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    torch.onnx.export(
        model,
        (example,),
        str(path),
        input_names=[INPUT],
        output_names=[OUTPUT],
        dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
        opset_version=opset,
        **kwargs,
    )


def write_models(model: Deployable, example: Tensor, stage: Path, opset: int) -> None:
    """``model.pt`` (traced) and ``model.onnx`` into ``stage``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=QUIET)
        with torch.no_grad():  # no check_trace: max_differences checks the saved file itself
            traced = torch.jit.trace(model, example, check_trace=False)
        torch.jit.save(traced, str(stage / FILES["torchscript"]))
        onnx_export(model, example, stage / FILES["onnx"], opset)


def max_differences(stage: Path, unit: Tensor, reference: Tensor) -> dict[str, float]:
    """The max abs difference of TorchScript's and onnxruntime's probabilities from ``reference``;
    onnxruntime on the whole batch and on each image alone (the dynamic batch axis)."""
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(str(stage / FILES["onnx"]))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=QUIET)
        traced = torch.jit.load(str(stage / FILES["torchscript"]), map_location="cpu")
    with torch.no_grad():
        ts = traced(unit)
    session = ort.InferenceSession(str(stage / FILES["onnx"]), providers=["CPUExecutionProvider"])
    whole = torch.from_numpy(session.run(None, {INPUT: unit.numpy()})[0])
    alone = torch.cat([torch.from_numpy(session.run(None, {INPUT: x[None].numpy()})[0]) for x in unit])
    return {
        "torchscript": float((ts - reference).abs().max()),
        "onnxruntime": float(torch.maximum((whole - reference).abs(), (alone - reference).abs()).max()),
    }


def versions() -> dict[str, str]:
    import onnx
    import onnxruntime as ort

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__}


def model_spec(tm: TrainedModel, check: dict[str, Any]) -> dict[str, Any]:
    """``model.json``: the input, the output, the classes, where the network comes from, the check."""
    s = tm.spec
    return {
        "files": {k: v for k, v in FILES.items() if k != "spec"},
        "input": {
            "name": INPUT,
            "shape": ["batch", s.channels, s.image_size, s.image_size],
            "dtype": "float32",
            "layout": "NCHW",
            "range": [0.0, 1.0],
            "color": "RGB" if s.channels == 3 else "grayscale (PIL mode L)",
            "preprocessing": f"decode, convert to {s.mode}, resize to {s.image_size}x{s.image_size} "
            "(bilinear, as torchvision's Resize on a PIL image), divide by 255",
            "normalisation": "inside the model: (x - mean) / std per channel",
            "mean": list(s.mean),
            "std": list(s.std),
        },
        "output": {
            "name": OUTPUT,
            "shape": ["batch", len(tm.classes)],
            "dtype": "float32",
            "what": "softmax probabilities of the classes, in the order of 'classes' (not logits)",
        },
        "classes": list(tm.classes),
        "source": {"checkpoint": str(tm.checkpoint.resolve()), "round": tm.round, "backbone": tm.backbone},
        "check": check,
    }


def export(tm: TrainedModel, out: Path, unit: Tensor, normed: Tensor, inputs: str, tolerance: float, opset: int):
    """Write the three files to ``out`` once the exported models agree with ``tm.net`` on the
    inputs within ``tolerance``; returns ``model.json``'s content. Nothing is left on failure."""
    with torch.no_grad():
        reference = probabilities(tm.net.eval(), normed, len(tm.classes))
    model = Deployable(tm.net, tm.spec, len(tm.classes)).eval()
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".export.", dir=out))
    try:
        write_models(model, unit, stage, opset)
        diffs = max_differences(stage, unit, reference)
        check = {"inputs": inputs, "tolerance": tolerance, "max_abs_diff": diffs, "versions": versions()}
        for name, d in diffs.items():
            if not d <= tolerance:  # NaN fails too
                raise ExportCheckError(
                    f"the {name} model's probabilities differ from the PyTorch network's by {d:.3g} "
                    f"(max abs, on {inputs}), more than --tolerance {tolerance:g}: nothing exported"
                )
        spec = model_spec(tm, check)
        atomic_write(stage / FILES["spec"], json.dumps(spec, indent=2) + "\n")
        for name in FILES.values():
            os.replace(stage / name, out / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return spec


def run(cfg) -> dict[str, Any]:
    """Load the round's network, export it, check it, print what was done; returns ``model.json``'s content."""
    if cfg.check_images < 1:
        raise ConfigError(f"--check_images must be positive, got {cfg.check_images}")
    if not cfg.tolerance >= 0:
        raise ConfigError(f"--tolerance must be 0 or more, got {cfg.tolerance}")
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise ConfigError(f"the export needs onnx and onnxruntime ({e}): pip install 'lplgrad[export]'") from None
    if Path(cfg.out).exists() and not Path(cfg.out).is_dir():
        raise ConfigError(f"--out {cfg.out} is a file: name a folder for the exported files")
    tm = load_trained(cfg.run)
    say(f"Model: {tm.describe()}")
    folder = Path(cfg.images) if cfg.images else tm.images
    unit, normed, inputs = check_inputs(tm, folder, cfg.check_images)
    out = Path(cfg.out)
    spec = export(tm, out, unit, normed, inputs, cfg.tolerance, cfg.opset)
    d = spec["check"]["max_abs_diff"]
    say(
        f"Checked on {inputs}: max abs difference from the PyTorch network's probabilities: "
        f"TorchScript {d['torchscript']:.2e}, ONNX (onnxruntime) {d['onnxruntime']:.2e} (tolerance {cfg.tolerance:g})"
    )
    s = spec["input"]
    say(f"Wrote: {out / FILES['torchscript']}  TorchScript (torch.jit.load)")
    say(f"       {out / FILES['onnx']}  ONNX, opset {cfg.opset}, dynamic batch axis")
    say(f"       {out / FILES['spec']}  what they take and return")
    say(
        f"Input: {INPUT}, float32 (batch, {s['shape'][1]}, {s['shape'][2]}, {s['shape'][3]}) in [0, 1], "
        f"{s['color']}, normalised inside; "
        f"output: {OUTPUT}, softmax probabilities of {', '.join(tm.classes)}"
    )
    return spec


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="python -m lplgrad.export",
        description="Export a labeling round's network as TorchScript and ONNX, checked with onnxruntime (docs/labeling.md).",
        exit_on_error=False,
    )
    add_run_argument(p)
    p.add_argument("--out", type=str, default="export", help="Folder for model.pt, model.onnx and model.json.")
    p.add_argument(
        "--images",
        type=str | None,
        default=None,
        help="Images to check the exported models on (default: the labeling run's image folder).",
    )
    p.add_argument("--check_images", type=int, default=8, help="How many images the check uses.")
    p.add_argument(
        "--tolerance", type=float, default=TOLERANCE, help="Largest max abs difference of probabilities accepted."
    )
    p.add_argument("--opset", type=int, default=17, help="The ONNX opset.")
    return p


def cli_main(args: list[str] | None = None) -> dict[str, Any]:
    """Parse ``args`` (default ``sys.argv[1:]``), export and check; returns ``model.json``'s
    content. Expected failures stop with one ``lplgrad.export: error:`` line and their exit code."""
    return guarded(PROG, args, lambda: run(build_parser().parse_args(args)))
