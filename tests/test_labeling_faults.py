"""The labeling app as a careful user breaks it: a round killed half-written, reruns without new
labels, odd encodings, exports and file names, huge images, busy or failed output folders."""

import csv
import io
import json
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from helpers.runs import HANG_S, ENV
from helpers.shapes import CONFIG, TINY_LABEL, make_shapes, run, write_labels
from lplgrad.labeling.label_studio import import_export, local_files_prefix, read_export
from lplgrad.labeling.scan import scan_folder
from lplgrad.runfolder import RunFolder


@pytest.fixture
def shapes(tmp_path):
    images = tmp_path / "shapes"
    return images, make_shapes(images)


def fails(capsys, *args, code=2) -> str:
    with pytest.raises(SystemExit) as e:
        run(*args)
    assert e.value.code == code
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("lplgrad.label: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    return lines[0]


def first_labels(tmp_path, truth, n=12) -> Path:
    labels = tmp_path / "labels.csv"
    write_labels(labels, sorted(truth.items())[:n])
    return labels


KILL_AFTER_CHECKPOINT = """
import os, signal, sys
import lplgrad.labeling.outputs as outputs
def killed(*args, **kwargs):  # right after model.ckpt was written, before to_label.csv
    os.kill(os.getpid(), signal.SIGKILL)
outputs.write_to_label = killed
from lplgrad.label import cli_main
cli_main(sys.argv[1:])
"""


def test_a_round_killed_half_written_is_invisible_and_redone(tmp_path, shapes, capsys):
    images, truth = shapes
    labels, out = first_labels(tmp_path, truth), tmp_path / "out"
    args = [
        "--config",
        CONFIG,
        "--images",
        str(images),
        "--out",
        str(out),
        "--labels",
        str(labels),
        *TINY_LABEL,
        "--data.min_labels",
        "6",
    ]
    proc = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_CHECKPOINT, *args], env=ENV, capture_output=True, timeout=HANG_S
    )
    assert proc.returncode == -9
    assert not (out / "round_001").exists()
    assert (out / ".round_001.partial" / "model.ckpt").is_file()  # what the kill left, never a round
    summary = run(images, out, "--labels", str(labels), "--resume")
    said = capsys.readouterr().out
    assert "Removed" in said and "did not finish writing" in said and "no checkpoint in" in said
    assert summary["round"] == 1 and summary["resumed_from"] is None
    assert sorted(p.name for p in out.iterdir() if "round" in p.name) == ["round_001"]
    assert (out / "round_001" / "proposal.json").is_file() and (out / "round_001" / "model.ckpt").is_file()


def test_reruns_without_new_labels_never_count_as_stable(tmp_path, shapes, capsys):
    images, truth = shapes
    labels, out = first_labels(tmp_path, truth), tmp_path / "out"
    stop = ["--labels", str(labels), "--stop.threshold", "0.01", "--stop.rounds", "1", "--stop.size", "30"]
    for _ in range(4):  # four runs on the same 12 labels
        summary = run(images, out, *stop)
        assert summary["stop_kappa"] is None and summary["stop_suggested"] is False
    assert "consider stopping" not in capsys.readouterr().out
    with open(labels, "a") as f:  # now labels are added: the rerun compares with the last of the four
        f.write("".join(f"{p},{c}\n" for p, c in sorted(truth.items())[12:18]))
    summary = run(images, out, *stop)
    assert isinstance(summary["stop_kappa"], float)


def test_a_latin1_csv_and_a_folder_as_labels_are_one_line(tmp_path, shapes, capsys):
    images, truth = shapes
    labels = tmp_path / "latin1.csv"
    labels.write_bytes("path,label\n".encode() + f"{sorted(truth)[0]},caf\u00e9\n".encode("latin-1"))
    assert "is not UTF-8 text (line 2" in fails(capsys, images, tmp_path / "out", "--labels", str(labels))
    assert "is a folder" in fails(capsys, images, tmp_path / "out", "--labels", str(tmp_path))
    assert not (tmp_path / "out").exists()  # a failed start leaves no output folder (no scan_cache.json)


@pytest.mark.parametrize(
    "export",
    [
        [{"data": "x"}],
        [{"data": {"path": "a.png"}, "annotations": "yes"}],
        [{"data": {"path": "a.png"}, "annotations": [{"result": [{"type": "choices", "value": 3}]}]}],
    ],
)
def test_an_export_of_the_wrong_shape_is_one_line(tmp_path, shapes, capsys, export):
    images, _ = shapes
    (tmp_path / "export.json").write_text(json.dumps(export))
    line = fails(
        capsys,
        images,
        tmp_path / "out",
        "--labels",
        str(tmp_path / "l.csv"),
        "--import_from",
        str(tmp_path / "export.json"),
    )
    assert "not a Label Studio export" in line
    assert not (tmp_path / "l.csv").exists()


