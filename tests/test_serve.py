"""The Label Studio ML backend (``python -m lplgrad.serve``) against a fake Label Studio: every
route through Flask's test client, the worker's coalescing and retries, the order of the scores,
the state's round trip, one real (tiny) training that re-scores the open tasks, and two that
keep the stop signal and an audit sample."""

import base64
import io
import json
import logging
import shutil
import threading
from pathlib import Path

import pytest
from PIL import Image

from helpers.fake_ml_label_studio import FakeMLLabelStudio
from helpers.shapes import CONFIG, TINY_LABEL, make_shapes
from lplgrad.errors import LabelStudioError
from lplgrad.estimate import wilson
from lplgrad.labeling.label_studio import labeling_config
from lplgrad.serve.app import create_app
from lplgrad.serve.backend import Auth, Backend
from lplgrad.serve.cli import cli_main
from lplgrad.serve.config import parse_label_config
from lplgrad.serve.images import extension, source_url
from lplgrad.serve.predictor import Predictor
from lplgrad.serve.project import open_project
from lplgrad.serve.signals import STOP_HISTORY
from lplgrad.serve.state import StateFile
from lplgrad.serve.training import rank_scores, run_training

CLASSES = ["circle", "square", "triangle"]
TINY = ["--config", CONFIG, *TINY_LABEL, "--data.min_labels", "4"]


#: how long a wait for the worker may last before the test calls it hung (the waits end on the
#: worker's condition, so this only bounds a failure)
HUNG = 120


def backend_with(tmp_path, job=lambda b: None, **kwargs) -> Backend:
    b = Backend(tmp_path / "state", job, **kwargs)
    b.worker.start()
    return b


def test_health_setup_and_versions(tmp_path):
    backend = backend_with(tmp_path)
    client = create_app(backend).test_client()
    health = client.get("/health").get_json()
    assert health["status"] == "UP" and health["model_version"] == "lplgrad-0" and health["project"] is None
    got = client.post("/setup", json={"project": "5.1733000000", "schema": "<View/>", "extra_params": None})
    assert got.status_code == 200 and got.get_json() == {"model_version": "lplgrad-0"}
    assert backend.state.read().project == 5  # adopted from /setup
    assert client.get("/versions").get_json() == {"versions": ["lplgrad-0"]}


def test_predict_answers_from_the_last_scoring_in_task_order(tmp_path):
    backend = backend_with(tmp_path)
    backend.state.update(
        version=3, project=7, scores={"11": ["square", 0.5], "12": [None, 1.0], "10": ["circle", 0.25]}
    )
    config = (
        labeling_config(CLASSES, choices_name="kind")
        .replace('name="image"', 'name="img"')
        .replace('toName="image"', 'toName="img"')
    )
    body = {"tasks": [{"id": 10}, {"id": 13}, {"id": 11}], "project": "7.1", "label_config": config, "params": {}}
    got = create_app(backend).test_client().post("/predict", json=body).get_json()
    first, unknown, third = got["results"]
    assert first == {
        "result": [{"from_name": "kind", "to_name": "img", "type": "choices", "value": {"choices": ["circle"]}}],
        "score": 0.25,
        "model_version": "lplgrad-3",
    }
    assert unknown == {"result": [], "score": None, "model_version": "lplgrad-3"}
    assert third["score"] == 0.5 and third["result"][0]["value"]["choices"] == ["square"]
    bad = create_app(backend).test_client().post("/predict", json={"tasks": [], "label_config": "<View/>"})
    assert bad.status_code == 400 and "Choices" in bad.get_json()["error"]


def test_webhook_counts_annotation_events_and_starts_training(tmp_path):
    runs = []
    backend = backend_with(tmp_path, lambda b: runs.append(b.state.read().pending_events), train_every=3)
    client = create_app(backend).test_client()
    project = {"id": 7, "label_config": "<View/>"}
    for action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED"):
        got = client.post("/webhook", json={"action": action, "annotation": {"id": 1}, "project": project})
        assert got.status_code == 201
    assert backend.worker.wait_idle(HUNG) and runs == [] and backend.state.read().pending_events == 2
    assert client.post("/webhook", json={"action": "PROJECT_UPDATED", "project": project}).status_code == 200
    got = client.post(
        "/webhook", json={"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 1}], "project": project}
    )
    assert got.get_json()["status"] == "training requested"
    assert backend.worker.wait_idle(HUNG) and runs == [0]
    other = client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 8}})
    assert other.get_json()["status"] == "ignored: another project"
    client.post("/webhook", json={"action": "START_TRAINING", "project": project})
    assert backend.worker.wait_idle(HUNG) and len(runs) == 2
    assert client.post("/webhook", json={"project": project}).status_code == 400


