"""The ML backend's speed (issue 25): ``/predict`` for one task, and re-scoring every open task
after a training, with the default labelling config (``configs/label_folder.yaml``).

A project of ``--tasks`` open tasks and ``2 * --labels`` labelled ones is made from
scikit-learn's digits (1,797 images of 8x8, drawn as ``--size`` x ``--size`` grayscale PNGs and
repeated to fill the project): every image is already in the backend's image cache, so no
download is timed, but every PNG is really decoded. Label Studio is an in-process stand-in for label-studio-sdk's client (the listing of
the tasks, the bulk import of predictions, serialised to JSON as the SDK sends it, and the
deletion of the older predictions); no HTTP call to it is timed. Then:

1. a first training on ``--labels`` labelled tasks (the scan decodes every image once), then a
   second one on ``--labels`` more, as after a batch of annotations: the second is timed, split
   into the training (fit), the re-scoring (every open task scored by the strategy, the
   network's class of each, the predictions built, serialised and "posted", the older ones
   deleted) and the rest (reading the project, the scan with its cache, stop signal, checkpoint,
   state);
2. ``POST /predict`` of one task, ``--calls`` times, to the backend served by waitress on a
   loopback port (a real HTTP request): a task of the last scoring, and a task added since
   (classified by the network, its image in the cache).

Targets: ``/predict`` at most 100 ms (p95), re-scoring 10,000 open tasks at most 60 s. On a
machine shared with other work, ``--threads 1`` avoids torch's threads waiting for each other;
the CPU seconds are printed beside the wall seconds.

    python -m benchmarks.serve_speed                   # 10,000 open tasks (a few minutes on 2 cores)
    python -m benchmarks.serve_speed --tasks 300       # a quick rehearsal
    python -m benchmarks.serve_speed --tasks 1000 --threads 1 --profile serve.prof   # and where its time goes
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import logging
import os
import pstats
import statistics
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image

from benchmarks.common import add_malloc_option, describe, malloc_setting

CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "label_folder.yaml")
CLASSES = [str(d) for d in range(10)]
RESCORING = ("score_open", "post_predictions", "delete_whole", "delete_single")  # in lplgrad.serve.training
SCORING = ("propose", "predict", "classes_from_logits")  # in lplgrad.serve.scoring


def digit_files(folder: Path, size: int) -> list[tuple[Path, str]]:
    """scikit-learn's 1,797 digits as ``size`` x ``size`` PNGs in ``folder`` (made once) -> (file, class)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, (pixels, target) in enumerate(zip(digits.images, digits.target)):
        path = folder / f"digit_{i:04d}_{size}.png"
        if not path.is_file():
            img = Image.fromarray(np.uint8(pixels * 255 / 16)).resize((size, size), Image.BILINEAR)
            img.save(path)
        out.append((path, str(target)))
    return out


class FakeLabelStudio:
    """The part of label-studio-sdk's client the backend calls, in memory (see the module docstring)."""

    def __init__(self) -> None:
        from lplgrad.labeling.label_studio import labeling_config

        self.project = SimpleNamespace(id=1, label_config=labeling_config(CLASSES), model_version="")
        self.tasks_: dict[int, SimpleNamespace] = {}
        self.next_prediction = 1
        self.posted_bytes = 0
        self.projects = SimpleNamespace(
            get=lambda id: self.project, update=self._update, import_predictions=self._import
        )
        self.tasks = SimpleNamespace(list=lambda project, fields=None, resolve_uri=True: list(self.tasks_.values()))
        self.actions = SimpleNamespace(create=self._action)
        self.predictions = SimpleNamespace(delete=self._delete)

    def __call__(self, base_url: str, api_key: str) -> FakeLabelStudio:
        return self

    def _update(self, id: int, model_version: str) -> None:
        self.project.model_version = model_version

    def _import(self, id: int, request: list[dict]) -> None:
        self.posted_bytes = len(json.dumps(request))  # what the SDK sends (the last import)
        for row in request:
            p = SimpleNamespace(id=self.next_prediction, model_version=row["model_version"], score=row["score"])
            self.next_prediction += 1
            self.tasks_[row["task"]].predictions.append(p)

    def _action(self, id: str, project: int, selected_items: dict) -> None:
        assert id == "delete_tasks_predictions", id
        for task in selected_items["included"]:
            self.tasks_[task].predictions.clear()

    def _delete(self, id: int) -> None:
        for task in self.tasks_.values():
            task.predictions = [p for p in task.predictions if p.id != id]

    def add_task(self, url: str) -> int:
        task_id = len(self.tasks_) + 1
        self.tasks_[task_id] = SimpleNamespace(id=task_id, data={"image": url}, annotations=[], predictions=[])
        return task_id

    def annotate(self, task_id: int, label: str) -> None:
        result = [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]
        ann = {"id": task_id, "updated_at": "2026-01-01T00:00:00Z", "was_cancelled": False, "result": result}
        self.tasks_[task_id].annotations.append(ann)


