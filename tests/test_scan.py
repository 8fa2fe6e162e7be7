"""The folder scan (lplgrad.labeling.scan): which files are images, their relative paths, and the
scan cache that decodes only new or changed files."""

import os

from PIL import Image

from lplgrad.labeling import scan as scan_module
from lplgrad.labeling.scan import scan_folder


def _png(path, value=0):
    """An 8x8 image at ``path`` (its format from the suffix: PNG or JPEG)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (value, value, value)).save(path)


def _tree(root):
    """Images at several depths, hidden ones, a text file and a file that is not a PNG."""
    for rel in ("b.png", "a.PNG", "sub/z/deep.jpg", "sub/c.png", ".hidden.png", ".dot/x.png", "sub/.hid/y.png"):
        _png(root / rel)
    (root / "notes.txt").write_text("not an image")
    (root / "broken.png").write_bytes(b"\x89PNG not really")


def test_scan_lists_images_by_relative_posix_path_sorted(tmp_path):
    root = tmp_path / "images"
    _tree(root)
    outside = tmp_path / "outside"
    _png(outside / "o.png")
    os.symlink(outside, root / "linked")  # a symbolic link to a folder is not followed
    scan = scan_folder(root, "RGB", 8)
    assert scan.files == ["a.PNG", "b.png", "sub/c.png", "sub/z/deep.jpg"]
    assert [s.path for s in scan.skipped] == ["broken.png"]
    st = (root / "sub" / "c.png").stat()
    assert scan.stats["sub/c.png"] == (st.st_size, st.st_mtime_ns)
    # the same folder given with a trailing separator gives the same paths
    assert scan_folder(str(root) + os.sep, "RGB", 8).files == scan.files


def test_scan_cache_decodes_only_new_or_changed_files(tmp_path, monkeypatch):
    root, cache = tmp_path / "images", tmp_path / "out" / "scan_cache.json"
    cache.parent.mkdir()
    _tree(root)
    first = scan_folder(root, "RGB", 8, cache=cache)
    decoded = []
    real = scan_module._decode_problem
    monkeypatch.setattr(scan_module, "_decode_problem", lambda p, *a: decoded.append(p) or real(p, *a))
    again = scan_folder(root, "RGB", 8, cache=cache)
    assert decoded == [] and again.files == first.files and again.stats == first.stats
    assert [str(s) for s in again.skipped] == [str(s) for s in first.skipped]
    _png(root / "sub" / "c.png", value=200)  # changed: another size or modification time
    os.utime(root / "sub" / "c.png", ns=(1, 1))
    _png(root / "new.png")
    third = scan_folder(root, "RGB", 8, cache=cache)
    assert sorted(p.relative_to(root).as_posix() for p in decoded) == ["new.png", "sub/c.png"]
    assert third.files == ["a.PNG", "b.png", "new.png", "sub/c.png", "sub/z/deep.jpg"]