def test_events_during_a_training_are_coalesced_into_one_more(tmp_path):
    release, started, runs = threading.Event(), threading.Event(), []

    def job(b):
        runs.append(threading.current_thread())
        started.set()
        release.wait(HUNG)

    backend = backend_with(tmp_path, job, project=7)
    client = create_app(backend).test_client()
    client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 7}})
    assert started.wait(HUNG)
    for _ in range(5):  # while the first training is held: answered, and nothing trained in the request
        assert client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 7}}).status_code == 201
    assert not release.is_set() and len(runs) == 1 and runs[0] is not threading.current_thread()
    release.set()
    assert backend.worker.wait_idle(HUNG)
    assert len(runs) == 2 and runs[1] is runs[0]  # the five requests became one more training, on the worker


def test_label_studio_down_is_one_line_and_retried(tmp_path, caplog):
    calls = []

    def job(b):
        calls.append(1)
        if len(calls) == 1:
            raise LabelStudioError("Label Studio at http://127.0.0.1:1: listing the tasks failed: ConnectError")

    backend = Backend(tmp_path / "state", job, project=7, retry_first=0.05)
    backend.worker.start()
    with caplog.at_level(logging.INFO, logger="lplgrad.serve"):
        backend.worker.request("test")
        assert backend.worker.wait_idle(HUNG)
    assert len(calls) == 2  # retried, then done
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "listing the tasks failed" in line and "trying again in" in line and "\n" not in line
    assert backend.state.read().last_error.startswith("Label Studio at")


def test_state_round_trip(tmp_path):
    state = StateFile(tmp_path)
    state.update(version=4, project=3, labels=12, pending_events=2, scores={"5": ["circle", 0.5]}, skipped=["task 9"])
    again = StateFile(tmp_path).read()
    assert again == state.read() and again.model_version == "lplgrad-4"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # written atomically, nothing left over
    restarted = Backend(tmp_path, lambda b: None, train_every=3)
    assert create_app(restarted).test_client().post("/setup", json={"project": "3.1"}).get_json() == {
        "model_version": "lplgrad-4"
    }
    assert restarted.event("ANNOTATION_CREATED", {"project": {"id": 3}}) == "training requested"  # 2 + 1 events


def test_basic_auth(tmp_path):
    backend = backend_with(tmp_path, auth=Auth("ls", "secret"))
    client = create_app(backend).test_client()
    assert client.get("/health").status_code == 401
    wrong = base64.b64encode(b"ls:nope").decode()
    assert client.get("/health", headers={"Authorization": f"Basic {wrong}"}).status_code == 401
    right = base64.b64encode(b"ls:secret").decode()
    assert client.get("/health", headers={"Authorization": f"Basic {right}"}).status_code == 200


def test_score_order_and_image_sources():
    scores = rank_scores([30, 10, 20], ["a", None, "b"])
    assert sorted(scores, key=lambda t: scores[t][1]) == [30, 10, 20]  # ascending score = the strategy's order
    assert scores[20] == ("b", 1.0)
    ls = "http://ls:8080"
    assert source_url("/data/local-files/?d=a/b.png", ls, 1) == (ls + "/data/local-files/?d=a/b.png", True)
    assert source_url("/data/upload/3/x.jpg", ls, 1) == (ls + "/data/upload/3/x.jpg", True)
    url, key = source_url("s3://bucket/k.png", ls, 9)
    assert url.startswith(ls + "/tasks/9/presign/?fileuri=") and key
    assert source_url("https://example.com/a.png", ls, 1) == ("https://example.com/a.png", False)
    assert extension("/data/local-files/?d=a/b%20c.JPG") == ".jpg" and extension("https://x/y", "image/png") == ".png"
    resolving = "/tasks/9/resolve/?fileuri=" + base64.urlsafe_b64encode(b"s3://bucket/k.png").decode()
    buffer = io.BytesIO()
    Image.new("RGB", (2, 2)).save(buffer, "PNG")
    assert (
        extension(resolving) == ".png" and extension("https://x/y", "binary/octet-stream", buffer.getvalue()) == ".png"
    )
    assert extension("https://x/y", "text/html", b"<html>") == ".img"  # not an image: skipped, not cached
    cfg = parse_label_config(labeling_config(CLASSES))
    assert (cfg.from_name, cfg.to_name, cfg.value_key, cfg.classes) == ("label", "image", "image", CLASSES)


