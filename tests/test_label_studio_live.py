"""Live sync against a real Label Studio (integration; ``pytest -m integration``, run by .ci/run).

Label Studio 1.23.2 from PyPI is started on a loopback port with a temporary data folder,
local-files serving on and a known legacy API token. Rounds: import with predictions (the images
checked served first), annotate through the API, sync back, check the labels CSV and that the
next batch excludes what was labelled; idempotency; annotations deleted, cancelled, changed and
added by a second annotator in Label Studio, which the labels CSV and the next training set
follow; a document root above the image folder's parent, which stops the first run with the
--url_prefix that works; one-line failures that change no local file.
"""

import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

import torch

from lplgrad.label import cli_main as label_main
from lplgrad.labeling.labels import read_rows
from lplgrad.labeling.live import connect
from lplgrad.labeling.served import RECORD
from lplgrad.labeling.snapshot import snapshot_labels
from helpers.shapes import make_shapes

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]
TOKEN = "lplgrad0integration0test0token0123456789"
PROJECT = "lplgrad live sync test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def label_studio_binary() -> str | None:
    return os.environ.get("LPLGRAD_LABEL_STUDIO") or shutil.which("label-studio")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    binary = label_studio_binary()
    if binary is None:
        if os.environ.get("LPLGRAD_REQUIRE_LABEL_STUDIO"):
            pytest.fail("label-studio is not installed (LPLGRAD_LABEL_STUDIO names its executable)")
        pytest.skip("label-studio is not installed: pip install label-studio==1.23.2 in its own environment")
    base = tmp_path_factory.mktemp("ls")
    (base / "root").mkdir()
    port = free_port()
    env = {
        **os.environ,
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(base / "root"),
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
    }
    log = open(base / "label_studio.log", "w")
    proc = subprocess.Popen(
        [
            binary,
            "start",
            "--no-browser",
            "--data-dir",
            str(base / "data"),
            "--internal-host",
            "127.0.0.1",
            "-p",
            str(port),
            "--username",
            "admin@example.com",
            "--password",
            "lplgrad-test-password",
            "--user-token",
            TOKEN,
            "--enable-legacy-api-token",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(url + "/health", timeout=2).status == 200:
                break
        except OSError:
            time.sleep(2)
        assert proc.poll() is None, (base / "label_studio.log").read_text()[-3000:]
    else:
        proc.terminate()
        pytest.fail("Label Studio did not start within 300 s")
    yield url, base / "root"
    proc.terminate()
    proc.wait(30)
    log.close()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "missing"


def run(url: str, root: Path, tmp: Path, *extra: str, images: str = "shapes", project: str = PROJECT) -> dict:
    return label_main(
        [
            "--config",
            str(ROOT / "configs" / "label_folder.yaml"),
            "--images",
            str(root / images),
            "--labels",
            str(tmp / "labels.csv"),
            "--classes",
            "circle,square,triangle",
            "--out",
            str(tmp / "out"),
            "--label_studio.url",
            url,
            "--label_studio.project",
            project,
            "--trainer.accelerator",
            "cpu",
            "--trainer.max_epochs",
            "1",
            "--model.backbone.init_args.width",
            "2",
            "--data.image_size",
            "16",
            "--data.query_size",
            "6",
            "--data.min_labels",
            "6",
            "--stop.size",
            "20",
            *extra,
        ]
    )


def annotate(client, project_id: int, truth: dict[str, str]) -> int:
    """Label every task without an annotation through the API, as an annotator would."""
    done = 0
    for task in client.tasks.list(project=project_id, fields="all"):
        if not task.annotations:
            label = truth[task.data["path"]]
            client.annotations.create(
                id=task.id,
                result=[{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}],
            )
            done += 1
    return done


def test_two_rounds_of_live_sync(server, tmp_path, monkeypatch, capsys):
    from label_studio_sdk import LabelStudio

    url, root = server
    truth = make_shapes(root / "shapes", n=30)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", TOKEN)
    client = LabelStudio(base_url=url, api_key=TOKEN)

    # round 1: no labels yet: the project is created, the cold-start batch imported with predictions
    first = run(url, root, tmp_path)
    assert first["mode"] == "cold_start" and len(first["proposed"]) == 6
    (project,) = [p for p in client.projects.list() if p.title == PROJECT]
    tasks = list(client.tasks.list(project=project.id, fields="all"))
    assert sorted(t.data["path"] for t in tasks) == sorted(first["proposed"])
    scores = sorted((t.predictions[0].score, t.data["rank"]) for t in tasks)
    assert [r for _, r in scores] == list(range(1, 7))  # ascending score = most informative first
    assert all(t.predictions[0].model_version == "out/round_001" for t in tasks)
    image = urllib.request.Request(url + tasks[0].data["image"], headers={"Authorization": f"Token {TOKEN}"})
    assert urllib.request.urlopen(image, timeout=10).status == 200  # local-files serving finds the image
    assert "Label Studio: serves the images" in capsys.readouterr().out  # checked before the import
    assert json.loads((tmp_path / "out" / RECORD).read_text())["url_prefix"] == "/data/local-files/?d=shapes/"

    # the annotator labels them; round 2 pulls them into the CSV, trains and imports the next batch
    assert annotate(client, project.id, truth) == 6
    second = run(url, root, tmp_path)
    rows = {p: label for _, p, label in read_rows(tmp_path / "labels.csv")}
    assert rows == {p: truth[p] for p in first["proposed"]}
    assert second["mode"] == "trained" and len(second["proposed"]) == 6
    assert not set(second["proposed"]) & set(first["proposed"])
    new = [t for t in client.tasks.list(project=project.id, fields="all") if t.data["path"] in second["proposed"]]
    assert len(new) == 6 and all(t.predictions[0].result[0]["value"]["choices"][0] in truth.values() for t in new)
    said = capsys.readouterr().out
    assert "6 labels added, 0 changed, 0 removed" in said and "serves the images" not in said  # checked once

    # idempotent: pulling and importing the same again changes nothing
    live = connect(url, PROJECT, "LABEL_STUDIO_API_KEY", ["circle", "square", "triangle"])
    pulled = live.pull("/data/local-files/?d=shapes/")
    snap = snapshot_labels(tmp_path / "labels.csv", root / "shapes", pulled.truth)
    assert (snap.added, snap.changed, snap.removed, snap.unchanged) == ([], [], [], 6)
    assert live.push(json.loads((Path(second["round_dir"]) / "label_studio.json").read_text()), set(pulled.truth)) == 0

    # round 3: the second batch's labels come back, the next batch excludes all twelve
    assert annotate(client, project.id, truth) == 6
    third = run(url, root, tmp_path, "--resume")
    labelled = {p for _, p, _ in read_rows(tmp_path / "labels.csv")}
    assert len(labelled) == 12 and not set(third["proposed"]) & labelled
    assert len(list(client.tasks.list(project=project.id))) == 18
    change_minds(client, url, root, project.id, truth, tmp_path, capsys)


def choice(label: str) -> list[dict]:
    return [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]


def change_minds(client, url: str, root: Path, project_id: int, truth: dict, tmp_path: Path, capsys) -> None:
    """Annotators change their minds in Label Studio: one annotation deleted, one task skipped
    instead (its annotation deleted, a cancelled one made), one annotation updated, and one image
    given a second annotation with another class after which the first is edited again: the
    first is then the latest (by updated_at, though its id is smaller) and keeps the image's
    class. The next run's labels CSV and training set follow."""
    labelled = {p: label for _, p, label in read_rows(tmp_path / "labels.csv")}
    tasks = [t for t in client.tasks.list(project=project_id, fields="all") if t.data["path"] in labelled]
    (gone, skipped, updated, second), first_ids = tasks[:4], [t.annotations[0]["id"] for t in tasks[:4]]
    other = {p: next(c for c in ("circle", "square", "triangle") if c != truth[p]) for p in labelled}
    client.annotations.delete(id=first_ids[0])
    client.annotations.delete(id=first_ids[1])
    client.annotations.create(id=skipped.id, result=[], was_cancelled=True)
    client.annotations.update(id=first_ids[2], result=choice(other[updated.data["path"]]))
    client.annotations.create(id=second.id, result=choice(other[second.data["path"]]))
    time.sleep(1.1)  # a clearly later updated_at
    client.annotations.update(id=first_ids[3], result=choice(truth[second.data["path"]]))
    fourth = run(url, root, tmp_path, "--resume")
    said = capsys.readouterr().out
    assert "0 labels added, 1 changed, 2 removed, 9 unchanged" in said
    rows = {p: label for _, p, label in read_rows(tmp_path / "labels.csv")}
    expected = {**labelled, updated.data["path"]: other[updated.data["path"]]}
    assert rows == {p: c for p, c in expected.items() if p not in (gone.data["path"], skipped.data["path"])}
    ckpt = torch.load(Path(fourth["round_dir"]) / "model.ckpt", weights_only=True)
    assert fourth["labeled"] == 10 and set(ckpt["labeled"]) == set(rows)


def test_a_document_root_above_the_folders_parent_stops_with_the_prefix_that_works(
    server, tmp_path, monkeypatch, capsys
):
    """The images are root/nested/photos, so the default --url_prefix (?d=photos/) assumes the
    document root is root/nested: every image would be a 404. The first run stops before it
    imports anything, with the prefix that works; run again with it, the images are served."""
    from label_studio_sdk import LabelStudio

    url, root = server
    make_shapes(root / "nested" / "photos", n=12)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", TOKEN)
    title = "lplgrad document root test"
    with pytest.raises(SystemExit) as e:
        run(url, root, tmp_path, images="nested/photos", project=title)
    assert e.value.code == 4
    err = capsys.readouterr().err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("lplgrad.label: error:")]
    assert "HTTP 404" in line and "Traceback" not in err
    assert f"document root (LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT) is {root.resolve()}" in line
    assert "--url_prefix '/data/local-files/?d=nested/photos/'" in line
    assert f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={(root / 'nested').resolve()} and no --url_prefix" in line
    client = LabelStudio(base_url=url, api_key=TOKEN)
    (project,) = [p for p in client.projects.list() if p.title == title]
    assert list(client.tasks.list(project=project.id)) == [] and not (tmp_path / "out").exists()

    first = run(
        url,
        root,
        tmp_path,
        "--url_prefix",
        "/data/local-files/?d=nested/photos/",
        images="nested/photos",
        project=title,
    )
    assert "Label Studio: serves the images" in capsys.readouterr().out and (tmp_path / "out" / RECORD).is_file()
    tasks = list(client.tasks.list(project=project.id, fields="all"))
    assert sorted(t.data["path"] for t in tasks) == sorted(first["proposed"])
    image = urllib.request.Request(url + tasks[0].data["image"], headers={"Authorization": f"Token {TOKEN}"})
    assert urllib.request.urlopen(image, timeout=10).headers["Content-Type"].startswith("image/")


def test_failures_are_one_line_and_change_nothing(server, tmp_path, monkeypatch, capsys):
    url, root = server
    if not (root / "shapes").exists():
        make_shapes(root / "shapes", n=30)
    (tmp_path / "labels.csv").write_text("path,label\n")
    before = sha(tmp_path / "labels.csv")
    for key, where, words in (
        (TOKEN + "x", url, "API key was rejected"),
        (TOKEN, f"http://127.0.0.1:{free_port()}", "failed"),
    ):
        monkeypatch.setenv("LABEL_STUDIO_API_KEY", key)
        with pytest.raises(SystemExit) as e:
            run(where, root, tmp_path)
        assert e.value.code == 4
        err = capsys.readouterr().err
        (line,) = [ln for ln in err.splitlines() if ln.startswith("lplgrad.label: error:")]
        assert words in line and "Traceback" not in err
        assert sha(tmp_path / "labels.csv") == before and not (tmp_path / "out").exists()
    monkeypatch.delenv("LABEL_STUDIO_API_KEY")
    with pytest.raises(SystemExit):
        run(url, root, tmp_path)
    assert "LABEL_STUDIO_API_KEY" in capsys.readouterr().err
