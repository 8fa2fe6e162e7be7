"""Live sync's truth, against a fake Label Studio (tests/helpers/fake_label_studio.py): the labels
CSV as a snapshot of the project (deleted, cancelled, updated annotations, several annotators,
rows written by hand, the CSV's own format, the atomic write), and the check that Label Studio
serves the images before anything is imported. tests/test_label_studio_live.py runs the same
against a real Label Studio 1.23.2."""

from __future__ import annotations

import errno
import json
import os

import pytest
import torch

import lplgrad.labeling.snapshot as snapshot
import lplgrad.records as records
from helpers.fake_label_studio import FakeLabelStudio
from helpers.shapes import CLASSES, make_shapes, run
from lplgrad.errors import LabelStudioError
from lplgrad.labeling.label_studio import latest_choice, project_labels
from lplgrad.labeling.labels import read_rows
from lplgrad.labeling.live import Fetched, LiveProject
from lplgrad.labeling.served import RECORD, check_served, is_image
from lplgrad.labeling.snapshot import snapshot_labels


def ann(id: int, at: str | None, label: str, cancelled: bool = False) -> dict:
    result = [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]
    return {"id": id, "updated_at": at, "was_cancelled": cancelled, "result": result}


def test_the_latest_annotation_that_was_not_cancelled_wins():
    a, b = ann(7, "2026-11-26T10:00:00Z", "circle"), ann(3, "2026-11-26T10:30:00.5+01:00", "square")
    assert latest_choice([a, b], "label", "t")[0] == "circle"  # 10:30+01:00 is 09:30 UTC: earlier
    assert latest_choice([ann(2, "2026-11-26T13:00:00Z", "square"), a], "label", "t")[0] == "square"  # not list order
    same = "2026-11-26T10:00:00Z"
    assert latest_choice([ann(9, same, "square"), ann(4, same, "circle")], "label", "t")[0] == "square"  # then id
    later_skip = ann(8, "2026-11-27T00:00:00Z", "triangle", cancelled=True)
    assert latest_choice([a, later_skip], "label", "t")[0] == "circle"  # a skip does not count
    assert latest_choice([{**a, "was_cancelled": True}, later_skip], "label", "t") == (None, ())  # all cancelled
    assert latest_choice([], "label", "t") == (None, ())  # all deleted


def test_several_tasks_of_one_image_and_tasks_without_a_path():
    tasks = [
        {"id": 1, "data": {"path": "a.png"}, "annotations": [ann(1, "2026-11-26T10:00:00Z", "circle")]},
        {"id": 2, "data": {"path": "a.png"}, "annotations": [ann(2, "2026-11-26T11:00:00Z", "square")]},
        {"id": 3, "data": {"path": "a.png"}, "annotations": []},
        {"id": 4, "data": {"path": "b.png"}, "annotations": []},
        {"id": 5, "data": {"image": "https://elsewhere/c.png"}, "annotations": []},
    ]
    truth, notes = project_labels(tasks)
    assert truth == {"a.png": "square", "b.png": None}
    assert notes == ["task 5: no 'path' in its data (not made by python -m lplgrad.label?)"]


CSV_BEFORE = (
    "\ufeffLabel, PATH ,note\r\n"
    'square,hand/x.png,"kept, by hand"\r\n'  # no task: a row written by hand
    "circle,a/y.png,old note\r\n"  # changed in Label Studio
    "\r\n"
    "triangle,a/z.png,\r\n"  # its annotation was deleted
    'circle,"a/y.png",dup\r\n'  # a second row for a/y.png
    "square,a/u.png,same\r\n"  # unchanged
    "circle,../outside.png,\r\n"  # not in the image folder: not the project's
    "circle,./a/v.png,x"  # unchanged, written another way, no line ending at the end
)
CSV_AFTER = (
    "\ufeffLabel, PATH ,note\r\n"
    'square,hand/x.png,"kept, by hand"\r\n'
    "square,a/y.png,old note\r\n"
    "\r\n"
    "square,a/u.png,same\r\n"
    "circle,../outside.png,\r\n"
    "circle,./a/v.png,x\r\n"
    "triangle,a/w.png,\r\n"  # a new label, at the end
)
TRUTH = {"a/y.png": "square", "a/z.png": None, "a/u.png": "square", "a/v.png": "circle", "a/w.png": "triangle"}


