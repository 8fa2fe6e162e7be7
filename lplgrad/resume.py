"""What a resume (``fit --ckpt_path ...``) checks before it goes ahead: that there is a run to
resume, that its checkpoint can be read, and that the configuration is the run's.

A resume is exact only with the run's own settings: another strategy, query size, seed or
learning rate would continue the records of one experiment with another. So a resume whose
configuration differs from the run folder's ``config.yaml`` in anything but the keys of
:data:`FREE` stops with one line listing the differences; ``--allow_config_change true``
accepts them on purpose, and each accepted change is appended to ``config_changes.jsonl``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from lplgrad.errors import ResumeError
from lplgrad.records import atomic_write

LAST = "last.ckpt"
CHANGES = "config_changes.jsonl"

#: settings a resume may change: how the run is shown, logged and saved, never what it trains or selects
FREE = (
    "ckpt_path",
    "overwrite",
    "allow_config_change",
    "config",
    "trainer.logger",
    "trainer.callbacks",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.log_every_n_steps",
    "trainer.default_root_dir",
    "trainer.profiler",
    "trainer.max_time",
    "trainer.enable_checkpointing",
    "checkpoint",
    "query_progress",
    "figures",
    "stop",  # the last three: options of runs saved before 2026-12-02
    "data.feature_dir",  # where the feature cache is kept, not what it holds
)

#: options added since earlier runs were saved: absent from such a run's config.yaml, their value
#: there is the one given here (what that run used)
ADDED = {
    "math.matmul_precision": "highest",
    "math.cudnn_tf32": True,
    "data.feature_cache": False,
}


#: keys that moved since earlier runs were saved: such a run's config.yaml is read with the new names
RENAMED = {"model.strategy": "strategy"}


def _renamed(key: str) -> str:
    for old, new in RENAMED.items():
        if key == old or key.startswith(old + "."):
            return new + key[len(old) :]
    return key


def resumable(run: Path, ckpt_dir: Path) -> bool:
    return (ckpt_dir / LAST).is_file() and not (run / "finished.json").exists()


def latest_resumable(save_dir: str, name: str) -> str | None:
    """The newest ``save_dir/name/<version>`` with a checkpoints/last.ckpt and no finished.json."""
    runs = [d for d in Path(save_dir, name).glob("*") if resumable(d, d / "checkpoints")]
    return max(runs, key=lambda d: (d / "checkpoints" / LAST).stat().st_mtime).name if runs else None


def nothing_to_resume(run: Path, ckpt_dir: Path) -> str:
    """Why ``--ckpt_path last`` finds nothing in ``run``: the line a user sees."""
    if (run / "finished.json").exists():
        return (
            f"--ckpt_path last: {run} holds a finished run (finished.json): nothing to resume; start a new run "
            "folder (another trainer.logger.init_args.version)"
        )
    if not run.exists():
        return f"--ckpt_path last: there is no run folder {run}: check trainer.logger.init_args.version"
    return f"--ckpt_path last: {run} has no {ckpt_dir / LAST} to resume from: start it anew with --overwrite true"


def check_checkpoint(path: str | Path) -> set[str]:
    """Stop with one line when ``path`` is missing, truncated, corrupt or not a Lightning
    checkpoint; returns the names of the model hyperparameters it holds."""
    path = Path(path)
    if not path.is_file():
        raise ResumeError(f"--ckpt_path {path}: no such file")
    try:
        # mapped, not read: the check needs the pickled structure, and Lightning reads the tensors
        # (torch.load checks no checksum, so a full read would find no more damage)
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # noqa: BLE001 - whatever torch.load says, the file cannot be resumed from
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ResumeError(f"--ckpt_path {path} cannot be read (truncated or corrupt?): {first}") from None
    if not isinstance(ckpt, dict) or not {"state_dict", "loops", "callbacks"} <= set(ckpt):
        raise ResumeError(f"--ckpt_path {path} is not a checkpoint of a python -m lplgrad fit run")
    return set(ckpt.get("hyper_parameters") or {})


def run_folder_of(cfg) -> Path | None:
    """``save_dir/name/version`` of the configured logger, when it names them (TensorBoard, CSV)."""
    args = getattr(cfg.trainer.get("logger"), "init_args", None)
    if args is None or "save_dir" not in args or args.get("version") is None:
        return None
    return Path(args.save_dir, args.get("name") or "lightning_logs", str(args.version))


def resolve_last(cfg) -> None:
    """``--ckpt_path last`` -> the run folder's ``checkpoints/last.ckpt`` (without a logger
    version: the newest unfinished run's, whose version is then set), or one line saying why
    there is nothing to resume. Left to Lightning when the logger names no run folder."""
    args = getattr(cfg.trainer.get("logger"), "init_args", None)
    if args is None or "save_dir" not in args:
        return
    name = args.get("name") or "lightning_logs"
    if args.get("version") is None:
        found = latest_resumable(args.save_dir, name)
        if found is None:
            raise ResumeError(
                f"--ckpt_path last: no unfinished run with checkpoints/{LAST} under "
                f"{Path(args.save_dir, name)}: nothing to resume"
            )
        args.version = found
    run = run_folder_of(cfg)
    ckpt_dir = (
        Path(cfg.checkpoint.dirpath) if cfg.get("checkpoint") and cfg.checkpoint.get("dirpath") else run / "checkpoints"
    )
    if not resumable(run, ckpt_dir):
        raise ResumeError(nothing_to_resume(run, ckpt_dir))
    cfg.ckpt_path = str(ckpt_dir / LAST)


def check_resume(cfg, now: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Everything a resume checks before anything is built; returns the accepted changes."""
    if cfg.ckpt_path == "last":
        resolve_last(cfg)
        if cfg.ckpt_path == "last":
            return {}
        now["ckpt_path"] = cfg.ckpt_path
    restored = check_checkpoint(cfg.ckpt_path)
    run = run_folder_of(cfg)
    return check_config(run, now, cfg.get("allow_config_change"), {f"model.{k}" for k in restored}) if run else {}


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _free(key: str) -> bool:
    return any(key == f or key.startswith(f + ".") for f in FREE)


