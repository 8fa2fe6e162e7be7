"""The labels CSV (``path,label``): reading it, checking every row, appending to it.

Rows that cannot be used are never fatal: each one becomes a :class:`Problem` with its CSV line
number, and the run goes on with the others. Only a file that is not a labels CSV at all (no
``path`` and ``label`` columns in its header) stops the run.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from lplgrad.errors import LabelingError
from lplgrad.records import atomic_write

__all__ = [
    "LabelingError",
    "Labels",
    "Problem",
    "append_labels",
    "check_labels_file",
    "normalise_path",
    "parse_classes",
    "read_labels",
    "read_rows",
    "text_of",
]


@dataclass(frozen=True)
class Problem:
    """A row of the labels CSV that was skipped (or only partly used), and why."""

    line: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.path or '(no path)'}: {self.message}"


@dataclass
class Labels:
    """The usable labels: image path -> class name, and the CSV line each one came from."""

    source: Path | None
    label: dict[str, str] = field(default_factory=dict)
    line: dict[str, int] = field(default_factory=dict)
    rows: int = 0
    problems: list[Problem] = field(default_factory=list)


def parse_classes(spec: str | list[str] | tuple[str, ...] | None) -> list[str] | None:
    """``"a,b,c"``, a file with one class per line, or a list -> the class names, in order."""
    if spec is None:
        return None
    if isinstance(spec, str):
        p = Path(spec)
        if "," not in spec and p.is_file():
            names = [ln.strip() for ln in text_of(p, "the class list").splitlines()]
        else:
            names = [s.strip() for s in spec.split(",")]
    else:
        names = [str(s).strip() for s in spec]
    names = [n for n in names if n]
    if not names:
        raise LabelingError(f"the class list {spec!r} names no class")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise LabelingError(f"the class list names {', '.join(map(repr, twice))} more than once")
    return names


def check_labels_file(path: str | Path | None) -> None:
    """``--labels`` must name a file (which may not exist yet), not a folder."""
    if path is not None and Path(path).is_dir():
        raise LabelingError(
            f"--labels {path} is a folder: name the labels CSV file (for example {Path(path) / 'labels.csv'})"
        )


def text_of(path: str | Path, what: str) -> str:
    """A text file's content as UTF-8 (a leading BOM dropped), or one line saying it is not UTF-8."""
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        line = Path(path).read_bytes()[: e.start].count(b"\n") + 1
        raise LabelingError(
            f"{path} ({what}) is not UTF-8 text (line {line}, byte {e.start}): save it as UTF-8 "
            "(in a spreadsheet: CSV UTF-8)"
        ) from None


def _verbatim(raw: str, root: Path, known: set[str] | None) -> bool:
    """Whether ``raw`` names a file of ``root`` exactly as written: a name with a leading space or
    a backslash is such a name on POSIX, and must not be stripped or read as a Windows path.
    ``known``: the folder's image paths, when the caller has them (no file-system look-up then)."""
    if known is not None:
        return raw in known
    parts = raw.split("/")
    return bool(raw) and not raw.startswith("/") and not {"", ".", ".."} & set(parts) and (root / raw).is_file()