def test_the_snapshot_follows_label_studio_and_keeps_the_csvs_format(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_bytes(CSV_BEFORE.encode())
    snap = snapshot_labels(labels, tmp_path / "img", {**TRUTH, "a/t.png": None, "../../x.png": "circle"})
    assert labels.read_bytes() == CSV_AFTER.encode()
    assert snap.added == [("a/w.png", "triangle")] and snap.changed == [("a/y.png", "circle", "square")]
    assert snap.removed == [("a/z.png", "triangle")] and (snap.unchanged, snap.kept) == (2, 2)
    assert snap.notes == [f"../../x.png: not inside the image folder {tmp_path / 'img'}: left out"]
    rows = [(p, label) for _, p, label in read_rows(labels)]
    assert rows[0] == ("hand/x.png", "square") and ("a/z.png", "triangle") not in rows
    again = snapshot_labels(labels, tmp_path / "img", TRUTH)  # the same project again: nothing to do
    assert (again.added, again.changed, again.removed, again.unchanged) == ([], [], [], 4)
    assert labels.read_bytes() == CSV_AFTER.encode()


def test_a_first_snapshot_makes_the_csv_and_an_empty_project_makes_none(tmp_path):
    labels = tmp_path / "labels.csv"
    snapshot_labels(labels, tmp_path, {"a.png": None})
    assert not labels.exists()
    snapshot_labels(labels, tmp_path, {"a.png": "circle", "b c.png": "square"})
    assert labels.read_text() == "path,label\na.png,circle\nb c.png,square\n"
    snapshot_labels(labels, tmp_path, {"a.png": None, "b c.png": None})  # every annotation deleted
    assert labels.read_text() == "path,label\n"


def test_the_snapshot_is_written_atomically_and_only_when_it_changes(tmp_path, monkeypatch):
    labels = tmp_path / "labels.csv"
    labels.write_bytes(CSV_BEFORE.encode())
    real, calls = os.replace, []

    def replace(src, dst):
        calls.append((os.path.basename(src), os.path.basename(dst)))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(records.os, "replace", replace)
    with pytest.raises(OSError):
        snapshot_labels(labels, tmp_path / "img", TRUTH)
    assert calls == [(f".labels.csv.tmp{os.getpid()}", "labels.csv")]  # a temporary file, then os.replace
    assert labels.read_bytes() == CSV_BEFORE.encode() and sorted(p.name for p in tmp_path.iterdir()) == ["labels.csv"]
    monkeypatch.setattr(records.os, "replace", real)
    snapshot_labels(labels, tmp_path / "img", TRUTH)
    monkeypatch.setattr(snapshot, "atomic_write", lambda *a: pytest.fail("rewrote an unchanged CSV"))
    snapshot_labels(labels, tmp_path / "img", TRUTH)


@pytest.fixture
def folder(tmp_path):
    """An image folder two levels below tmp_path, and a fake Label Studio serving its project."""
    images = tmp_path / "a" / "b" / "shapes"
    make_shapes(images, n=3)
    return images


@pytest.fixture(autouse=True)
def fake_http(monkeypatch):
    """GETs of served files reach the test's fake server (the last one made)."""
    import httpx

    monkeypatch.setattr(httpx, "get", lambda url, **kw: FakeLabelStudio.latest.http_get(url, **kw))


def live_on(fake: FakeLabelStudio, images) -> LiveProject:
    live = LiveProject(fake, "http://ls.test", 1, "p", False, "fake-key")
    live.serve_folder(images)
    return live


PREFIX = "/data/local-files/?d=shapes/"


def test_an_image_is_told_by_its_content_type_or_its_first_bytes():
    assert is_image(Fetched(200, "image/webp", b"")) and is_image(
        Fetched(200, "application/octet-stream", b"\x89PNG\r\n")
    )
    assert not is_image(Fetched(200, "text/html", b"<!DOCTYPE html>")) and not is_image(Fetched(404, "image/png", b""))


def test_the_served_check_passes_once_and_again_when_the_prefix_changes(tmp_path, folder):
    fake = FakeLabelStudio(document_root=folder.parent)
    live = live_on(fake, folder)
    said = check_served(live, folder, PREFIX, "set_a/img_000.png", tmp_path)
    assert said.startswith("Label Studio: serves the images") and fake.fetched == [PREFIX + "set_a/img_000.png"]
    assert json.loads((tmp_path / RECORD).read_text())["url_prefix"] == PREFIX
    assert check_served(live, folder, PREFIX, "set_a/img_000.png", tmp_path) is None and len(fake.fetched) == 1
    fake.document_root = folder.parents[1]
    with pytest.raises(LabelStudioError):  # another prefix is checked again
        check_served(live, folder, "/data/local-files/?d=x/shapes/", "set_a/img_000.png", tmp_path)


@pytest.mark.parametrize("where", ["root_above", "serving_off", "login_page", "other_prefix"])
def test_images_not_served_stop_with_the_setting_that_fixes_it(tmp_path, folder, where):
    fake = FakeLabelStudio(document_root=folder.parents[1] if where == "root_above" else folder.parent)
    live, prefix = live_on(fake, folder), "/static/shapes/" if where == "other_prefix" else PREFIX
    if where == "serving_off":
        fake.document_root = None
    if where == "login_page":
        fake.respond = lambda path: type(
            "R",
            (),
            {"status_code": 200, "headers": {"content-type": "text/html; charset=utf-8"}, "content": b"<!DOCTYPE"},
        )()
    with pytest.raises(LabelStudioError) as e:
        check_served(live, folder, prefix, "set_a/img_000.png", tmp_path)
    line = str(e.value)
    assert "\n" not in line and "does not serve the images" in line and "nothing was imported" in line
    assert not (tmp_path / RECORD).exists()
    if where == "root_above":
        assert (
            "HTTP 404" in line
            and f"document root (LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT) is {folder.parents[1]}" in line
        )
        assert "--url_prefix '/data/local-files/?d=b/shapes/'" in line
        assert f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={folder.parent} and no --url_prefix" in line
    elif where == "other_prefix":
        assert "give the --url_prefix under which the image folder is served" in line
    else:
        assert ("HTTP 403" if where == "serving_off" else "HTTP 200 text/html, not an image") in line
        assert f"SERVING_ENABLED=true and LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={folder.parent}" in line


def live_run(fake, monkeypatch, images, out, labels, *extra):
    import label_studio_sdk

    monkeypatch.setattr(label_studio_sdk, "LabelStudio", fake)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "fake-key")
    project = ["--label_studio.url", "http://ls.test", "--label_studio.project", "shapes project"]
    return run(images, out, "--labels", str(labels), "--classes", ",".join(CLASSES), *project, *extra)