def test_a_training_rescores_every_open_task(tmp_path, monkeypatch):
    """One real training on a fake project: deleted and cancelled annotations are no labels, an
    unreadable and a missing image are skipped and reported, every open task gets a prediction of
    the new version with ascending scores in the strategy's order, and the project's model
    version is set; a restart keeps the version and the next training increments it."""
    truth = make_shapes(tmp_path / "images", n=18)
    ls = FakeMLLabelStudio(CLASSES)
    monkeypatch.setattr("httpx.get", ls.get)
    monkeypatch.setenv("FAKE_KEY", "token")
    ids = {p: ls.add_task(f"/data/local-files/?d=images/{p}", tmp_path / "images" / p) for p in sorted(truth)}
    broken = ls.add_task("/data/local-files/?d=images/set_a/broken.png", tmp_path / "images" / "set_a" / "broken.png")
    missing = ls.add_task("/data/upload/7/gone.png", None)
    paths = sorted(truth)
    for n, p in enumerate(paths[:8]):
        ls.annotate(ids[p], truth[p], id=n + 1, at=f"2026-01-01T00:00:{n:02d}")
    ls.annotate(ids[paths[8]], truth[paths[8]], id=50, at="2026-01-01T00:01:00", cancelled=True)
    ls.tasks_[ids[paths[0]] - 100].annotations.clear()  # deleted in Label Studio: back to the pool
    state = StateFile(tmp_path / "state")
    state.update(project=7)

    def open_live():
        return open_project("http://ls", "FAKE_KEY", 7, client_factory=ls)

    scored = run_training(TINY, state, open_live)
    assert scored.labelled == 7 and scored.trained
    saved = state.read()
    assert saved.version == 1 and ls.project.model_version == "lplgrad-1"
    open_tasks = {ids[p] for p in paths if p not in paths[1:8]}
    predicted = ls.latest("lplgrad-1")
    assert set(predicted) == open_tasks  # every open task with a readable image, none of the labelled ones
    order = sorted(predicted, key=lambda t: predicted[t]["score"])
    assert order[0] == saved.first_pick and [int(t) for t in saved.scores] == order
    assert all(p["result"][0]["value"]["choices"][0] in CLASSES for p in predicted.values())
    assert any(line.startswith(f"task {broken}:") for line in saved.skipped)
    assert any(line.startswith(f"task {missing}:") and "HTTP 404" in line for line in saved.skipped)
    labels_csv = (tmp_path / "state" / "labels.csv").read_text()
    assert labels_csv.count("\n") == 8  # header + 7: the deleted and the cancelled annotation are no labels
    assert (tmp_path / "state" / "model.ckpt").is_file()

    fetched = len(ls.gets)
    run_training(TINY, StateFile(tmp_path / "state"), open_live)  # a restarted backend: the next version
    assert StateFile(tmp_path / "state").read().version == 2 and ls.project.model_version == "lplgrad-2"
    assert len(ls.gets) == fetched + 1  # images cached: only the missing one is tried again
    assert all(ls.versions_of(t) == ["lplgrad-2"] for t in open_tasks)  # lplgrad-1's were deleted

    # a task added since: /predict classifies it with the last trained network, without a score
    new = ls.add_task("/data/local-files/?d=images/set_a/img_000.png?copy", tmp_path / "images" / paths[0])
    backend = Backend(tmp_path / "state", lambda b: None)
    backend.predictor = Predictor(tmp_path / "state", open_live)
    body = {"tasks": [{"id": new, "data": {"image": ls.tasks_[-1].data["image"]}}, {"id": order[0]}]}
    got = create_app(backend).test_client().post("/predict", json={**body, "label_config": ls.project.label_config})
    fresh, ranked = got.get_json()["results"]
    assert fresh["result"][0]["value"]["choices"][0] in CLASSES and fresh["score"] is None
    assert (
        fresh["model_version"] == "lplgrad-2"
        and ranked["score"] == StateFile(tmp_path / "state").read().scores[str(order[0])][1]
    )


