"""The one error family of `mmhe`: every bad input raises a subclass of `MMHEError`.

Messages name the file (and row or sample when there is one), say what is wrong and
what to do about it.
"""

from __future__ import annotations

from pathlib import Path


class MMHEError(Exception):
    """Base class of every error `mmhe` raises on purpose."""


class InputFileError(MMHEError):
    """A file is missing, unreadable, truncated or not in the expected format."""

    def __init__(self, path: str | Path, problem: str, hint: str = "") -> None:
        self.path = Path(path)
        self.problem = problem
        self.hint = hint
        message = f"{self.path}: {problem}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


class AnnotationError(InputFileError):
    """A coding (annotation) file cannot be used at all (cell-level problems are issues)."""


class AlignmentError(MMHEError):
    """Two devices' marker sequences cannot be put on one timeline."""


class ConfigError(MMHEError):
    """Parameters that are impossible or inconsistent, caught before any work starts."""


class DeviceError(MMHEError):
    """A recording device (camera, trigger line, LSL stream) cannot be opened or read."""