def test_a_wrong_document_root_imports_nothing(tmp_path, folder, monkeypatch, capsys):
    fake = FakeLabelStudio(document_root=folder.parents[1])
    with pytest.raises(SystemExit) as e:
        live_run(fake, monkeypatch, folder, tmp_path / "out", tmp_path / "labels.csv")
    assert e.value.code == 4
    err = capsys.readouterr().err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("lplgrad.label: error:")]
    assert "--url_prefix '/data/local-files/?d=b/shapes/'" in line and "Traceback" not in err
    assert fake.tasks_ == [] and not (tmp_path / "out").exists()


def test_deleted_cancelled_and_changed_annotations_leave_the_csv_and_the_training_set(tmp_path, monkeypatch, capsys):
    images = tmp_path / "shapes"
    truth = make_shapes(images)
    fake = FakeLabelStudio(document_root=tmp_path)
    project = fake._create_project(title="shapes project")
    done = sorted(truth)[:9]  # nine images labelled in earlier rounds
    fake._import_tasks(project.id, [{"data": {"path": p, "image": PREFIX + p}} for p in done])
    for n, p in enumerate(done):
        fake.annotate(p, truth[p], at=f"2026-11-26T10:00:0{n}Z", id=n + 1)
    hand = sorted(truth)[-1]  # one row written by hand, for an image without a task
    labels, out = tmp_path / "labels.csv", tmp_path / "out"
    labels.write_text(f"path,label\n{hand},{truth[hand]}\n")
    first = live_run(fake, monkeypatch, images, out, labels)
    assert first["mode"] == "trained" and first["labeled"] == 10 and (out / RECORD).is_file()
    assert (
        "9 labels added, 0 changed, 0 removed, 0 unchanged; 1 row for images without a task" in capsys.readouterr().out
    )

    fetched = len(fake.fetched)
    fake.task(done[0]).annotations.clear()  # deleted
    fake.task(done[1]).annotations[0]["was_cancelled"] = True  # skipped
    other = next(c for c in CLASSES if c != truth[done[2]])
    fake.annotate(done[2], other, at="2026-11-27T09:00:00Z", id=99)  # a second annotator, later
    second = live_run(fake, monkeypatch, images, out, labels)
    said = capsys.readouterr().out
    assert "0 labels added, 1 changed, 2 removed, 6 unchanged" in said and f"{done[0]}: was" in said
    assert len(fake.fetched) == fetched  # the served check passed before: not repeated
    rows = {p: label for _, p, label in read_rows(labels)}
    assert rows == {hand: truth[hand], done[2]: other, **{p: truth[p] for p in done[3:]}}
    ckpt = torch.load(out / "round_002" / "model.ckpt", weights_only=True)
    assert second["labeled"] == 8 and set(ckpt["labeled"]) == set(rows)
