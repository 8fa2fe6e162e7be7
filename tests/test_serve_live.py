"""The ML backend (``python -m lplgrad.serve``) against a real Label Studio 1.23.2
(integration; ``pytest -m integration``).

Label Studio is started on a loopback port with ``ML_BLOCK_LOCAL_IP=false`` and
``SSRF_PROTECTION_ENABLED=false`` (1.23 refuses a backend or webhook on a local address
otherwise), the backend as its own process on another. The test makes a project whose tasks
Label Studio creates from a Local Files storage, connects the backend through the API
(``POST /api/ml``), annotates through the API, and trains with N annotations and with
START_TRAINING; after each training (polled, never a fixed sleep) every open task has one
prediction, of the new model version (the older ones deleted), and the first task by ascending
"Prediction score" is the strategy's first pick. A deleted annotation leaves the training set,
an unreadable image is skipped and reported, a restarted backend continues with the next
version, and a task added after a training gets the network's class when Label Studio asks
``/predict``. Label Studio unreachable during a training (a proxy switched off) is one logged
line and a retry. Two more projects hold images uploaded through Label Studio's import
(``/data/upload/...``) and images of an S3 source storage on moto's S3 server (``s3://...``,
fetched through Label Studio's presign route), trained and predicted alike.
"""

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from helpers.label_studio_server import TOKEN, free_port, label_studio, wait_http
from helpers.shapes import CONFIG, make_shapes
from helpers.switch_proxy import SwitchProxy
from lplgrad.labeling.label_studio import labeling_config

pytestmark = pytest.mark.integration
CLASSES = ["circle", "square", "triangle"]
DEADLINE = 600  # seconds for one training on a busy 2-core machine


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    env = {
        "ML_BLOCK_LOCAL_IP": "false",
        "SSRF_PROTECTION_ENABLED": "false",
        "LABEL_STUDIO_ML_BLOCK_LOCAL_IP": "false",
        "LABEL_STUDIO_SSRF_PROTECTION_ENABLED": "false",
    }
    with label_studio(tmp_path_factory.mktemp("ls"), env) as found:
        yield found


