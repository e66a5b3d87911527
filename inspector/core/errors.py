"""Errors meant for the user: one clear sentence, no traceback.

Every front end (CLI, GUI) catches :class:`InspectorError` and shows its message as is.
"""


class InspectorError(Exception):
    """A problem the user can fix (bad input, missing weights, damaged model file...)."""


class ImageReadError(InspectorError):
    """An image file could not be read."""

    def __init__(self, path, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class DatasetError(InspectorError):
    """A folder does not hold what was expected (no images, wrong layout...)."""


class WeightsError(InspectorError):
    """Backbone weights are missing or do not fit the architecture."""


class ModelFileError(InspectorError):
    """A model file is damaged, foreign or of an unsupported version."""


class StorageError(InspectorError, OSError):
    """A file could not be written: full disk, read-only folder, no permission...

    Also an :class:`OSError`, so that code written for the system's own error still catches it."""
