"""Errors a user can fix, as their own types: the ``detector`` command prints them as one line (exit 2).

Anything else (a bug in the package, an out-of-memory error) keeps its traceback. Raise these for problems
with what the user gave — a config key, a data set, a path, a checkpoint — and let the message name the
file or key and the fix. Each subclass also derives from the built-in type such code raised before
(``ValueError``, ``FileNotFoundError``), so ``except ValueError`` in existing callers keeps working.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input that the message explains how to fix."""


class DataError(UserError, ValueError):
    """A data set that cannot be used as given (annotation file, images, splits, class names)."""


class CheckpointError(UserError, ValueError):
    """A file that is not a usable detector checkpoint (wrong contents, incompatible format)."""


class MissingPathError(UserError, FileNotFoundError):
    """A path the user named (weights, images, a data root) that does not exist."""