def test_a_string_choice_is_the_whole_class_name(tmp_path):
    task = {
        "data": {"path": "a.png"},
        "annotations": [{"result": [{"from_name": "label", "type": "choices", "value": {"choices": "circle"}}]}],
    }
    (tmp_path / "e.json").write_text(json.dumps([task, {"path": "b.png", "label": {"choices": "square"}}]))
    assert read_export(tmp_path / "e.json")[0] == [("a.png", "circle"), ("b.png", "square")]


def test_import_leaves_out_paths_outside_the_folder_every_time(tmp_path, shapes):
    images, truth = shapes
    inside = sorted(truth)[0]
    (tmp_path / "e.json").write_text(
        json.dumps([{"path": "../elsewhere.png", "label": "circle"}, {"path": inside, "label": truth[inside]}])
    )
    labels = tmp_path / "labels.csv"
    for new in (1, 0):
        got = import_export(tmp_path / "e.json", labels, images, local_files_prefix(images))
        assert got.new == new and any("not inside the image folder" in n for n in got.notes)
    assert labels.read_text() == f"path,label\n{inside},{truth[inside]}\n"


def test_odd_file_names_are_proposed_and_accepted_back(tmp_path, shapes):
    images, truth = shapes
    odd = [" leading space.png", "back\\slash.png", "trailing space .png"]
    source = images / next(p for p in sorted(truth) if p.endswith(".png"))
    for name in odd:
        shutil.copy(source, images / name)
    labels, out = first_labels(tmp_path, truth), tmp_path / "out"
    summary = run(images, out, "--labels", str(labels), "--data.query_size", "40")
    assert set(odd) <= set(summary["proposed"])
    with open(labels, "a", newline="") as f:  # the paths as to_label.csv gives them, written back
        csv.writer(f, lineterminator="\n").writerows(
            [(name, truth[source.relative_to(images).as_posix()]) for name in odd]
        )
    summary = run(images, out, "--labels", str(labels))
    assert summary["label_problems"] == [] and summary["labeled"] == 12 + len(odd)
    assert not set(odd) & set(summary["proposed"])


def one_bit_png(path: Path, width: int, height: int) -> None:
    """A black 1-bit PNG, written row by row: a few KB on disk for any size."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    z, body = zlib.compressobj(9), io.BytesIO()
    row = b"\x00" * (1 + (width + 7) // 8)
    for _ in range(height):
        body.write(z.compress(row))
    body.write(z.flush())
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
        + chunk(b"IDAT", body.getvalue())
        + chunk(b"IEND", b"")
    )


def test_a_huge_image_in_a_small_file_is_skipped_undecoded(tmp_path, shapes):
    images, truth = shapes
    one_bit_png(images / "huge.png", 12000, 12000)
    assert (images / "huge.png").stat().st_size < 100_000
    scan = scan_folder(images, "RGB", 16)
    reasons = {s.path: s.reason for s in scan.skipped}
    assert "12000x12000 pixels, more than data.max_pixels" in reasons["huge.png"]
    assert "huge.png" not in scan.files
    assert "huge.png" in scan_folder(images, "L", 16, max_pixels=None).files  # no limit: decoded


def test_a_busy_output_folder_is_one_line(tmp_path, shapes, capsys):
    import os

    images, _ = shapes
    holder = RunFolder("elsewhere")
    holder.claim(tmp_path / "out")
    try:
        line = fails(capsys, images, tmp_path / "out")
    finally:
        holder.release()
    assert f"is in use by another run (PID {os.getpid()})" in line and "choose another --out folder" in line


def test_a_failed_run_leaves_no_output_folder(tmp_path, shapes, capsys):
    images, _ = shapes
    assert "no such file" in fails(capsys, images, tmp_path / "out", "--resume_from", str(tmp_path / "x.ckpt"))
    assert not (tmp_path / "out").exists()


def test_a_full_disk_is_one_line_and_leaves_no_partial_round(tmp_path, shapes, capsys, monkeypatch):
    import errno

    import lplgrad.records as records

    images, truth = shapes
    labels, out = first_labels(tmp_path, truth), tmp_path / "out"
    run(images, out, "--labels", str(labels))
    before = labels.read_text()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(records.os, "fsync", full)
    assert "No space left on device" in fails(capsys, images, out, "--labels", str(labels), code=5)
    assert sorted(p.name for p in out.iterdir()) == ["round_001", "scan_cache.json", "stop_set.json"]
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name] and labels.read_text() == before
    assert "No space left on device" in fails(capsys, images, tmp_path / "new_out", code=5)
    assert not (tmp_path / "new_out").exists()