def add_cached_tasks(ls: FakeLabelStudio, images: Path, files: list[tuple[Path, str]], n: int) -> dict[int, str]:
    """``n`` tasks whose images (the digits in turn) are already in the image cache -> task id -> class."""
    from lplgrad.serve.images import cache_name

    images.mkdir(parents=True, exist_ok=True)
    truth = {}
    for k in range(n):
        path, label = files[(len(ls.tasks_)) % len(files)]
        url = f"/data/upload/1/{len(ls.tasks_):06d}-{path.name}"
        task = ls.add_task(url)
        os.link(path, images / (cache_name(task, url) + ".png"))
        truth[task] = label
    return truth


@contextlib.contextmanager
def timed(targets: list[tuple[object, str]], seconds: dict[str, float]):
    """Add the wall time spent in ``module.<name>`` (for each (module, name)) to ``seconds[name]``,
    and this process's CPU time to ``seconds["cpu " + name]``."""
    saved = {(module, name): getattr(module, name) for module, name in targets}

    def wrap(name, fn):
        def call(*args, **kwargs):
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t0
                seconds["cpu " + name] = seconds.get("cpu " + name, 0.0) + time.process_time() - c0

        return call

    for (module, name), fn in saved.items():
        setattr(module, name, wrap(name, fn))
    try:
        yield seconds
    finally:
        for (module, name), fn in saved.items():
            setattr(module, name, fn)


def trainings(a, ls: FakeLabelStudio, state, truth: dict[int, str]) -> dict[str, float]:
    """The first training on ``a.labels`` labels, then the timed second on twice as many."""
    from lplgrad.serve import scoring, training
    from lplgrad.serve.project import open_project

    args = ["--config", CONFIG, "--trainer.accelerator", "cpu"]
    open_live = lambda: open_project("http://ls.invalid", "SERVE_SPEED_KEY", 1, client_factory=ls)  # noqa: E731
    tasks = sorted(truth)
    for task in tasks[: a.labels]:
        ls.annotate(task, truth[task])
    t0, c0 = time.perf_counter(), time.process_time()
    training.run_training(args, state, open_live)
    first = (time.perf_counter() - t0, time.process_time() - c0)
    for task in tasks[a.labels : 2 * a.labels]:
        ls.annotate(task, truth[task])
    profiler = cProfile.Profile() if a.profile else None
    targets = [(training, n) for n in ("train", *RESCORING)] + [(scoring, n) for n in SCORING]
    with timed(targets, {}) as seconds:
        t0, c0 = time.perf_counter(), time.process_time()
        with profiler or contextlib.nullcontext():
            training.run_training(args, state, open_live)
        seconds["total"], seconds["cpu total"] = time.perf_counter() - t0, time.process_time() - c0
    if profiler:
        profiler.dump_stats(a.profile)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats("lplgrad/(serve|labeling|query|inference)", 40)
    seconds["first"], seconds["cpu first"] = first
    return seconds


def predict_times(a, ls: FakeLabelStudio, state_dir: Path, files, scored: int) -> tuple[list[float], list[float]]:
    """Milliseconds of ``POST /predict`` of one task: one of the last scoring, one added since."""
    import httpx
    from waitress.server import create_server

    from lplgrad.serve.app import create_app
    from lplgrad.serve.backend import Backend
    from lplgrad.serve.predictor import Predictor
    from lplgrad.serve.project import open_project

    backend = Backend(state_dir, lambda b: None)
    backend.predictor = Predictor(
        state_dir, lambda: open_project("http://ls.invalid", "SERVE_SPEED_KEY", 1, client_factory=ls)
    )
    new = sorted(add_cached_tasks(ls, state_dir / "images", files, a.calls + 5))
    server = create_server(create_app(backend), host="127.0.0.1", port=0, threads=4)
    threading.Thread(target=server.run, daemon=True).start()
    url = f"http://127.0.0.1:{server.effective_port}/predict"
    config = ls.project.label_config

    def call(client, task: int) -> float:
        body = {"tasks": [{"id": task, "data": ls.tasks_[task].data}], "project": "1.1", "label_config": config}
        t0 = time.perf_counter()
        got = client.post(url, json=body)
        ms = (time.perf_counter() - t0) * 1000
        assert got.status_code == 200 and got.json()["results"][0]["result"], got.text
        return ms

    with httpx.Client(timeout=60) as client:
        for task in new[:5]:  # warm-up: the network is loaded at the first
            call(client, task)
        unscored = [call(client, task) for task in new[5:]]
        known = [call(client, 1 + 2 * a.labels + k % scored) for k in range(a.calls)]
    return known, unscored  # the server's daemon thread ends with the process (closing it races its last reply)


