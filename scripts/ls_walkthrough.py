"""The walkthrough of docs/labeling.md ("Label Studio ML backend"), run from start to end, with
its screenshots taken by headless Chromium.

    pip install -e ".[walkthrough]"     # playwright (its Python package only: no browser download)
    apt-get install -y chromium         # the browser it drives (Debian's)
    python scripts/ls_walkthrough.py --label-studio ~/ls-venv/bin/label-studio

In ``--work`` (default ``ls_walkthrough/``, made afresh) it writes the toy folder of
docs/labeling.md (300 coloured circles, squares and triangles and one broken file), then:

1. starts Label Studio on a loopback port with local-files serving and the settings an ML
   backend on the same machine needs, with a user (``--email``, ``--password``);
2. makes the project ``toy-shapes`` from the folder: the labeling config of the three classes
   and a Local Files source storage of ``toy_images``, synced, so Label Studio makes the tasks;
3. starts ``python -m lplgrad.serve`` with ``configs/label_folder.yaml`` and connects it under
   Settings > Model (through the API, as the *Connect Model* dialog does);
4. annotates ``--labels`` tasks at random with their true class (through the API, as an
   annotator would) and presses *Start Training* (the API's ``POST /api/ml/<id>/train``), then
   waits until the backend has trained and re-scored every open task; then, ``--rounds`` times
   in all, annotates the first ``--labels`` open tasks by ascending "Prediction score" (the
   strategy's picks) and trains again; the backend's line for each training is printed;
5. logs in with headless Chromium (1280x800) and saves, in ``--out``:
   ``model_settings.png`` (Settings > Model with the backend connected), ``data_manager.png``
   (the Data Manager sorted by "Prediction score", ascending) and ``labeling_task.png`` (the
   first of those tasks open for labelling, the network's class pre-filled).

Everything it started is stopped at the end; ``--keep`` leaves Label Studio and the backend
running (their addresses and the login are printed) to look around.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # lplgrad from this checkout, installed or not
CLASSES = ["circle", "square", "triangle"]
TOKEN = "lplgrad0walkthrough0token000000000000000"
HIDDEN = [  # Data Manager columns left out of the screenshot
    "inner_id", "completed_at", "cancelled_annotations", "annotators", "annotations_results", "annotations_ids",
    "file_upload", "storage_filename", "created_at", "updated_at", "updated_by", "avg_lead_time", "draft_exists",
    "predictions_results", "data",
]  # fmt: skip


def toy_folder(work: Path) -> dict[str, str]:
    """docs/labeling.md's toy folder: ``work/toy_images`` and ``work/toy_truth.csv``; -> path: class."""
    from PIL import Image, ImageDraw

    rng, root, truth = random.Random(0), work / "toy_images", {}
    for i in range(300):
        label = rng.choice(CLASSES)
        img = Image.new("RGB", (48, 48), tuple(rng.randrange(0, 90) for _ in range(3)))
        r, cx, cy = rng.randrange(8, 18), rng.randrange(18, 30), rng.randrange(18, 30)
        box, colour = [cx - r, cy - r, cx + r, cy + r], tuple(rng.randrange(100, 256) for _ in range(3))
        draw = ImageDraw.Draw(img)
        if label == "circle":
            draw.ellipse(box, fill=colour)
        elif label == "square":
            draw.rectangle(box, fill=colour)
        else:
            draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
        path = Path(f"day{i % 3 + 1}") / ("cam_a" if i % 2 else "cam_b") / f"{i:04d}.{'png' if i % 5 else 'jpg'}"
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        img.save(root / path)
        truth[path.as_posix()] = label
    (root / "day1" / "broken.jpg").write_bytes(b"half a JPEG")
    with open(work / "toy_truth.csv", "w", newline="") as f:
        csv.writer(f).writerows([("path", "label"), *truth.items()])
    return truth