def test_two_trainings_keep_the_stop_signal_and_an_audit(tmp_path, monkeypatch):
    """With --audit.size 3, each training draws 3 open tasks that get no prediction (neither
    posted nor from /predict) and are not trained on once labelled; the second training, with
    more labels, has a stop kappa and the accuracy on the 2 labelled audit tasks. Their labels
    do not change the network, so a rehearsal of the second training (on a copy of the state)
    tells its classes: one audit task is labelled with it, one not, and the estimate is Wilson's
    interval of 1 hit in 2."""
    truth = make_shapes(tmp_path / "images", n=18)
    ls = FakeMLLabelStudio(CLASSES)
    monkeypatch.setattr("httpx.get", ls.get)
    monkeypatch.setenv("FAKE_KEY", "token")
    paths = sorted(truth)
    ids = {p: ls.add_task(f"/data/local-files/?d=images/{p}", tmp_path / "images" / p) for p in paths}
    path_of = {t: p for p, t in ids.items()}
    for n, p in enumerate(paths[:8]):
        ls.annotate(ids[p], truth[p], id=n + 1, at=f"2026-01-01T00:00:{n:02d}")
    state = StateFile(tmp_path / "state")
    state.update(project=7)
    args = [*TINY, "--audit.size", "3"]

    def open_live():
        return open_project("http://ls", "FAKE_KEY", 7, client_factory=ls)

    def stop_predictions(state_dir: Path) -> dict[int, str]:
        latest = json.loads((state_dir / STOP_HISTORY).read_text())["trainings"][-1]
        return {int(name.split("-", 1)[0]): label for name, label in latest["predictions"].items()}

    first = run_training(args, state, open_live)
    audit = state.read().audit
    assert len(audit) == 3 and not set(audit) & {ids[p] for p in paths[:8]} and first.labelled == 8
    assert not set(audit) & set(ls.latest("lplgrad-1")) and state.read().stop_kappa is None
    assert (tmp_path / "state" / "stop_set.json").is_file()
    others = [ids[p] for p in paths[8:] if ids[p] not in audit][:2]
    for n, task in enumerate([*audit[:2], *others]):
        ls.annotate(task, truth[path_of[task]], id=20 + n, at=f"2026-01-02T00:00:{n:02d}")
    shutil.copytree(tmp_path / "state", tmp_path / "rehearsal")
    run_training(args, StateFile(tmp_path / "rehearsal"), open_live)
    classes = stop_predictions(tmp_path / "rehearsal")
    hit, miss = audit[:2]
    ls.annotate(hit, classes[hit], id=30, at="2026-01-03T00:00:00")
    ls.annotate(miss, next(c for c in CLASSES if c != classes[miss]), id=31, at="2026-01-03T00:00:01")

    second = run_training(args, state, open_live)
    saved = state.read()
    assert second.labelled == 10 and len(saved.audit) == 6 and saved.audit[:3] == audit  # 8 + 2, not the audit's
    labels_csv = (tmp_path / "state" / "labels.csv").read_text()
    assert not any(line.startswith(f"{t}-") for t in saved.audit for line in labels_csv.splitlines())
    assert not set(saved.audit) & set(ls.latest("lplgrad-2"))
    assert not any(ls.versions_of(t) for t in saved.audit)  # those drawn now had lplgrad-1's: deleted
    assert isinstance(saved.stop_kappa, float) and -1 <= saved.stop_kappa <= 1
    assert stop_predictions(tmp_path / "state") == classes  # the audit's labels did not change the network
    assert saved.audit_estimate == wilson(1, 2).as_dict()

    backend = Backend(tmp_path / "state", lambda b: None)
    backend.predictor = Predictor(tmp_path / "state", open_live)  # would classify any task not scored
    client = create_app(backend).test_client()
    health = client.get("/health").get_json()
    assert health["stop_kappa"] == saved.stop_kappa and health["audit_estimate"]["n"] == 2
    assert health["audit_tasks"] == 6 and "audit" not in health
    tasks = [{"id": t, "data": {"image": f"/data/local-files/?d=images/{path_of[t]}"}} for t in saved.audit]
    body = {"tasks": tasks, "label_config": ls.project.label_config}
    got = client.post("/predict", json=body).get_json()["results"]
    assert all(r["result"] == [] and r["score"] is None for r in got)


def test_a_training_while_label_studio_is_down_changes_nothing(tmp_path, monkeypatch):
    ls = FakeMLLabelStudio(CLASSES)
    ls.down = True
    monkeypatch.setenv("FAKE_KEY", "token")
    state = StateFile(tmp_path / "state")
    state.update(project=7, version=2)
    with pytest.raises(LabelStudioError, match="failed"):
        run_training(TINY, state, lambda: open_project("http://ls", "FAKE_KEY", 7, client_factory=ls))
    assert StateFile(tmp_path / "state").read().version == 2


def test_the_command_line_stops_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    with pytest.raises(SystemExit) as e:
        cli_main([*TINY, "--state_dir", str(tmp_path / "s"), "--label_studio.url", "http://127.0.0.1:1"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("lplgrad.serve: error:") and "LABEL_STUDIO_API_KEY" in err[-1]
    assert Path(tmp_path / "s").exists() is False or not any(Path(tmp_path / "s").iterdir())