def describe_ms(values: list[float]) -> str:
    p95 = float(np.percentile(values, 95))
    return f"median {statistics.median(values):6.1f} ms, p95 {p95:6.1f} ms, max {max(values):6.1f} ms ({len(values)} calls)"


def report(a, seconds: dict[str, float], known: list[float], unscored: list[float], posted: int, open_tasks: int):
    def both(*names: str) -> tuple[float, float]:
        return sum(seconds.get(n, 0.0) for n in names), sum(seconds.get("cpu " + n, 0.0) for n in names)

    def row(what: str, wall_cpu: tuple[float, float], note: str = "") -> None:
        print(f"{what:<52}: {wall_cpu[0]:7.1f} s wall {wall_cpu[1]:7.1f} s CPU{note}")

    rescoring = both(*RESCORING)
    whole, fit = both("total"), both("train")
    rest = (whole[0] - rescoring[0] - fit[0], whole[1] - rescoring[1] - fit[1])
    verdict = lambda ok: "  -> meets the target" if ok else "  -> MISSES the target"  # noqa: E731
    print("== ML backend speed (python -m lplgrad.serve, configs/label_folder.yaml)")
    print(describe(torch.device("cpu"), malloc_setting(a.malloc)))
    total = open_tasks + 2 * a.labels
    print(f"project: {total} tasks, {2 * a.labels} labelled, {open_tasks} open; images {a.size}x{a.size} PNG")
    row("first training (the scan decodes every image once)", both("first"))
    row("second training, whole", whole)
    row(f"  fit on {2 * a.labels} labels", fit)
    if open_tasks >= 10_000:
        row(f"  re-scoring {open_tasks} open tasks (target 60 s)", rescoring, verdict(rescoring[0] <= 60))
    else:  # a rehearsal: the target is for 10,000
        at_rate = f"  (10,000 at this rate: {rescoring[0] * 10_000 / max(open_tasks, 1):.0f} s wall)"
        row(f"  re-scoring {open_tasks} open tasks", rescoring, at_rate)
    row("    the strategy's scores (query)", both("propose"))
    row("    the network's classes", both("predict", "classes_from_logits"))
    row(f"    predictions built and posted ({posted / 2**20:.1f} MiB JSON)", both("post_predictions"))
    row("    older predictions deleted", both("delete_whole", "delete_single"))
    row("  the rest (project, scan, stop signal, files)", rest)
    print(f"/predict, a task of the last scoring   : {describe_ms(known)}")
    print(f"/predict, a task added since (network): {describe_ms(unscored)}")
    slowest = float(np.percentile(known + unscored, 95))
    print(f"/predict p95 of both (target 100 ms)   : {slowest:6.1f} ms{verdict(slowest <= 100)}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=10_000, help="open tasks at the timed re-scoring")
    ap.add_argument(
        "--labels", type=int, default=20, help="labelled before the first training; as many more before the second"
    )
    ap.add_argument("--calls", type=int, default=200, help="/predict calls of each kind")
    ap.add_argument("--size", type=int, default=64, help="the images' side in pixels")
    ap.add_argument(
        "--work", type=Path, default=None, help="a folder for the images and the state (default: a temporary one)"
    )
    ap.add_argument(
        "--profile", type=Path, default=None, help="cProfile the timed training into this file (and print its top)"
    )
    ap.add_argument("--threads", type=int, default=None, help="torch's CPU threads (default: torch's choice)")
    add_malloc_option(ap)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    os.environ["SERVE_SPEED_KEY"] = "benchmark"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per /predict call
    with tempfile.TemporaryDirectory() as tmp:
        work = a.work or Path(tmp)
        files = digit_files(work / "digits", a.size)
        from lplgrad.serve.state import StateFile

        state_dir = Path(tempfile.mkdtemp(dir=work, prefix="state-"))
        ls = FakeLabelStudio()
        truth = add_cached_tasks(ls, state_dir / "images", files, a.tasks + 2 * a.labels)
        state = StateFile(state_dir)
        state.update(project=1)
        seconds = trainings(a, ls, state, truth)
        open_tasks = a.tasks
        known, unscored = predict_times(a, ls, state_dir, files, open_tasks)
        report(a, seconds, known, unscored, ls.posted_bytes, open_tasks)


if __name__ == "__main__":
    main()
