"""The errors a job reports as a plain message (exit 2) or as an interruption (exit 143).

Kept free of heavy imports: the CLI catches them for every command, and commands such as check-config or
init-tracking must not pay for importing torch.
"""


class ConfigError(ValueError):
    """The config is invalid; ``str()`` lists every problem, one per line, each naming its key."""


class DataError(RuntimeError):
    """A data set is missing, partial or malformed; the message says where and what was expected."""


class DeviceError(RuntimeError):
    """The configured device cannot be used (e.g. ``compute.device: cuda`` on a machine without a GPU)."""


class CheckpointError(RuntimeError):
    """A checkpoint or saved training state cannot be used; the message names the file."""


class NonFiniteLossError(RuntimeError):
    """A loss went NaN or infinite; the message names the learner, the epoch and the loss terms."""


class TrainingInterrupted(RuntimeError):
    """SIGTERM/SIGINT arrived: the training state was saved; running the job again resumes it."""
