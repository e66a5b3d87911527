"""A watched folder's results stored in a project (Qt-free).

Used by ``inspector watch --project`` (the watching process opens the project and is its owner for
the run) and by the application's station view (the GUI thread, the project's owner there, calls
:meth:`WatchRecorder.store` for each result its worker sends).  Each image of the folder is added
to the project as it is inspected (split ``test``), with its result for the model, or marked
unreadable with the reason.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Set

import numpy as np

from .store import ModelRow, Project, ProjectError


def find_model(project: Project, ref) -> ModelRow:
    """A project's model by name, or by its file (a path to one of the project's model files)."""
    models = project.models()
    named = [m for m in models if m.name == str(ref)]
    if named:
        return named[-1]
    p = Path(ref)
    if p.is_file():
        for m in models:
            f = project.model_file(m)
            try:
                if f.is_file() and os.path.samefile(f, p):
                    return m
            except OSError:
                continue
    names = ", ".join(m.name for m in models) or "none yet"
    raise ProjectError(f"'{ref}' is not one of the models of {project.folder} (its models: {names}); "
                       "give a model's name or its file in the project's models/ folder")


class WatchRecorder:
    """Stores results of images under ``folder`` for the project's model ``model_id``."""

    def __init__(self, project: Project, model_id: int, folder):
        self.project = project
        self.model_id = model_id
        self.folder = Path(os.path.abspath(folder))

    @property
    def model(self) -> ModelRow:
        return self.project.model(self.model_id)

    def model_file(self) -> Path:
        return self.project.model_file(self.model)

    def done_paths(self) -> Set[Path]:
        """Images under the folder that have a result from the model, or were found unreadable."""
        root = str(self.folder) + os.sep
        return {Path(r.path) for r in self.project.images(self.model_id)
                if r.path.startswith(root) and (r.score is not None or r.readable is False)}

    def store(self, path, score: Optional[float], verdict: Optional[str], amap: Optional[np.ndarray],
              reason: Optional[str] = None) -> int:
        """One result (``score`` None: the file could not be inspected, ``reason`` says why).
        Returns the image's id in the project."""
        (image_id,) = self.project.add_files([path], self.folder)
        if score is None:
            self.project.set_readable(image_id, False, reason or "could not be inspected")
        else:
            self.project.add_results(self.model_id, [(image_id, float(score), verdict, amap)])
        return image_id
