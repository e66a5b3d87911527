"""Results of a project as CSV: one row per image."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Optional

from ..project.store import Project, ProjectError

# The first seven columns are those of earlier versions, in the same order; provenance follows.
CSV_COLUMNS = ("path", "score", "verdict", "label", "model", "threshold", "time",
               "label_source", "operator_label", "labelled_by", "labelled_at", "dataset_label", "defect_type")


def export_csv(project: Project, path, model_id: Optional[int] = None, inspected_only: bool = True) -> int:
    """Write the results of ``model_id`` (default: the current model) to ``path``. Returns rows written.

    Columns: path, score, verdict (the model's), label (the one in force: the operator's where
    there is one, else the dataset's; empty when unknown), model (its name), threshold (the
    model's image threshold), time (when the result was made); then where the label came from:
    label_source (``operator`` or ``dataset``), operator_label (the operator's decision, empty
    when no operator reviewed the part), labelled_by and labelled_at (who made the operator's
    label and when; empty for the dataset's, and labelled_by empty where it was not recorded),
    dataset_label (the ground truth the dataset's folders gave, whatever the operator decided)
    and defect_type (the dataset's folder, e.g. ``broken_large``).
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
                operator = r.label_source == "operator"
                w.writerow([r.path, "" if r.score is None else f"{r.score:.6g}", r.verdict or "",
                            r.label or "", model.name if model else "",
                            f"{model.image_threshold:.6g}" if model else "", r.result_created or "",
                            r.label_source or "", r.operator_label or "",
                            (r.label_by or "") if operator else "", (r.label_updated or "") if operator else "",
                            r.dataset_label or "", r.defect_type or ""])
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ProjectError(f"cannot write {out}: {exc.strerror or exc}") from None
    return len(rows)
