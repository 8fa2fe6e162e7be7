"""Errors that stop a run with one clear line (the CLI prints the message and exits non-zero)."""


class LPLgradError(Exception):
    """Base class: ``str(error)`` is the line shown to the user."""

    exit_code = 2


class ConfigError(LPLgradError, ValueError):
    """A setting that cannot work (sizes, classes), found before training starts."""


class DataError(LPLgradError, ValueError):
    """Data that cannot be used: unreadable or corrupt files, labels out of range."""


class RunExistsError(LPLgradError, FileExistsError):
    """The run folder already holds an experiment and neither resume nor overwrite was asked for."""


class TrainingDivergedError(LPLgradError, FloatingPointError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""

    exit_code = 3
