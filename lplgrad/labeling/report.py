"""What a labeling run prints on the console: its inputs, an import, and its proposal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lplgrad.labeling.data import LabelFolderData

SHOW = 20  # problems and proposals listed on the console; all of them are in proposal.json


def say(text: str = "") -> None:
    print(text, flush=True)


def listed(items: list, show: int = SHOW) -> None:
    for item in items[:show]:
        say(f"  {item}")
    if len(items) > show:
        say(f"  ... and {len(items) - show} more (all in proposal.json)")


def plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def inputs(dm: LabelFolderData) -> None:
    """The images found, the labels read (with their problems) and the size of the pool."""
    scan, labels = dm.scan, dm.labels_read
    say(
        f"Images: {len(scan.files)} readable in {dm.root}"
        + (f", {len(scan.skipped)} unreadable (skipped):" if scan.skipped else "")
    )
    listed(scan.skipped)
    if labels.source is None:
        say("Labels: none given (--labels)")
    elif not labels.source.exists():
        say(f"Labels: {labels.source} does not exist yet: no labels")
    else:
        counts = ", ".join(f"{c} {n}" for c, n in dm.class_counts().items())
        say(
            f"Labels: {labels.source}: {labels.rows} rows, {len(labels.label)} labeled images"
            + (f" ({counts})" if counts else "")
            + (f"; {plural(len(labels.problems), 'row')} with problems:" if labels.problems else "")
        )
        listed(labels.problems)
    say(f"Pool: {len(dm.split.unlabeled())} unlabeled images")


def imported(source: str, labels: str, pairs: int, new: int, notes: list[str], changed: list[str]) -> None:
    """A Label Studio export appended to the labels CSV."""
    say(
        f"Import: {source}: {pairs} labeled tasks, {new} new rows appended to {labels}, "
        f"{pairs - new} already there; {len(notes)} tasks left out" + (":" if notes else "")
    )
    listed(notes)
    if changed:
        say(f"Import: {len(changed)} rows change an earlier label:")
        listed(changed)


def pulled(live, labels: str, got, snap) -> None:
    """Live sync's pull: the project, and what its labels added to, changed in and removed from
    the labels CSV (``got``: :class:`~lplgrad.labeling.live.Pulled`; ``snap``:
    :class:`~lplgrad.labeling.snapshot.Snapshot`)."""
    say(
        f"Label Studio: project {live.title!r} (id {live.id}, {'created' if live.created else 'found'}) at "
        f"{live.url}: {plural(got.tasks, 'task')}, {plural(got.annotated, 'labeled image')}; {labels} follows them: "
        f"{plural(len(snap.added), 'label')} added, {len(snap.changed)} changed, {len(snap.removed)} removed, "
        f"{snap.unchanged} unchanged"
        + (f"; {plural(snap.kept, 'row')} for images without a task kept as written" if snap.kept else "")
        + (f"; {len(snap.notes)} tasks left out:" if snap.notes else "")
    )
    listed(snap.notes)
    if snap.changed:
        say(f"Label Studio: {plural(len(snap.changed), 'label')} changed there:")
        listed([f"{path}: {old!r} -> {new!r}" for path, old, new in snap.changed])
    if snap.removed:
        say(f"Label Studio: {plural(len(snap.removed), 'label')} removed (no annotation left that counts):")
        listed([f"{path}: was {old!r}" for path, old in snap.removed])


def pushed(live, new: int, proposed: int, resume_hint: bool) -> None:
    """Live sync's push: the proposed batch imported as tasks, and what to do next."""
    say(
        f"Label Studio: imported {new} of the {proposed} proposed images into project {live.title!r} as tasks with "
        f'predictions ({proposed - new} already had a task); sort its Data Manager by "Prediction score" '
        "ascending to label the most informative first"
    )
    if proposed:
        say(
            f"Next: label them in Label Studio ({live.url}, project {live.title!r}) and run the same command again"
            + (" with --resume" if resume_hint else "")
            + "."
        )


def proposal(
    rdir: Path,
    summary: dict[str, Any],
    rows: list[dict[str, Any]],
    strategy: str,
    resume_hint: bool,
    live: bool = False,
) -> None:
    """The proposed images, the files written, the checkpoint and what to do next (``resume_hint``:
    whether the next run should add --resume)."""
    trained = summary["mode"] == "trained"
    say(
        f"Proposed: {len(rows)} of {summary['unlabeled']} unlabeled images ({summary['scored']} scored) "
        f"by {strategy}" + ("" if trained else " (cold start)") + ", best first:"
    )
    listed(
        [
            f"{r['rank']:>3}. {r['path']}  score {r['score']:.4g}"
            + (f"  (network's guess: {r['predicted']}, p={r['confidence']:.2f})" if r.get("predicted") else "")
            for r in rows
        ]
    )
    say("Wrote:")
    say(f"  {rdir / 'to_label.csv'}  the {len(rows)} images to label next: rank, path, score")
    say(
        f"  {rdir / 'label_studio.json'}  the same as Label Studio tasks (data.image = "
        f"{summary['label_studio_url_prefix']}<path>)"
    )
    if summary["classes"]:
        say(f"  {rdir / 'label_studio_config.xml'}  a Label Studio labeling config with the classes")
    say(f"  {rdir / 'proposal.json'}  this run's summary: counts, problems, classes, checkpoint")
    ckpt = summary["checkpoint"]
    say(
        f"Checkpoint: {ckpt}  (the network that scored them; --resume continues from it)"
        if ckpt
        else "Checkpoint: none (a random batch uses no network)"
    )
    if rows and not live:
        labels_csv = summary["labels_csv"]
        say(
            f"Next: label these images, append 'path,label' rows to {labels_csv or 'a labels CSV (--labels)'}, "
            f"and run the same command again" + (" with --resume" if resume_hint else "") + "."
        )
