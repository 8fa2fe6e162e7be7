"""The labels CSV as a snapshot of a Label Studio project (live sync's pull).

Label Studio is where annotators change their minds, so it is the source of truth for the images
it manages: those the project has a task for. Each pull rewrites the labels CSV so that it says
what the project says, and nothing else about those images:

- an image with a task and a class (the latest annotation that counts, see
  :func:`~lplgrad.labeling.label_studio.latest_choice`) has exactly one row with that class: its
  first row in the CSV, with the label replaced when it changed (other columns kept), or a new
  row at the end;
- an image with a task but no annotation left that counts (all deleted, or all cancelled) has no
  row: it loses its label;
- every other row (images without a task: rows written by hand; blank lines; rows whose path is
  not inside the image folder) is kept exactly as written, in its place.

The file keeps its header (any case, any order, other columns), its line endings and a leading
byte-order mark; it is replaced atomically (temporary file, fsync, ``os.replace``) and only when
its content changes.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from lplgrad.labeling.labels import normalise_path, read_rows
from lplgrad.records import atomic_write

BOM = "\ufeff"


@dataclass
class Snapshot:
    """What a pull changed in the labels CSV: (path, class) added, (path, old, new) changed,
    (path, old class) removed; labels unchanged; rows kept as written for images without a task;
    notes on tasks left out."""

    added: list[tuple[str, str]] = field(default_factory=list)
    changed: list[tuple[str, str, str]] = field(default_factory=list)
    removed: list[tuple[str, str]] = field(default_factory=list)
    unchanged: int = 0
    kept: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class _Record:
    """One CSV record as written (``text``, its line ending included) and its fields."""

    text: str
    fields: list[str]

    @property
    def blank(self) -> bool:
        return not any(c.strip() for c in self.fields)


def _records(text: str) -> list[_Record]:
    """Every record of a CSV text, each with its exact text (a quoted field may span lines)."""
    lines = io.StringIO(text, newline="").readlines()
    reader, start, out = csv.reader(iter(lines)), 0, []
    for fields in reader:
        out.append(_Record("".join(lines[start : reader.line_num]), fields))
        start = reader.line_num
    return out


def _ending(text: str) -> str:
    """The line ending a record's text ends with ('' for a last line without one)."""
    for end in ("\r\n", "\n", "\r"):
        if text.endswith(end):
            return end
    return ""


def _row_text(fields: list[str], newline: str) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator=newline).writerow(fields)
    return buf.getvalue()


def _columns(header: _Record) -> tuple[int, int]:
    names = [c.strip().lower() for c in header.fields]
    return names.index("path"), names.index("label")


def _managed(truth: dict[str, str | None], root: Path, snap: Snapshot) -> dict[str, str | None]:
    """The project's image paths as the CSV's (relative to ``root``); paths outside it are noted."""
    out: dict[str, str | None] = {}
    for raw, label in truth.items():
        key = normalise_path(raw, root)
        if key is None:
            snap.notes.append(f"{raw}: not inside the image folder {root}: left out")
        else:
            out[key] = label
    return out


def _current(csv_path: Path, root: Path) -> dict[str, str]:
    """The label each image has in the CSV now (the later row wins, as the run reads it); also
    checks the header, stopping with one line when it is not a labels CSV."""
    now: dict[str, str] = {}
    if csv_path.is_file():
        for _, raw, label in read_rows(csv_path):
            path = normalise_path(raw, root) if raw else None
            if path and label:
                now[path] = label
    return now


def _count(before: dict[str, str], after: dict[str, str | None], snap: Snapshot) -> None:
    for path, label in after.items():
        old = before.get(path)
        if label is None:
            if old is not None:
                snap.removed.append((path, old))
        elif old is None:
            snap.added.append((path, label))
        elif old != label:
            snap.changed.append((path, old, label))
        else:
            snap.unchanged += 1


def _rewrite(records: list[_Record], managed: dict[str, str | None], root: Path, snap: Snapshot) -> list[str]:
    """The new file's records: the header and the rows to keep (a managed image's first row with
    the project's class), then a row for each managed image the CSV had no row for."""
    at = next((i for i, r in enumerate(records) if not r.blank), None)
    header = records[at] if at is not None else _Record("path,label\n", ["path", "label"])
    newline = _ending(header.text) or "\n"
    cols = _columns(header)
    out = [r.text for r in records[: at + 1]] if at is not None else [header.text]
    placed: set[str] = set()
    for r in records[at + 1 :] if at is not None else []:
        raw = r.fields[cols[0]] if cols[0] < len(r.fields) else ""
        path = None if r.blank or not raw.strip() else normalise_path(raw, root)
        if path not in managed:
            snap.kept += 0 if r.blank else 1
            out.append(r.text)
        elif managed[path] is not None and path not in placed:
            placed.add(path)
            fields = r.fields + [""] * (cols[1] + 1 - len(r.fields))
            if fields[cols[1]].strip() != managed[path]:
                fields[cols[1]] = managed[path]
                out.append(_row_text(fields, _ending(r.text) or newline))
            else:
                out.append(r.text)
    for path, label in managed.items():
        if label is not None and path not in placed:
            fields = [""] * len(header.fields)
            fields[cols[0]], fields[cols[1]] = path, label
            out.append(_row_text(fields, newline))
    return [t if t.endswith(("\n", "\r")) or n == len(out) - 1 else t + newline for n, t in enumerate(out)]


def snapshot_labels(csv_path: str | Path, root: str | Path, truth: dict[str, str | None]) -> Snapshot:
    """Make the labels CSV a faithful snapshot of the project (see the module's docstring).

    ``truth``: every image the project has a task for (its path as in the task's data) -> its
    class, or None when no annotation of it counts. Returns what changed."""
    csv_path, root, snap = Path(csv_path), Path(root), Snapshot()
    managed = _managed(truth, root, snap)
    before = _current(csv_path, root)
    _count(before, managed, snap)
    raw = csv_path.read_bytes() if csv_path.is_file() else b""
    bom = BOM if raw.startswith(BOM.encode()) else ""
    old = raw.decode("utf-8-sig")  # UTF-8: _current read it; line endings as they are
    if not old.strip() and not any(label is not None for label in managed.values()):
        return snap  # no labels anywhere: the CSV is left as it is (or not created)
    new = "".join(_rewrite(_records(old), managed, root, snap))
    if new != old:
        atomic_write(csv_path, bom + new)
    return snap
