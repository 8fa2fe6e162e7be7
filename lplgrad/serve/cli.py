"""``python -m lplgrad.serve``: parse the options, open the state folder, start the worker and
serve the routes with waitress (a production WSGI server) until stopped.

Options are the labeling app's (``--config configs/label_folder.yaml``, ``--model.*``,
``--strategy``, ``--trainer.*``, ``--data.*``, ``--label_studio.url``, ``--label_studio.key_env``,
``--label_studio.project``: a project id, else the first project that calls) plus ``--state_dir``,
``--host``, ``--port``, ``--train_every``, ``--basic_auth_user`` (its password from
``--basic_auth_pass_env``), ``--retry_max`` and ``--old_predictions``; ``--audit.*`` and ``--stop.*`` are the labelling
app's (:mod:`~lplgrad.serve.signals`). Expected failures stop with one
``lplgrad.serve: error:`` line (:func:`lplgrad.guard.guarded`).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from lplgrad.errors import ConfigError
from lplgrad.guard import guarded
from lplgrad.runfolder import RunFolder
from lplgrad.serve.app import create_app
from lplgrad.serve.backend import Auth, Backend
from lplgrad.serve.config import PLACEHOLDER_IMAGES, make_cli
from lplgrad.serve.predictor import Predictor
from lplgrad.serve.project import open_project
from lplgrad.labeling.audit import AuditOptions
from lplgrad.serve.training import run_training

log = logging.getLogger("lplgrad.serve")


def user_args(args: list[str] | None) -> list[str]:
    """The command line without the options the backend sets itself for each training."""
    return list(sys.argv[1:] if args is None else args)


def build_backend(cfg, args: list[str]) -> Backend:
    """The backend of the parsed options (the state folder loaded, the worker not started)."""
    ls = cfg.label_studio
    if not ls.url:
        raise ConfigError("--label_studio.url is needed: the address of Label Studio, e.g. http://localhost:8080")
    if not os.environ.get(ls.key_env):
        raise ConfigError(f"no Label Studio API key: set the environment variable {ls.key_env}")
    if ls.project is not None and not str(ls.project).isdigit():
        raise ConfigError(f"--label_studio.project {ls.project!r}: give the project's id (a number)")
    AuditOptions.from_config(cfg.audit)  # a wrong --audit.* stops here, not at the first training
    password = os.environ.get(cfg.basic_auth_pass_env) if cfg.basic_auth_user else None
    if cfg.basic_auth_user and not password:
        raise ConfigError(f"--basic_auth_user needs a password in the environment variable {cfg.basic_auth_pass_env}")

    def open_live(backend: Backend):
        return open_project(ls.url, ls.key_env, backend.state.read().project)

    backend = Backend(
        Path(cfg.state_dir),
        lambda b: run_training(args, b.state, lambda: open_live(b)),
        cfg.train_every,
        int(ls.project) if ls.project is not None else None,
        Auth(cfg.basic_auth_user, password),
        retry_max=cfg.retry_max,
    )
    backend.predictor = Predictor(Path(cfg.state_dir), lambda: open_live(backend))
    return backend


def cli_main(args: list[str] | None = None) -> None:
    """Serve until stopped; ``args`` replaces ``sys.argv[1:]`` (for tests)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s lplgrad.serve: %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request to Label Studio
    args = user_args(args)

    def build_and_serve() -> None:
        cfg = make_cli(["--images", PLACEHOLDER_IMAGES, *args]).config
        folder.claim(cfg.state_dir)  # one backend per state folder
        backend = build_backend(cfg, args)
        import waitress

        backend.worker.start()
        state = backend.state.read()
        log.info(
            "model %s, project %s, state in %s; listening on http://%s:%d",
            state.model_version,
            state.project if state.project is not None else "(the first that connects)",
            cfg.state_dir,
            cfg.host,
            cfg.port,
        )
        waitress.serve(create_app(backend), host=cfg.host, port=cfg.port, threads=4, ident="lplgrad.serve")

    folder = RunFolder("choose another --state_dir")
    guarded("lplgrad.serve", args, build_and_serve, folder)
