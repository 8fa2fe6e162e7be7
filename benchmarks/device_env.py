"""A virtual environment that holds only the GPU machine's packages, to rehearse gpu_all.sh here.

The GPU machine's image has torch, lightning, timm and many more, but neither jsonargparse nor
lplgrad, and no network (benchmarks/device_packages.txt lists what it has). This builds a
virtual environment (no system site-packages) whose site-packages links, from this Python's
own, exactly the installed distributions on that list, and nothing else: no lplgrad, no
jsonargparse. ``gpu_all.sh --small`` run with it then meets a missing package or path here, on
the CPU, instead of on the GPU machine.

    python -m benchmarks.device_env.py /tmp/device_env
    PYTHON=/tmp/device_env/bin/python bash benchmarks/gpu_all.sh --small
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import re
import sysconfig
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def device_names(path: Path = HERE / "device_packages.txt") -> set[str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return {normal(line) for line in lines if line and not line.startswith("#")}


def top_level_entries(dist: md.Distribution) -> set[str]:
    """The names a distribution puts directly in site-packages (its packages, modules, .dist-info)."""
    return {Path(f).parts[0] for f in dist.files or [] if not str(f).startswith("..")}


def build(dest: Path) -> tuple[list[str], list[str]]:
    """Make the environment; (the linked distributions, the ones here left out)."""
    venv.create(dest, with_pip=False, clear=True, symlinks=True)
    site = Path(sysconfig.get_paths(vars={"base": str(dest), "platbase": str(dest)})["purelib"])
    here = Path(sysconfig.get_paths()["purelib"])
    wanted, linked, left = device_names(), [], []
    for dist in md.distributions(path=[str(here)]):
        name = normal(dist.metadata["Name"])
        if name not in wanted:
            left.append(name)
            continue
        linked.append(name)
        for entry in top_level_entries(dist):
            target, link = here / entry, site / entry
            if target.exists() and not link.exists():
                link.symlink_to(target)
    return sorted(linked), sorted(left)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dest", type=Path)
    a = ap.parse_args(argv)
    linked, left = build(a.dest)
    print(
        f"device_env: {a.dest}: {len(linked)} distributions of the device's image linked; "
        f"left out (not in its image): {', '.join(left)}"
    )


if __name__ == "__main__":
    main()
