"""The command line's guard: options refused before anything is parsed (LightningCLI's own
optimiser options, the commands lplgrad does not offer, moved options), and every expected
failure turned into one line and an exit code (:func:`guarded`, docs/errors.md). Shared by both
applications."""

from __future__ import annotations

import errno
import re
import sys
from argparse import ArgumentError
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from lplgrad.errors import ConfigError, LPLgradError, OutputError
from lplgrad.runfolder import RunFolder

#: LightningCLI's other subcommands, not offered: a run evaluates itself every round
NOT_OFFERED = ("validate", "test", "predict")
T = TypeVar("T")

#: LightningCLI's own optimiser options, which would replace M's and A's optimisers with one
#: optimiser over both: refused, with where the setting goes instead
TRAPS = {
    "optimizer": "--model.optimizer (M and A each get their own optimiser, made anew every round)",
    "lr_scheduler": "--model.scheduler (one schedule per optimiser; only M's is stepped unless --model.schedule_aux)",
}
_TRAP_OPTION = re.compile(r"^--(" + "|".join(TRAPS) + r")(?:[.=]|$)")

#: options that moved, in both applications: the old key stops with one line naming the new one
#: (command line or config file); ``guarded`` takes an application's own additions
MOVED = {
    "model.strategy": "strategy (a top-level option: the rounds loop owns the query strategy, not the model)",
    "data.seed": "seed_everything (the data's seed is linked from it)",
}


def trap_message(key: str) -> str:
    return f"--{key} is not used by lplgrad: set {TRAPS[key]}"


def check_traps(args: Sequence[str], moved: dict[str, str] = MOVED) -> None:
    """Refuse ``--optimizer`` / ``--lr_scheduler`` (and their ``.init_args`` forms) on the command
    line, a command lplgrad does not offer, and the ``moved`` options (:func:`check_moved`)."""
    if args and args[0] in NOT_OFFERED:
        raise ConfigError(
            f"{args[0]} is not a command of lplgrad (only fit): every round's test accuracy is in the "
            "run folder's rounds.jsonl, and python -m lplgrad.label proposes and predicts for a folder"
        )
    for arg in args:
        m = _TRAP_OPTION.match(arg)
        if m:
            raise ConfigError(trap_message(m.group(1)))
    check_moved(args, moved)


def _value(tree: Any, dotted: str) -> Any:
    """The value at ``dotted`` in a parsed YAML tree (None when absent)."""
    for part in dotted.split("."):
        if not isinstance(tree, dict):
            return None
        tree = tree.get(part)
    return tree


def check_moved(args: Sequence[str], moved: dict[str, str] = MOVED) -> None:
    """Refuse a moved option on the command line, or set (not null) in a ``--config`` file."""
    trees = [(path, tree) for path, tree in _config_trees(args) if not isinstance(tree, Exception)]
    for old, new in moved.items():
        if any(a == f"--{old}" or a.startswith((f"--{old}.", f"--{old}=")) for a in args):
            raise ConfigError(f"--{old} has moved: set --{new}")
        for path, tree in trees:
            if _value(tree, old) is not None or _value(tree, f"fit.{old}") is not None:
                raise ConfigError(f"{path}: {old} has moved: set {new}")


def _config_trees(args: Sequence[str]) -> list[tuple[str, Any]]:
    """Each ``--config`` file named in ``args``, with its parsed YAML or the exception reading it raised."""
    trees = []
    for i, a in enumerate(args):
        path = (
            args[i + 1]
            if a in ("--config", "-c") and i + 1 < len(args)
            else (a.split("=", 1)[1] if a.startswith("--config=") else None)
        )
        if path is None:
            continue
        try:
            trees.append((path, yaml.safe_load(Path(path).read_text())))
        except (OSError, yaml.YAMLError, UnicodeDecodeError) as e:
            trees.append((path, e))
    return trees


def _name_bad_config(message: str, args: Sequence[str]) -> str:
    """jsonargparse's YAML error names no file: name the ``--config`` file that does not parse."""
    if "<unicode string>" not in message:
        return message
    for path, tree in _config_trees(args):
        if isinstance(tree, yaml.YAMLError):
            return message.replace('in "<unicode string>"', f"in {path}").replace("<unicode string>", path)
    return message


def _one_line(message: str) -> str:
    """jsonargparse's multi-line message condensed to the key and its most specific reason."""
    lines = [ln.strip(" -") for ln in message.splitlines() if ln.strip()]
    if not lines:
        return message
    key = lines[0].rstrip(":").replace("Parser key ", "").replace('"', "")
    for i, ln in enumerate(lines):
        if ln.startswith("Problem with given class_path") and i + 1 < len(lines):
            nested = lines[i + 1]
            if nested.startswith("Parser key") and i + 2 < len(lines):  # an init arg of that class
                inner = nested.rstrip(":").replace("Parser key ", "").replace('"', "")
                return f"{key}.init_args.{inner}: {lines[i + 2]}"
            return f"{key}: {ln.replace('Problem with given ', '').rstrip(':')}: {nested}"
    return f"{key}: {lines[1]}" if len(lines) > 1 else key


#: OSError numbers that mean the outputs cannot be written: a full disk or quota, a read-only or forbidden folder
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def guarded(
    prog: str,
    args: Sequence[str] | None,
    build: Callable[[], T],
    run_folder: RunFolder | None = None,
    worth_keeping: Callable[[Path], bool] = lambda _: True,
    moved: dict[str, str] = MOVED,
) -> T:
    """``build()``, with every expected failure turned into one ``<prog>: error: ...`` line on
    stderr and the exit code of docs/errors.md: an :class:`LPLgradError` (its ``exit_code``), a
    command-line error (2), or a folder that cannot be written (5). Refuses the trapped options
    first. ``run_folder``, if ``build`` claimed it, is released, and on any failure abandoned
    (removed when it was created and holds nothing ``worth_keeping``)."""
    try:
        check_traps(sys.argv[1:] if args is None else args, moved)
        result = build()
    except BaseException as e:
        if run_folder is not None:
            run_folder.abandon(worth_keeping)
        if isinstance(e, OSError) and not isinstance(e, LPLgradError) and e.errno in WRITE_ERRNOS:
            e = OutputError(f"{e.filename or 'a file'}: {e.strerror}: the run stopped (free space or permissions?)")
        if isinstance(e, LPLgradError):
            print(f"{prog}: error: {e}", file=sys.stderr)
            raise SystemExit(e.exit_code) from None
        if isinstance(e, ArgumentError):  # an unknown option, class or value: one line, not the whole usage
            line = _name_bad_config(_one_line(str(e)), sys.argv[1:] if args is None else args)
            print(f"{prog}: error: {line} (see --help)", file=sys.stderr)
            raise SystemExit(2) from None
        raise
    if run_folder is not None:
        run_folder.release()
    return result
