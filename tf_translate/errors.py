"""The one exception type for a value the user gave that cannot work: the command line
reports it as one line (exit 2); any other exception is a bug and keeps its traceback."""


class UsageError(ValueError):
    """A flag, setting, file or argument is wrong; ``str(e)`` is one line naming it and why."""


class TrainingError(RuntimeError):
    """Training cannot start or go on; the message says why and what to do."""


class ExportError(RuntimeError):
    """A model cannot be exported as asked (an op without a TFLite builtin kernel, a parity
    failure, an unknown variant); the message says which."""
