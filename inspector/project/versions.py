"""Model versions in a project (Qt-free): teach the current model good images, keep a threshold,
and what each version scores on the images the operator labelled.

A version is a new model file beside its parent, registered with ``parent_id`` and one line of what
changed; the parent stays and can be made current again.  As in :mod:`training_run`, the new file is
written first (atomically), then registered, then given results, and only at the very end made
current; a cancel removes what the run added and leaves the project as it was.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..core.jobs import Cancelled, Job, as_job
from ..core.lineage import already_learnt
from .inspection import inspect_images
from .store import ModelRow, Project, ProjectError
from .training_run import labelled_metrics


@dataclass
class VersionOutcome:
    model_id: int
    name: str
    change: str
    detail: str                    # e.g. how the thresholds were set
    skipped: List[Tuple[str, str]]


def _version_name(project: Project, parent: ModelRow, version: int) -> Tuple[str, Path]:
    base = parent.name.split(" v")[0]
    name = f"{base} v{version}"
    return name, project.new_model_path(f"{base}-v{version}")


def _register(project: Project, parent: ModelRow, model_path: Path, model_meta: Dict, image_t: float,
              pixel_t: float, change: str, name: str) -> int:
    meta = dict(model_meta)
    meta.pop("state", None)
    return project.add_version(parent.id, model_path, image_t, pixel_t, meta, change, name=name)


def update_project_model(project: Project, model_id: int, image_ids: Sequence[int] = (), paths: Sequence = (),
                         weights: Optional[str] = None, inspect_test: bool = True,
                         job: Optional[Job] = None) -> VersionOutcome:
    """Teach model ``model_id`` the good images ``image_ids`` (project images) and ``paths`` (files)
    without retraining; the result is a new version, inspected on the test images and made current.
    An image labelled anomalous is refused: only good parts may be learnt."""
    from ..core.modelfile import load_model, save_model
    from ..core.pipeline.update import add_normal_images
    from ..core.thresholds import manual

    job = as_job(job)
    parent = project.model(model_id)
    rows = project.images(ids=list(image_ids)) if image_ids else []
    bad = [r.name for r in rows if r.label == "anomalous"]
    if bad:
        raise ProjectError(f"only good parts can be added to the model: {', '.join(bad[:3])} "
                           f"{'is' if len(bad) == 1 else 'are'} labelled as defect")
    files = [r.path for r in rows] + [str(p) for p in paths]
    if not files:
        raise ProjectError("no images to add: mark false alarms with N in Review, or pick good images")
    job.step("loading the model", 0, 1)
    parent_file = project.model_file(parent)
    model = load_model(parent_file, weights=weights)
    if not math.isclose(model.image_threshold.value, parent.image_threshold, rel_tol=1e-9) \
            and math.isfinite(parent.image_threshold):
        model.image_threshold = manual(parent.image_threshold)   # the operator moved it: keep theirs
    result = add_normal_images(model, parent_file, files, job)
    job.check()
    version = model.meta["lineage"]["version"]
    name, path = _version_name(project, parent, version)
    job.step("saving the model", 0, 1)
    save_model(model, path)
    if job.cancel.cancelled:
        path.unlink(missing_ok=True)
        raise Cancelled("cancelled by the user")
    by_path = {r.path: r.id for r in rows}
    unreadable = [(by_path[str(p)], False, why) for p, why in result.skipped if str(p) in by_path]
    if unreadable:
        project.set_readable_many(unreadable)
    change = model.meta["lineage"]["history"][-1]["what"]
    new_id = _register(project, parent, path, model.meta, model.image_threshold.value, model.pixel_threshold.value,
                       change, name)
    job.step("saving the model", 1, 1)
    if inspect_test:
        try:
            inspect_images(project, model, new_id, project.image_ids(split="test", readable_only=True), job)
        except BaseException:
            project.delete_model(new_id)
            raise
    detail = result.thresholds
    learnt = {r.path for r in rows} & {str(p) for p in result.added}
    scored = [r for r in project.images(new_id, ids=[r.id for r in rows if r.path in learnt]) if r.score is not None]
    if scored:
        t = project.model(new_id).image_threshold
        still = sum(r.score >= t for r in scored)
        detail += (f"; {still} of the {len(scored)} parts added still score at or above the threshold" if still
                   else f"; the {len(scored)} part{'s' if len(scored) != 1 else ''} added now pass")
    project.set_current_model(new_id)
    return VersionOutcome(new_id, name, change, detail, [(str(p), why) for p, why in result.skipped])


def keep_threshold(project: Project, model_id: int, value: float, rule: str, detail: str = "",
                   job: Optional[Job] = None) -> VersionOutcome:
    """Keep ``value`` as model ``model_id``'s image threshold: a new version (same arrays, new
    threshold, an audit line naming who, when and the rule), with the parent's results re-decided
    at the new threshold, made current."""
    from ..core.modelfile import derive_model_file, history_entry, lineage_of, next_version, read_metadata
    from ..core.thresholds import Threshold

    job = as_job(job)
    if not math.isfinite(value):
        raise ProjectError("the threshold must be a number")
    parent = project.model(model_id)
    parent_file = project.model_file(parent)
    parent_meta = read_metadata(parent_file)
    version = lineage_of(parent_meta)["version"] + 1
    name, path = _version_name(project, parent, version)
    method = "no-missed-defect" if rule == "miss no confirmed defect" else \
        "f1-optimal" if rule == "best F1" else "mean+3std" if rule == "normals only" else "manual"
    threshold = Threshold(float(value), method, 0, detail or f"set in the threshold panel ({rule})")
    what = f"threshold set to {value:.4g}"
    previous = float(parent.image_threshold) if math.isfinite(parent.image_threshold) else None
    entry = history_entry(what, rule=rule, value=float(value), previous=previous, detail=detail)
    meta_out: Dict = {}

    def change(meta: Dict) -> None:
        meta["thresholds"]["image"] = threshold.to_dict()
        meta.update(next_version(parent_meta, parent_file, entry))
        meta_out.update(meta)

    job.step("saving the model", 0, 1)
    derive_model_file(parent_file, path, change)
    if job.cancel.cancelled:
        path.unlink(missing_ok=True)
        raise Cancelled("cancelled by the user")
    new_id = _register(project, parent, path, meta_out, float(value), parent.pixel_threshold, what, name)
    try:
        project.copy_results(parent.id, new_id, float(value))
    except BaseException:
        project.delete_model(new_id)
        raise
    project.set_current_model(new_id)
    job.step("saving the model", 1, 1)
    return VersionOutcome(new_id, name, what, threshold.detail, [])


def update_in_project(folder: str, model_id: int, image_ids: Sequence[int] = (), paths: Sequence[str] = (),
                      weights: Optional[str] = None, job: Optional[Job] = None) -> VersionOutcome:
    """:func:`update_project_model` on the project in ``folder`` (for a worker process)."""
    project = Project.open(folder)
    try:
        return update_project_model(project, model_id, image_ids, paths, weights=weights, job=job)
    finally:
        project.close()


def keep_threshold_in_project(folder: str, model_id: int, value: float, rule: str, detail: str = "",
                              job: Optional[Job] = None) -> VersionOutcome:
    """:func:`keep_threshold` on the project in ``folder`` (for a worker process)."""
    project = Project.open(folder)
    try:
        return keep_threshold(project, model_id, value, rule, detail, job=job)
    finally:
        project.close()


# -- what the versions list shows ---------------------------------------------------------------------

@dataclass
class VersionRow:
    model: ModelRow
    parent: Optional[ModelRow]
    change: str                    # what changed from the parent ("trained" for a first version)
    version: int
    metrics: Dict[str, float]      # on the labelled images it scored (labelled_metrics)


def labelled_scores(project: Project, model: ModelRow) -> List[Tuple[float, Optional[str]]]:
    """(score, label) of the model's results, leaving out the images it learnt: those it was
    fine-tuned on (APC) and the good images added to it (their scores are no longer unseen ones)."""
    excluded = {int(i) for i in (model.meta.get("trained_on_anomalies") or [])}
    learnt = already_learnt(model.meta)
    return [(r.score, r.label) for r in project.images(model.id)
            if r.score is not None and r.id not in excluded and r.path not in learnt]


def version_rows(project: Project) -> List[VersionRow]:
    """Every model of the project with its parent, what changed and its metrics on the labelled
    images (image AUROC, F1 at its threshold, counts), newest first."""
    models = {m.id: m for m in project.models()}
    links = project.model_versions()
    out = []
    for mid, m in models.items():
        parent_id, change = links.get(mid, (None, None))
        lin = m.meta.get("lineage") or {}
        out.append(VersionRow(m, models.get(parent_id), change or ("trained" if parent_id is None else ""),
                              int(lin.get("version", 1)) if isinstance(lin, dict) else 1,
                              labelled_metrics(labelled_scores(project, m), m.image_threshold)))
    return sorted(out, key=lambda v: -v.model.id)