def wait_for(url: str, proc: subprocess.Popen, log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{proc.args[0]} stopped; its log: {log}\n{log.read_text()[-2000:]}")
        try:
            if urllib.request.urlopen(url, timeout=2).status == 200:
                return
        except OSError:
            time.sleep(1)
    sys.exit(f"{url} did not answer in {seconds:.0f} s; see {log}")


def start(args: list[str], env: dict[str, str], log: Path, url: str, seconds: float) -> subprocess.Popen:
    out = open(log, "w")
    proc = subprocess.Popen(args, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent)
    wait_for(url, proc, log, seconds)
    return proc


def start_label_studio(a, work: Path) -> subprocess.Popen:
    env = {
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(work),
        "ML_BLOCK_LOCAL_IP": "false",
        "SSRF_PROTECTION_ENABLED": "false",
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
    }
    args = [a.label_studio, "start", "--no-browser", "--data-dir", str(work / "ls_data"), "-p", str(a.ls_port)]
    args += ["--internal-host", "127.0.0.1", "--username", a.email, "--password", a.password]
    args += ["--user-token", TOKEN, "--enable-legacy-api-token"]
    print(f"starting Label Studio on port {a.ls_port} (a few minutes the first time) ...", flush=True)
    return start(args, env, work / "label_studio.log", f"http://127.0.0.1:{a.ls_port}/health", 600)


def make_project(client, work: Path):
    """The project of the folder: labeling config, Local Files storage synced (Label Studio makes the tasks)."""
    from lplgrad.labeling.label_studio import labeling_config

    project = client.projects.create(title="toy-shapes", label_config=labeling_config(CLASSES))
    storage = client.import_storage.local.create(
        project=project.id, path=str(work / "toy_images"), use_blob_urls=True, regex_filter=r".*\.(png|jpg)$",
        recursive_scan=True, title="toy_images",
    )  # fmt: skip
    client.import_storage.local.sync(id=storage.id)
    return project


def start_backend(a, work: Path, ls_url: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "lplgrad.serve", "--config", str(REPO / "configs" / "label_folder.yaml")]
    args += ["--label_studio.url", ls_url, "--state_dir", str(work / "serve_state"), "--port", str(a.ml_port)]
    args += ["--train_every", "0"]  # one training, when Start Training is pressed
    env = {"LABEL_STUDIO_API_KEY": TOKEN, "PYTHONPATH": str(REPO)}
    if a.threads:
        env["OMP_NUM_THREADS"] = str(a.threads)
    print(f"starting python -m lplgrad.serve on port {a.ml_port} ...", flush=True)
    return start(args, env, work / "serve.log", f"http://127.0.0.1:{a.ml_port}/health", 300)


def annotate(client, tasks: list, truth: dict[str, str]) -> None:
    """Each task annotated with its true class, as an annotator would (through the API)."""
    for t in tasks:
        value = {"choices": [truth[t.data["image"].split("?d=toy_images/", 1)[1]]]}
        client.annotations.create(
            id=t.id, result=[{"from_name": "label", "to_name": "image", "type": "choices", "value": value}]
        )


def to_label(client, project, truth: dict[str, str], n: int, first: bool) -> list:
    """The tasks to label: the first time ``n`` at random (what an annotator starts with), then
    the first ``n`` open ones by ascending "Prediction score" (the strategy's picks)."""
    if first:
        tasks = sorted(client.tasks.list(project=project.id, fields="all"), key=lambda t: t.id)
        readable = [t for t in tasks if t.data["image"].split("?d=toy_images/", 1)[1] in truth]
        return random.Random(1).sample(readable, n)
    query = json.dumps({"ordering": ["tasks:predictions_score"]})
    ranked = client.tasks.list(project=project.id, fields="all", query=query)
    return [t for t in ranked if not t.annotations and t.predictions][:n]


def start_training(client, ml, ml_url: str, version: str) -> dict:
    """Press Start Training and wait until the backend has trained ``version``; -> its /health."""
    client.ml.train(id=ml.id)
    print(f"pressed Start Training; waiting for {version} ...", flush=True)
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        health = json.loads(urllib.request.urlopen(ml_url + "/health", timeout=10).read())
        if health["model_version"] == version and not health["training"]:
            print(f"trained {version}: {health['labels']} labels, {health['scored_tasks']} open tasks re-scored")
            return health
        time.sleep(2)
    sys.exit("the training did not end in 30 minutes; see serve.log")


def sorted_view(client, project) -> int:
    """A Data Manager tab sorted by "Prediction score", ascending; -> its id."""
    hidden = [f"tasks:{c}" for c in HIDDEN]
    data = {"title": "by prediction score", "ordering": ["tasks:predictions_score"], "type": "list"}
    data["hiddenColumns"] = {"explore": hidden, "labeling": hidden}
    return client.views.create(project=project.id, data=data).id


def screenshots(a, ls_url: str, project: int, view: int, health: dict) -> list[Path]:
    """Log in, then each page, once the text that shows it is ready is there."""
    from playwright.sync_api import sync_playwright

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    version, first = health["model_version"], health["first_pick"]
    shots = [
        ("model_settings.png", f"/projects/{project}/settings/ml", "text=Connected"),
        ("data_manager.png", f"/projects/{project}/data?tab={view}", f"text={version}"),
        ("labeling_task.png", f"/projects/{project}/data?tab={view}&task={first}", "text=Submit"),
    ]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=a.chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(ls_url + "/user/login/")
        page.fill("input[name=email]", a.email)
        page.fill("input[name=password]", a.password)
        page.click("button[type=submit]")
        page.wait_for_selector("text=toy-shapes")  # the home page, logged in
        for name, path, ready in shots:
            page.goto(ls_url + path)
            page.wait_for_selector(ready, timeout=60_000)
            page.wait_for_load_state("networkidle")
            page.wait_for_timeout(1500)  # images and transitions settle (not a test: a picture)
            page.screenshot(path=str(out / name))
        browser.close()
    return [out / name for name, _, _ in shots]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--label-studio", default=os.environ.get("LPLGRAD_LABEL_STUDIO") or "label-studio")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    ap.add_argument("--work", type=Path, default=Path("ls_walkthrough"), help="made afresh")
    ap.add_argument("--out", default=str(REPO / "docs" / "figures" / "labeling"), help="where the PNGs go")
    ap.add_argument("--ls-port", type=int, default=8080)
    ap.add_argument("--ml-port", type=int, default=9090)
    ap.add_argument("--email", default="me@example.com")
    ap.add_argument("--password", default="walkthrough-password")
    ap.add_argument("--labels", type=int, default=20, help="tasks annotated before each training")
    ap.add_argument("--rounds", type=int, default=2, help="trainings (the first on random tasks)")
    ap.add_argument("--threads", type=int, default=None, help="the backend's CPU threads (OMP_NUM_THREADS)")
    ap.add_argument("--keep", action="store_true", help="leave Label Studio and the backend running")
    a = ap.parse_args(argv)
    from label_studio_sdk import LabelStudio

    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped"))  # and what it started stops too

    work = a.work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    truth = toy_folder(work)
    ls_url, ml_url = f"http://127.0.0.1:{a.ls_port}", f"http://127.0.0.1:{a.ml_port}"
    procs = [start_label_studio(a, work)]
    try:
        client = LabelStudio(base_url=ls_url, api_key=TOKEN)
        project = make_project(client, work)
        procs.append(start_backend(a, work, ls_url))
        ml = client.ml.create(project=project.id, url=ml_url, title="lplgrad")
        for n in range(1, a.rounds + 1):
            annotate(client, to_label(client, project, truth, a.labels, n == 1), truth)
            health = start_training(client, ml, ml_url, f"lplgrad-{n}")
        for line in (work / "serve.log").read_text().splitlines():
            if "lplgrad.serve: training lplgrad-" in line:
                print("backend:", line.split("lplgrad.serve: ", 1)[1])
        view = sorted_view(client, project)
        for path in screenshots(a, ls_url, project.id, view, health):
            print(f"wrote {path}")
        if a.keep:
            print(
                f"running: Label Studio {ls_url} (log in as {a.email} / {a.password}), backend {ml_url}; Ctrl-C stops"
            )
            procs[0].wait()
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(60)


if __name__ == "__main__":
    main()
