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


class WeightsMissingError(WeightsError):
    """No ImageNet weights for a backbone on this computer, and torchvision could not download them.

    Its message speaks to the command line; the fields let another front end (the window) say
    what to do in its own words."""

    def __init__(self, backbone: str, file_name: str, cache_dir: str, env: str, reason: str = ""):
        self.backbone, self.file_name, self.cache_dir, self.env, self.reason = (
            backbone, file_name, str(cache_dir), env, reason)
        super().__init__(
            f"No ImageNet weights for {backbone}. Either let torchvision download them once (needs internet), "
            f"or copy {file_name} into {cache_dir}, or pass --weights FILE (the app: Settings > Weights file), "
            f"or set {env}=FILE. Use --random-weights only for speed measurements."
            + (f" (download failed: {reason})" if reason else ""))

    def __reduce__(self):
        return type(self), (self.backbone, self.file_name, self.cache_dir, self.env, self.reason)


class ModelFileError(InspectorError):
    """A model file is damaged, foreign or of an unsupported version."""


class StorageError(InspectorError, OSError):
    """A file could not be written: full disk, read-only folder, no permission...

    Also an :class:`OSError`, so that code written for the system's own error still catches it."""