def normalise_path(raw: str, root: Path, known: set[str] | None = None) -> str | None:
    """A path as written in the CSV -> the '/'-separated path relative to ``root``; None if outside
    it. A path naming a file exactly as written is kept as it is; otherwise surrounding spaces are
    dropped and backslashes read as separators (a CSV written on Windows)."""
    if _verbatim(raw, Path(root), known):
        return raw
    raw = raw.strip().replace("\\", "/")
    p = PurePosixPath(raw)
    if p.is_absolute():
        try:
            p = PurePosixPath(Path(raw).resolve().relative_to(root.resolve()).as_posix())
        except ValueError:
            return None
    parts = [s for s in p.parts if s not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


def _header(row: list[str]) -> dict[str, int] | None:
    names = [c.strip().lower() for c in row]
    if "path" in names and "label" in names:
        return {"path": names.index("path"), "label": names.index("label")}
    return None


def read_rows(csv_path: str | Path) -> list[tuple[int, str, str]]:
    """The data rows of a labels CSV as (line number, path as written, label stripped), blank
    lines left out. The first non-blank line must be a header naming ``path`` and ``label`` (any case,
    any order, other columns ignored)."""
    rows = []
    with io.StringIO(text_of(csv_path, "the labels CSV"), newline="") as f:
        reader = csv.reader(f)
        cols = None
        for row in reader:
            if not any(c.strip() for c in row):
                continue
            if cols is None:
                cols = _header(row)
                if cols is None:
                    raise LabelingError(
                        f"{csv_path} line {reader.line_num}: the first line must be a header naming the "
                        f"columns 'path' and 'label' (found {','.join(row)!r})"
                    )
                continue
            field = [row[cols[k]] if cols[k] < len(row) else "" for k in ("path", "label")]
            path = field[0] if field[0].strip() else ""  # kept as written: normalise_path decides
            rows.append((reader.line_num, path, field[1].strip()))
    return rows


def _checked_path(
    raw: str, name: str, root: Path, files: set[str], unreadable: dict[str, str], known_paths: set[str]
) -> tuple[str | None, str | None]:
    """A row's image path relative to ``root`` and None, or what is wrong with the row."""
    if not raw:
        return None, "no path"
    if not name:
        return None, "no label"
    path = normalise_path(raw, root, known_paths)
    if path is None:
        return None, "not inside the image folder"
    if path in unreadable:
        return path, f"the image cannot be read ({unreadable[path]})"
    if path not in files:
        why = "is not an image file" if (root / path).is_file() else "no such image in the folder"
        head, _, rest = path.partition("/")
        if head == root.name and rest in files:
            why += f" (paths are relative to the image folder: {rest!r}?)"
        return path, why
    return path, None


def read_labels(
    csv_path: str | Path | None,
    root: str | Path,
    files: Iterable[str],
    unreadable: dict[str, str] | None = None,
    classes: list[str] | None = None,
) -> Labels:
    """Read and check a labels CSV against the images found in ``root``.

    ``files`` are the readable images (relative paths), ``unreadable`` maps broken ones to the
    reason. A missing or empty CSV means no labels yet. A path labelled twice with the same
    class is reported as a duplicate; with two different classes the later row wins (append a
    row to correct a label) and both lines are reported.
    """
    check_labels_file(csv_path)
    labels = Labels(Path(csv_path) if csv_path else None)
    if csv_path is None or not Path(csv_path).is_file():
        return labels
    root = Path(root)
    files = set(files)
    unreadable = unreadable or {}
    known_paths = files | set(unreadable)  # a row naming one of these as written is taken verbatim
    known = set(classes) if classes is not None else None
    add = labels.problems.append
    for line, raw, name in read_rows(csv_path):
        labels.rows += 1
        path, why = _checked_path(raw, name, root, files, unreadable, known_paths)
        if why is None and known is not None and name not in known:
            why = f"unknown class {name!r} (the classes are {', '.join(classes)})"
        if why is not None:
            add(Problem(line, path or raw, f"{why}: row skipped"))
            continue
        if path in labels.label:
            first = labels.line[path]
            if labels.label[path] == name:
                add(Problem(line, path, f"duplicate of line {first}: ignored"))
                continue
            add(
                Problem(
                    line, path, f"labelled {labels.label[path]!r} on line {first} and {name!r} here: the later row wins"
                )
            )
        labels.label[path] = name
        labels.line[path] = line
    return labels


def append_labels(csv_path: str | Path, rows: list[tuple[str, str]]) -> None:
    """Append ``(path, label)`` rows to a labels CSV (created with its header if missing), atomically."""
    csv_path = Path(csv_path)
    old = text_of(csv_path, "the labels CSV") if csv_path.is_file() else ""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if not old.strip():
        old = ""
        w.writerow(["path", "label"])
    elif not old.endswith("\n"):
        old += "\n"
    w.writerows(rows)
    atomic_write(csv_path, old + buf.getvalue())
