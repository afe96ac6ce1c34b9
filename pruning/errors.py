"""Typed errors of the engine; the service maps them to HTTP in one place."""


class PruningError(Exception):
    """Base class: the message tells the user what to change."""


class UnsafeModel(PruningError):
    """The uploaded file is refused by the safe reader (never loaded)."""


class UnsupportedModel(PruningError):
    """The program is well-formed but uses something the engine cannot handle."""


class InvalidDataset(PruningError):
    """The data and this model do not go together, as found while the engine runs: the
    samples' shape, the model's inputs or outputs (one input, a tensor out, class scores for
    accuracy), or the labels the metric needs. A dataset file that cannot be read, or whose
    shape the service already sees does not fit the model's recorded input, is refused
    before the job runs, as `jobs.datasets.DatasetFileError`."""


class InvalidConfig(PruningError):
    """The job's settings are inconsistent (thresholds, metric, labels)."""


class Cancelled(PruningError):
    """The run's `should_cancel` callback said to stop (the engine used as a library; the
    worker stops a sandboxed engine by killing it)."""
