"""The ML backend's housekeeping against a fake Label Studio, without a training: this backend's
older predictions deleted when a training posts new ones (``--old_predictions``), the scores
kept apart from the state counted at every webhook, and the image cache found without listing
its folder."""

import logging

import pytest

from helpers.fake_ml_label_studio import FakeMLLabelStudio
from lplgrad.serve.images import ImageCache, cache_name
from lplgrad.serve.project import label_config, open_project, project_tasks
from lplgrad.serve.state import SCORES, STATE, StateFile
from lplgrad.serve.training import Scored, publish

CLASSES = ["circle", "square", "triangle"]


@pytest.fixture
def project(monkeypatch):
    """A project of 8 tasks, each with a prediction of lplgrad-1; task 0 also has one of a
    failed attempt at lplgrad-2, task 3 one of the labelling app, task 4 one of another model."""
    monkeypatch.setenv("FAKE_KEY", "token")
    ls = FakeMLLabelStudio(CLASSES)
    tasks = [ls.add_task(f"/data/upload/1/{n}.png", None) for n in range(8)]
    for t in tasks:
        ls.add_prediction(t, "lplgrad-1")
    ls.add_prediction(tasks[0], "lplgrad-2")
    ls.add_prediction(tasks[3], "labeling/round_002")
    ls.add_prediction(tasks[4], "my-model")
    return ls, tasks


def publish_second(ls, tasks, delete_older: bool = True) -> Scored:
    """Version 2 scores tasks 0-4; task 5 was labelled since, task 6 is an open audit task, task 7
    an open task that was not scored (its image could not be read)."""
    live = open_project("http://ls", "FAKE_KEY", 7, client_factory=ls)
    labels = {t: None for t in tasks} | {tasks[5]: "circle"}
    scored = Scored(
        scores={t: ("circle", (k + 1) / 5) for k, t in enumerate(tasks[:5])},
        audit=[tasks[6], tasks[5]],
        delete_older=delete_older,
    )
    assert publish(live, label_config(live), scored, "lplgrad-2", project_tasks(live), labels) == 5
    return scored


def test_older_predictions_of_the_rescored_tasks_are_deleted(project, monkeypatch):
    ls, tasks = project
    monkeypatch.setattr("lplgrad.serve.cleanup.CHUNK", 2)
    scored = publish_second(ls, tasks)
    for t in tasks[:3]:  # only this backend's predictions: cleared by the Data Manager action
        assert ls.versions_of(t) == ["lplgrad-2"]
    assert [a["tasks"] for a in ls.actions_] == [[tasks[0], tasks[1]], [tasks[2], tasks[6]]]  # in chunks
    assert ls.versions_of(tasks[3]) == ["labeling/round_002", "lplgrad-2"]  # others' kept, one by one
    assert ls.versions_of(tasks[4]) == ["my-model", "lplgrad-2"]
    assert ls.versions_of(tasks[5]) == ["lplgrad-1"]  # labelled: the guess it was labelled with stays
    assert ls.versions_of(tasks[6]) == []  # an audit task shows no prediction
    assert ls.versions_of(tasks[7]) == ["lplgrad-1"]  # not re-scored: left alone
    assert scored.deleted == 7 and ls.project.model_version == "lplgrad-2"


def test_old_predictions_keep_deletes_nothing(project):
    ls, tasks = project
    scored = publish_second(ls, tasks, delete_older=False)
    assert ls.versions_of(tasks[1]) == ["lplgrad-1", "lplgrad-2"] and not ls.actions_ and scored.deleted == 0


def test_a_refused_deletion_after_the_posting_is_one_line(project, caplog):
    ls, tasks = project
    ls.refuse_deletes = True
    with caplog.at_level(logging.WARNING, logger="lplgrad.serve"):
        scored = publish_second(ls, tasks)
    (line,) = [r.getMessage() for r in caplog.records]
    assert "deleting the older prediction" in line and "2 older predictions left for the next training" in line
    assert scored.deleted == 5 and ls.versions_of(tasks[4]) == ["lplgrad-1", "my-model", "lplgrad-2"]


def test_scores_are_saved_apart_and_only_when_they_change(tmp_path):
    state = StateFile(tmp_path)
    state.update(version=3, scores={"5": ["circle", 0.5]})
    marked = (tmp_path / SCORES).read_text().replace('"version"', '"marker":1,"version"')
    (tmp_path / SCORES).write_text(marked)
    state.update(pending_events=1)  # a webhook: the scores are not written again
    assert (tmp_path / SCORES).read_text() == marked and "scores" not in (tmp_path / STATE).read_text()
    assert StateFile(tmp_path).read().scores == {"5": ["circle", 0.5]}
    (tmp_path / STATE).write_text((tmp_path / STATE).read_text().replace('"version": 3', '"version": 4'))
    assert StateFile(tmp_path).read().scores == {}  # scores of another version are not answered


def test_the_image_cache_is_found_without_listing_the_folder(tmp_path, monkeypatch):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / (cache_name(3, "/data/upload/1/a.png") + ".png")).write_bytes(b"png")
    (folder / (cache_name(4, "https://x/y?sig=1") + ".jpg")).write_bytes(b"jpg")
    cache = ImageCache(folder, "http://ls", {})
    monkeypatch.setattr(type(folder), "iterdir", lambda self: pytest.fail("listed"))
    assert cache.cached(3, "/data/upload/1/a.png") == cache_name(3, "/data/upload/1/a.png") + ".png"
    assert cache.cached(3, "/data/upload/1/b.png") is None
    monkeypatch.undo()
    assert cache.cached(4, "https://x/y?sig=1") == cache_name(4, "https://x/y?sig=1") + ".jpg"  # no extension: listed