class ServeProcess:
    """``python -m lplgrad.serve`` as its own process."""

    def __init__(self, ls_url: str, state_dir: Path, port: int, log: Path, project: int | None = None):
        self.url, self.log = f"http://127.0.0.1:{port}", log
        args = [sys.executable, "-m", "lplgrad.serve", "--config", CONFIG, "--trainer.accelerator", "cpu"]
        args += ["--trainer.max_epochs", "1", "--model.backbone.init_args.width", "2", "--data.image_size", "16"]
        args += ["--data.min_labels", "4", "--state_dir", str(state_dir), "--port", str(port)]
        args += ["--label_studio.url", ls_url, "--train_every", "4", "--retry_max", "10"]
        args += ["--label_studio.project", str(project)] if project is not None else []
        env = {**os.environ, "LABEL_STUDIO_API_KEY": TOKEN, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        self.out = open(log, "a")
        self.proc = subprocess.Popen(args, env=env, stdout=self.out, stderr=subprocess.STDOUT)
        wait_http(self.url + "/health", self.proc, log, 120)

    def health(self) -> dict:
        return json.loads(urllib.request.urlopen(self.url + "/health", timeout=5).read())

    def wait_version(self, version: str) -> dict:
        """Poll /health until ``version`` is trained and nothing more is running."""
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            h = self.health()
            if h["model_version"] == version and not h["training"]:
                return h
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            time.sleep(0.5)
        pytest.fail(f"{version} not reached in {DEADLINE} s: {self.health()}\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.out.close()


def path_of(task) -> str:
    return parse_qs(urlsplit(task.data["image"]).query)["d"][0].split("/", 1)[1]


def annotate(client, task, label: str) -> None:
    client.annotations.create(
        id=task.id,
        result=[{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}],
    )


def check_rescored(client, project_id: int, health: dict, broken: set[int] | None = None) -> None:
    """Every open task with a readable image has one prediction, of the backend's version (the
    older ones deleted); the first by ascending "Prediction score" is the strategy's first
    pick; the tasks in ``broken`` (default: those of broken.png) are reported as skipped."""
    version = health["model_version"]
    tasks = list(client.tasks.list(project=project_id, fields="all"))
    if broken is None:
        broken = {t.id for t in tasks if path_of(t).endswith("broken.png")}
    open_tasks = [t for t in tasks if not t.annotations and t.id not in broken]
    assert open_tasks and all([p.model_version for p in t.predictions] == [version] for t in open_tasks)
    query = json.dumps({"ordering": ["tasks:predictions_score"]})
    first = next(iter(client.tasks.list(project=project_id, fields="all", query=query)))
    assert first.id == health["first_pick"]
    assert broken and all(any(line.startswith(f"task {b}:") for line in health["skipped"]) for b in broken)


def project_of_folder(client, folder, title: str):
    """A project whose tasks Label Studio makes from a Local Files storage of ``folder``; returns
    the project and its tasks, by image path."""
    project = client.projects.create(title=title, label_config=labeling_config(CLASSES))
    storage = client.import_storage.local.create(
        project=project.id, path=str(folder), use_blob_urls=True, regex_filter=r".*\.(png|jpg)$", recursive_scan=True
    )
    client.import_storage.local.sync(id=storage.id)
    return project, sorted(client.tasks.list(project=project.id, fields="all"), key=path_of)


def test_the_backend_trains_and_rescores_in_label_studio(server, tmp_path):
    from label_studio_sdk import LabelStudio

    ls_url, root = server
    truth = make_shapes(root / "shapes", n=24)
    client = LabelStudio(base_url=ls_url, api_key=TOKEN)
    project, tasks = project_of_folder(client, root / "shapes", "lplgrad ml backend test")
    assert len(tasks) == 25  # 24 images and the broken one: Label Studio made the tasks

    backend = ServeProcess(ls_url, tmp_path / "state", free_port(), tmp_path / "serve.log")
    ml = client.ml.create(project=project.id, url=backend.url, title="lplgrad")
    assert backend.health()["project"] == project.id  # adopted at /setup

    readable = [t for t in tasks if not path_of(t).endswith("broken.png")]
    for t in readable[:4]:  # N = 4 annotations start a training
        annotate(client, t, truth[path_of(t)])
    backend.wait_version("lplgrad-1")
    for t in readable[4:7]:
        annotate(client, t, truth[path_of(t)])
    client.ml.train(id=ml.id)  # START_TRAINING
    health = backend.wait_version("lplgrad-2")
    assert health["labels"] == 7
    check_rescored(client, project.id, health)

    gone = client.tasks.get(id=readable[0].id).annotations[0]["id"]
    client.annotations.delete(id=gone)
    client.ml.train(id=ml.id)
    health = backend.wait_version("lplgrad-3")
    assert health["labels"] == 6  # the deleted annotation left the training set
    check_rescored(client, project.id, health)

    backend.stop()  # a restarted backend continues where it was
    backend = ServeProcess(ls_url, tmp_path / "state", int(backend.url.rsplit(":", 1)[1]), tmp_path / "serve.log")
    assert backend.health()["model_version"] == "lplgrad-3"
    client.ml.train(id=ml.id)
    check_rescored(client, project.id, backend.wait_version("lplgrad-4"))

    # a task added since the last training: Label Studio asks /predict, the network classifies it
    client.projects.import_tasks(id=project.id, request=[{"image": readable[1].data["image"]}])
    new = max(client.tasks.list(project=project.id), key=lambda t: t.id)
    assert new.data == {"image": readable[1].data["image"]}
    client.actions.create(
        id="retrieve_tasks_predictions", project=project.id, selected_items={"all": False, "included": [new.id]}
    )
    (got,) = client.tasks.get(id=new.id).predictions
    assert got.model_version == "lplgrad-4" and got.result[0]["value"]["choices"][0] in CLASSES
    backend.stop()


def test_label_studio_unreachable_during_a_training_is_retried(server, tmp_path):
    """The backend reaches Label Studio through a proxy that is switched off: the training
    fails with one logged line and nothing changes; switched on, the retry trains and re-scores."""
    from label_studio_sdk import LabelStudio

    ls_url, root = server
    truth = make_shapes(root / "shapes_fault", n=12)
    client = LabelStudio(base_url=ls_url, api_key=TOKEN)
    project, tasks = project_of_folder(client, root / "shapes_fault", "lplgrad ml backend fault test")
    for t in [t for t in tasks if not path_of(t).endswith("broken.png")][:5]:
        annotate(client, t, truth[path_of(t)])

    proxy = SwitchProxy(int(ls_url.rsplit(":", 1)[1]))
    proxy.on = False
    log = tmp_path / "serve.log"
    backend = ServeProcess(f"http://127.0.0.1:{proxy.port}", tmp_path / "state", free_port(), log, project.id)
    ml = client.ml.create(project=project.id, url=backend.url, title="lplgrad")
    client.ml.train(id=ml.id)
    deadline = time.monotonic() + DEADLINE
    while "training failed" not in log.read_text():
        assert time.monotonic() < deadline and backend.proc.poll() is None, log.read_text()[-3000:]
        time.sleep(0.2)
    proxy.on = True
    health = backend.wait_version("lplgrad-1")
    (line,) = [ln for ln in log.read_text().splitlines() if "training failed" in ln]
    assert "Label Studio at" in line and "trying again in 5 s" in line and proxy.refused >= 1
    assert health["labels"] == 5 and health["last_error"] is None
    check_rescored(client, project.id, health)
    backend.stop()
    proxy.close()


def serve_and_train(client, ls_url: str, project, readable: list, label_of, tmp_path: Path):
    """The backend connected to ``project``, trained on 4 annotations of ``readable`` tasks
    (``label_of(task)`` gives the class); -> (the backend, its /health after the training)."""
    backend = ServeProcess(ls_url, tmp_path / "state", free_port(), tmp_path / "serve.log", project.id)
    client.ml.create(project=project.id, url=backend.url, title="lplgrad")
    for t in readable[:4]:
        annotate(client, t, label_of(t))
    return backend, backend.wait_version("lplgrad-1")


def test_uploaded_images_are_trained_and_predicted(server, tmp_path):
    """Images uploaded through Label Studio's import (as its "Upload Files" dialog does): the
    tasks show /data/upload/... URLs, which the backend fetches with the key."""
    import httpx
    from label_studio_sdk import LabelStudio

    ls_url, _ = server
    truth = {Path(p).name: c for p, c in make_shapes(tmp_path / "upload", n=12).items()}
    client = LabelStudio(base_url=ls_url, api_key=TOKEN)
    project = client.projects.create(title="lplgrad ml backend uploads", label_config=labeling_config(CLASSES))
    files = sorted(tmp_path.glob("upload/**/*.png")) + sorted(tmp_path.glob("upload/**/*.jpg"))
    got = httpx.post(
        f"{ls_url}/api/projects/{project.id}/import",
        headers={"Authorization": f"Token {TOKEN}"},
        files=[(f"file{n}", (f.name, f.read_bytes())) for n, f in enumerate(files)],  # one key a file
        timeout=120,
    )
    assert got.status_code == 201, got.text
    tasks = list(client.tasks.list(project=project.id, fields="all"))
    name = {t.id: t.data["image"].rsplit("/", 1)[1].split("-", 1)[1] for t in tasks}  # <hash>-<file name>
    assert len(tasks) == 13 and all(t.data["image"].startswith(f"/data/upload/{project.id}/") for t in tasks)
    broken = {t.id for t in tasks if name[t.id] == "broken.png"}
    readable = sorted((t for t in tasks if t.id not in broken), key=lambda t: t.id)
    backend, health = serve_and_train(client, ls_url, project, readable, lambda t: truth[name[t.id]], tmp_path)
    assert health["labels"] == 4
    check_rescored(client, project.id, health, broken)
    backend.stop()


def test_images_in_s3_are_fetched_through_label_studio(server, tmp_path):
    """An S3-compatible server (moto's, on loopback) as the project's S3 source storage with a
    custom endpoint: the tasks hold s3:// URIs, which the backend fetches through Label Studio's
    presign route (Label Studio redirects to a presigned URL of the storage), for the training
    and for /predict of a task added since."""
    import boto3  # moto[server] and boto3: the test extra
    from label_studio_sdk import LabelStudio
    from moto.server import ThreadedMotoServer

    ls_url, _ = server
    port = free_port()
    s3_server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    s3_server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        keys = {"aws_access_key_id": "lplgrad", "aws_secret_access_key": "lplgrad-secret", "region_name": "us-east-1"}
        s3 = boto3.client("s3", endpoint_url=endpoint, **keys)
        s3.create_bucket(Bucket="lplgrad-images")
        truth = make_shapes(tmp_path / "s3", n=12)
        for rel in [*truth, "set_a/broken.png"]:
            s3.upload_file(str(tmp_path / "s3" / rel), "lplgrad-images", f"shapes/{rel}")
        client = LabelStudio(base_url=ls_url, api_key=TOKEN)
        project = client.projects.create(title="lplgrad ml backend s3", label_config=labeling_config(CLASSES))
        storage = client.import_storage.s3.create(
            project=project.id, bucket="lplgrad-images", prefix="shapes", s3endpoint=endpoint, use_blob_urls=True,
            presign=True, recursive_scan=True, regex_filter=r".*\.(png|jpg)$", **keys,
        )  # fmt: skip
        client.import_storage.s3.sync(id=storage.id)
        tasks = list(client.tasks.list(project=project.id, fields="all", resolve_uri=False))
        key = {t.id: t.data["image"].removeprefix("s3://lplgrad-images/shapes/") for t in tasks}
        assert len(tasks) == 13 and all(t.data["image"].startswith("s3://lplgrad-images/") for t in tasks)
        broken = {t for t, k in key.items() if k.endswith("broken.png")}
        readable = sorted((t for t in tasks if t.id not in broken), key=lambda t: t.id)
        backend, health = serve_and_train(client, ls_url, project, readable, lambda t: truth[key[t.id]], tmp_path)
        check_rescored(client, project.id, health, broken)

        # a task added since, of an object in the bucket: /predict fetches it through the presign route
        client.projects.import_tasks(id=project.id, request=[{"image": readable[5].data["image"]}])
        new = max(client.tasks.list(project=project.id), key=lambda t: t.id)
        client.actions.create(
            id="retrieve_tasks_predictions", project=project.id, selected_items={"all": False, "included": [new.id]}
        )
        (got,) = client.tasks.get(id=new.id).predictions
        assert got.model_version == "lplgrad-1" and got.result[0]["value"]["choices"][0] in CLASSES
        backend.stop()
    finally:
        s3_server.stop()
