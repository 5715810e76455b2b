"""Exceptions that carry their own exit status and one-line message.

The CLI maps every `NncliError` to `error: <message>` on stderr and its
`exit_code`; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Sequence

Path_ = Sequence[str | int]


def dotted(path: Path_) -> str:
    """("model", "layers", 1, "units") -> "model.layers.1.units"."""
    return ".".join(str(part) if str(part).isprintable() else repr(str(part)) for part in path)


class NncliError(Exception):
    """Base class: a failure the user should read, not a bug."""

    exit_code = 1


class UsageError(NncliError):
    """Bad usage, config, data or checkpoint (exit status 2)."""

    exit_code = 2


class ConfigError(UsageError):
    """A config value is wrong. Knows the key path and, once located, the file and line."""

    def __init__(self, message: str, path: Path_ = (), location: str | None = None):
        self.message = message
        self.path = tuple(path)
        self.location = location
        self.unknown: tuple[str, str] | None = None  # (kind, name) when a component name is not registered
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [p for p in (self.location, dotted(self.path)) if p]
        return ": ".join([*parts, self.message])

    def under(self, prefix: Path_) -> ConfigError:
        """The same error with `prefix` put in front of its key path."""
        return self.moved((*prefix, *self.path), self.location)

    def moved(self, path: Path_, location: str | None) -> ConfigError:
        """The same error at another key path and location (what it knows besides the message kept)."""
        error = ConfigError(self.message, path, location)
        error.unknown = self.unknown
        return error


class DataError(UsageError):
    """A data file is missing, malformed or unsuitable."""


class CheckpointError(UsageError):
    """A checkpoint file cannot be trusted or does not fit."""


class RunFolderError(UsageError):
    """The run folder cannot be created (exit status 2: nothing has started)."""


class WriteError(NncliError):
    """A result file could not be written mid-run (disk full, permissions); the previous version is intact."""


class DivergedError(NncliError):
    """Training produced a non-finite loss or gradient (exit status 1)."""

    exit_code = 1


class TrainingInterrupted(NncliError):
    """SIGINT/SIGTERM stopped training after a resumable checkpoint was saved."""

    def __init__(self, message: str, exit_code: int, checkpoint: str | None):
        super().__init__(message)
        self.exit_code = exit_code
        self.checkpoint = checkpoint
