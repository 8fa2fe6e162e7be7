"""Live sync against a real Label Studio (integration; ``pytest -m integration``, run by .ci/run).

Label Studio 1.23.2 from PyPI is started on a loopback port with a temporary data folder,
local-files serving on and a known legacy API token. Two rounds: import with predictions,
annotate through the API, sync back, check the labels CSV and that the next batch excludes what
was labelled; then idempotency and one-line failures that change no local file.
"""

import hashlib
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from lplgrad.label import cli_main as label_main
from lplgrad.labeling.labels import read_rows
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


def run(url: str, root: Path, tmp: Path, *extra: str) -> dict:
    return label_main(
        [
            "--config",
            str(ROOT / "configs" / "label_folder.yaml"),
            "--images",
            str(root / "shapes"),
            "--labels",
            str(tmp / "labels.csv"),
            "--classes",
            "circle,square,triangle",
            "--out",
            str(tmp / "out"),
            "--label_studio.url",
            url,
            "--label_studio.project",
            PROJECT,
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

    # the annotator labels them; round 2 pulls them into the CSV, trains and imports the next batch
    assert annotate(client, project.id, truth) == 6
    second = run(url, root, tmp_path)
    rows = {p: label for _, p, label in read_rows(tmp_path / "labels.csv")}
    assert rows == {p: truth[p] for p in first["proposed"]}
    assert second["mode"] == "trained" and len(second["proposed"]) == 6
    assert not set(second["proposed"]) & set(first["proposed"])
    new = [t for t in client.tasks.list(project=project.id, fields="all") if t.data["path"] in second["proposed"]]
    assert len(new) == 6 and all(t.predictions[0].result[0]["value"]["choices"][0] in truth.values() for t in new)
    assert "6 new rows appended" in capsys.readouterr().out

    # idempotent: merging and importing the same again adds nothing
    from lplgrad.labeling.label_studio import merge_labels
    from lplgrad.labeling.live import connect

    live = connect(url, PROJECT, "LABEL_STUDIO_API_KEY", ["circle", "square", "triangle"])
    pairs, notes, existing = live.pull("/data/local-files/?d=shapes/")
    assert merge_labels(pairs, notes, tmp_path / "labels.csv", root / "shapes").new == 0
    import json

    assert live.push(json.loads((Path(second["round_dir"]) / "label_studio.json").read_text()), existing) == 0

    # round 3: the second batch's labels come back, the next batch excludes all twelve
    assert annotate(client, project.id, truth) == 6
    third = run(url, root, tmp_path, "--resume")
    labelled = {p for _, p, _ in read_rows(tmp_path / "labels.csv")}
    assert len(labelled) == 12 and not set(third["proposed"]) & labelled
    assert len(list(client.tasks.list(project=project.id))) == 18


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
