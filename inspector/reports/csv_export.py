"""Results of a project as CSV: one row per image."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Optional

from ..project.store import Project, ProjectError

CSV_COLUMNS = ("path", "score", "verdict", "label", "model", "threshold", "time")


def export_csv(project: Project, path, model_id: Optional[int] = None, inspected_only: bool = True) -> int:
    """Write the results of ``model_id`` (default: the current model) to ``path``. Returns rows written.

    Columns: path, score, verdict, label (the operator's or the dataset's; empty when unknown),
    model (its name), threshold (the model's image threshold), time (when the result was made).
    The file is written next to its destination first, then renamed, so a failed export never
    leaves half a file.
    """
    model_id = model_id if model_id is not None else project.current_model_id
    model = project.model(model_id) if model_id is not None else None
    if model is None and inspected_only:
        raise ProjectError("the project has no model yet: train one and inspect images first")
    rows = project.images(model_id, order="path")
    if inspected_only:
        rows = [r for r in rows if r.score is not None]
    out = Path(path)
    tmp = out.with_name(out.name + ".part")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(CSV_COLUMNS)
            for r in rows:
                w.writerow([r.path, "" if r.score is None else f"{r.score:.6g}", r.verdict or "",
                            r.label or "", model.name if model else "",
                            f"{model.image_threshold:.6g}" if model else "", r.result_created or ""])
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ProjectError(f"cannot write {out}: {exc.strerror or exc}") from None
    return len(rows)
