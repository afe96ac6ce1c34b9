"""Typed errors of the engine; the service maps them to HTTP in one place."""


class PruningError(Exception):
    """Base class: the message tells the user what to change."""


class UnsafeModel(PruningError):
    """The uploaded file is refused by the safe reader (never loaded)."""


class UnsupportedModel(PruningError):
    """The program is well-formed but uses something the engine cannot handle."""


class InvalidDataset(PruningError):
    """The data cannot be used with this model (its shape, labels or the metric); a dataset
    file that cannot be read at all is `jobs.datasets.DatasetFileError`."""


class InvalidConfig(PruningError):
    """The job's settings are inconsistent (thresholds, metric, labels)."""


class Cancelled(PruningError):
    """The run's `should_cancel` callback said to stop (the engine used as a library; the
    worker stops a sandboxed engine by killing it)."""