def differences(saved: dict[str, Any], now: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """key -> (the run's value, this command's value), for the keys that matter to training or selection."""
    a, b = {**ADDED, **{_renamed(k): v for k, v in _flat(saved).items()}}, {**ADDED, **_flat(now)}
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if not _free(k) and a.get(k) != b.get(k)}


def describe_changes(diff: dict[str, tuple[Any, Any]]) -> list[str]:
    return [f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items()]


def check_config(
    run: Path, now: dict[str, Any], allow: bool, restored: set[str] = frozenset()
) -> dict[str, tuple[Any, Any]]:
    """Compare this command's configuration with the run's ``config.yaml``; stop with the
    differences unless ``allow``. A model hyperparameter the checkpoint holds (``restored``)
    cannot change: LightningCLI restores it from the checkpoint."""
    saved_path = run / "config.yaml"
    if not saved_path.is_file():
        return {}
    try:
        saved = yaml.safe_load(saved_path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ResumeError(f"{saved_path} cannot be read to check the resume's configuration: {e}") from None
    diff = differences(saved, now)
    fixed = {k: v for k, v in diff.items() if k in restored}
    if fixed:
        raise ResumeError(
            f"{'; '.join(describe_changes(fixed))}: a model hyperparameter that the checkpoint holds "
            "cannot change on resume (it is restored from the checkpoint): resume with the run's value"
        )
    if diff and not allow:
        raise ResumeError(
            f"the resume's configuration differs from the run's ({saved_path}) in what changes training "
            f"or selection: {'; '.join(describe_changes(diff))}. Resume with the run's settings, or pass "
            "--allow_config_change true to continue with these on purpose"
        )
    return diff


def record_changes(run: Path, diff: dict[str, tuple[Any, Any]]) -> None:
    """Append the changes a resume accepted to ``config_changes.jsonl``."""
    if not diff:
        return
    old = (run / CHANGES).read_text() if (run / CHANGES).is_file() else ""
    line = json.dumps(
        {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "changes": {k: list(v) for k, v in diff.items()}}, default=str
    )
    atomic_write(run / CHANGES, old + line + "\n")
