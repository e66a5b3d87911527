"""The project store: a folder with a SQLite database (images, labels, models, results) and files."""

from .store import DB_NAME, ImageRow, ModelRow, Project, ProjectError, StorageError, is_project

__all__ = ["DB_NAME", "ImageRow", "ModelRow", "Project", "ProjectError", "StorageError", "is_project"]
