"""Errors that stop a run with one clear line: the CLIs print ``<prog>: error: <message>`` on
stderr and exit with the error's ``exit_code`` (docs/errors.md lists every case)."""


class LPLgradError(Exception):
    """Base class: ``str(error)`` is the line shown to the user."""

    exit_code = 2


class ConfigError(LPLgradError, ValueError):
    """A setting that cannot work (sizes, classes, an option lplgrad does not use), found before training."""


class DataError(LPLgradError, ValueError):
    """Data that cannot be used: unreadable or corrupt files, labels out of range."""


class RunExistsError(LPLgradError, FileExistsError):
    """The run folder already holds an experiment and neither resume nor overwrite was asked for."""


class LabelingError(LPLgradError, RuntimeError):
    """Input that stops a labeling run (``python -m lplgrad.label``); the message says what to fix."""


class TrainingDivergedError(LPLgradError, FloatingPointError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""

    exit_code = 3


class RunLockedError(LPLgradError, BlockingIOError):
    """Another run is writing to the same run folder (or labeling ``--out`` folder)."""


class ResumeError(LPLgradError, ValueError):
    """A resume that cannot go ahead: nothing to resume, an unreadable checkpoint, or a
    configuration that differs from the run's in what changes training or selection."""


class OutputError(LPLgradError, OSError):
    """The run cannot write its outputs: a read-only folder, a full disk."""

    exit_code = 5


class DatasetNotFoundError(LPLgradError, RuntimeError):
    """A dataset is missing and could not be downloaded; the message says how to get it."""


class WeightsNotFoundError(LPLgradError, FileNotFoundError):
    """Pretrained weights that are neither on disk nor downloadable; the message says which file
    to fetch and where to put it."""


class ExportShapeError(LabelingError):
    """A Label Studio export (or a server's task) that is not shaped as Label Studio writes them."""


class LabelStudioError(LPLgradError, RuntimeError):
    """Label Studio could not be reached, refused the key, or refused a request."""

    exit_code = 4


class ModelFileError(LPLgradError, ValueError):
    """A labeling round's network that ``python -m lplgrad.predict`` or ``python -m lplgrad.export``
    cannot use: no checkpoint, an untrained (cold-start) one, an unreadable one, a missing config."""


class ExportCheckError(LPLgradError, RuntimeError):
    """An exported model (TorchScript or ONNX) whose outputs differ from the PyTorch network's by
    more than the tolerance; nothing is left in the export folder."""

    exit_code = 6
