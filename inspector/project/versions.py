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
from .handoff import OwnedJob
from .splits import anomaly_split, judged_scores
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


@dataclass
class UpdatePlan:
    parent_file: str
    files: List[str]
    weights: Optional[str]
    out_path: str
    operator_threshold: Optional[float]     # the parent's threshold where the operator moved it
    operator_change: Optional[Dict] = None  # the project's record of that move (who, when), if any


def run_update(plan: UpdatePlan, job: Optional[Job] = None, deliver=None) -> Dict:
    """The worker's half of :class:`UpdateJob`: load the parent, learn the good images, save the new
    version's file (atomically).  Never opens the project database."""
    from ..core.modelfile import load_model, save_model
    from ..core.pipeline.update import add_normal_images
    from ..core.thresholds import manual

    job = as_job(job)
    job.step("loading the model", 0, 1)
    model = load_model(plan.parent_file, weights=plan.weights)
    if plan.operator_threshold is not None:                       # the operator moved it: keep theirs
        change = plan.operator_change or {}
        model.image_threshold = manual(plan.operator_threshold).stamped(
            "viewer", who=change.get("who") or "", when=change.get("when") or None) if change else \
            manual(plan.operator_threshold)
    result = add_normal_images(model, plan.parent_file, plan.files, job)
    # thresholds set again by their rule now carry their provenance: this step, this time
    if not model.image_threshold.when and model.image_threshold.method != "manual":
        model.image_threshold = model.image_threshold.stamped("adding images (a new version)")
    if not model.pixel_threshold.when and math.isfinite(model.pixel_threshold.value):
        model.pixel_threshold = model.pixel_threshold.stamped("adding images (a new version)")
    job.check()
    job.step("saving the model", 0, 1)
    save_model(model, plan.out_path)
    job.step("saving the model", 1, 1)
    meta = dict(model.meta)
    meta.pop("state", None)
    return {"meta": meta, "image_t": model.image_threshold.value, "pixel_t": model.pixel_threshold.value,
            "skipped": [(str(p), why) for p, why in result.skipped], "thresholds": result.thresholds}


class UpdateJob(OwnedJob):
    """Teach model ``model_id`` the good images ``image_ids`` (project images) and ``paths`` (files)
    without retraining: learnt and saved in a worker, registered by the project's owner as a new
    version made current.  An image labelled anomalous is refused: only good parts may be learnt."""

    title = "adding images to the model"
    work = staticmethod(run_update)

    def __init__(self, project: Project, model_id: int, image_ids: Sequence[int] = (), paths: Sequence = (),
                 weights: Optional[str] = None):
        super().__init__(project)
        self.model_id, self.image_ids, self.paths, self.weights = model_id, list(image_ids), list(paths), weights
        self.out_path: Optional[Path] = None

    def prepare(self) -> UpdatePlan:
        from ..core.modelfile import lineage_of, read_metadata

        self.project.check_writable()
        self.parent = self.project.model(self.model_id)
        self.rows = self.project.images(ids=self.image_ids) if self.image_ids else []
        bad = [r.name for r in self.rows if r.label == "anomalous"]
        if bad:
            raise ProjectError(f"only good parts can be added to the model: {', '.join(bad[:3])} "
                               f"{'is' if len(bad) == 1 else 'are'} labelled as defect")
        files = [r.path for r in self.rows] + [str(p) for p in self.paths]
        if not files:
            raise ProjectError("no images to add: mark false alarms with N in Review, or pick good images")
        parent_file = self.project.model_file(self.parent)
        parent_meta = read_metadata(parent_file)
        version = lineage_of(parent_meta)["version"] + 1
        self.name, self.out_path = _version_name(self.project, self.parent, version)
        in_file = (parent_meta.get("thresholds") or {}).get("image", {}).get("value")
        t = self.parent.image_threshold
        moved = t if math.isfinite(t) and (in_file is None or not math.isclose(in_file, t, rel_tol=1e-9)) else None
        changes = self.project.threshold_changes(self.parent.id) if moved is not None else []
        change = changes[-1] if changes and math.isclose(changes[-1]["value"], moved, rel_tol=1e-9) else None
        return UpdatePlan(str(parent_file), files, self.weights, str(self.out_path), moved, change)

    def finish(self, result: Dict) -> VersionOutcome:
        by_path = {r.path: r.id for r in self.rows}
        unreadable = [(by_path[p], False, why) for p, why in result["skipped"] if p in by_path]
        if unreadable:
            self.project.set_readable_many(unreadable)
        meta = result["meta"]
        change = meta["lineage"]["history"][-1]["what"]
        new_id = self.project.add_version(self.parent.id, self.out_path, result["image_t"], result["pixel_t"],
                                          meta, change, name=self.name)
        self.project.set_current_model(new_id)
        return VersionOutcome(new_id, self.name, change, result["thresholds"], result["skipped"])

    def abandon(self) -> None:
        if self.out_path is not None:
            self.out_path.unlink(missing_ok=True)


def update_project_model(project: Project, model_id: int, image_ids: Sequence[int] = (), paths: Sequence = (),
                         weights: Optional[str] = None, inspect_test: bool = True,
                         job: Optional[Job] = None) -> VersionOutcome:
    """:class:`UpdateJob` in this process, then (``inspect_test``) the new version scores the test
    images; the detail says whether the parts added now pass."""
    job = as_job(job)
    out = UpdateJob(project, model_id, image_ids, paths, weights).run_here(job)
    if inspect_test:
        from .inspection import InspectionJob
        try:
            InspectionJob(project, out.model_id, project.image_ids(split="test", readable_only=True),
                          weights).run_here(job)
        except BaseException:
            project.set_current_model(model_id)
            project.delete_model(out.model_id)
            raise
    scored = [r for r in project.images(out.model_id, ids=list(image_ids)) if r.score is not None]
    if scored:
        t = project.model(out.model_id).image_threshold
        still = sum(r.score >= t for r in scored)
        out.detail += (f"; {still} of the {len(scored)} parts added still score at or above the threshold" if still
                       else f"; the {len(scored)} part{'s' if len(scored) != 1 else ''} added now pass")
    return out


@dataclass
class ThresholdPlan:
    parent_file: str
    out_path: str
    threshold: Dict
    entry: Dict


def run_keep_threshold(plan: ThresholdPlan, job: Optional[Job] = None, deliver=None) -> Dict:
    """The worker's half of :class:`KeepThresholdJob`: the parent's arrays with the new threshold and
    an audit line, written as a new file (atomically)."""
    from ..core.modelfile import derive_model_file, next_version, read_metadata

    job = as_job(job)
    job.step("saving the model", 0, 1)
    parent_meta = read_metadata(plan.parent_file)
    meta_out: Dict = {}

    def change(meta: Dict) -> None:
        meta["thresholds"]["image"] = plan.threshold
        meta.update(next_version(parent_meta, plan.parent_file, plan.entry))
        meta_out.update(meta)

    derive_model_file(plan.parent_file, plan.out_path, change)
    job.step("saving the model", 1, 1)
    meta_out.pop("state", None)
    return meta_out


class KeepThresholdJob(OwnedJob):
    """Keep ``value`` as model ``model_id``'s image threshold: a new version (same arrays, new
    threshold, an audit line naming who, when and the rule), with the parent's results re-decided
    at the new threshold, made current."""

    title = "keeping the threshold"
    work = staticmethod(run_keep_threshold)

    def __init__(self, project: Project, model_id: int, value: float, rule: str, detail: str = ""):
        super().__init__(project)
        self.model_id, self.value, self.rule, self.detail = model_id, value, rule, detail
        self.out_path: Optional[Path] = None

    def prepare(self) -> ThresholdPlan:
        from ..core.modelfile import history_entry, lineage_of, read_metadata
        from ..core.thresholds import Threshold

        if not math.isfinite(self.value):
            raise ProjectError("the threshold must be a number")
        self.project.check_writable()
        self.parent = self.project.model(self.model_id)
        parent_file = self.project.model_file(self.parent)
        version = lineage_of(read_metadata(parent_file))["version"] + 1
        self.name, self.out_path = _version_name(self.project, self.parent, version)
        method = "no-missed-defect" if self.rule == "miss no confirmed defect" else \
            "f1-optimal" if self.rule == "best F1" else "mean+3std" if self.rule == "normals only" else "manual"
        from ..core.lineage import current_user
        self.threshold = Threshold(float(self.value), method, 0, self.detail or f"set in the threshold panel ({self.rule})"
                                   ).stamped("threshold panel", who=current_user())
        self.what = f"threshold set to {self.value:.4g}"
        previous = float(self.parent.image_threshold) if math.isfinite(self.parent.image_threshold) else None
        entry = history_entry(self.what, rule=self.rule, value=float(self.value), previous=previous, detail=self.detail)
        return ThresholdPlan(str(parent_file), str(self.out_path), self.threshold.to_dict(), entry)

    def finish(self, meta: Dict) -> VersionOutcome:
        new_id = self.project.add_version(self.parent.id, self.out_path, float(self.value),
                                          self.parent.pixel_threshold, meta, self.what, name=self.name)
        try:
            self.project.copy_results(self.parent.id, new_id, float(self.value))
        except BaseException:
            self.project.delete_model(new_id)
            raise
        self.project.set_current_model(new_id)
        return VersionOutcome(new_id, self.name, self.what, self.threshold.detail, [])

    def abandon(self) -> None:
        if self.out_path is not None:
            self.out_path.unlink(missing_ok=True)


def keep_threshold(project: Project, model_id: int, value: float, rule: str, detail: str = "",
                   job: Optional[Job] = None) -> VersionOutcome:
    """:class:`KeepThresholdJob` in this process."""
    return KeepThresholdJob(project, model_id, value, rule, detail).run_here(job)


# -- what the versions list shows ---------------------------------------------------------------------

@dataclass
class VersionRow:
    model: ModelRow
    parent: Optional[ModelRow]
    change: str                    # what changed from the parent ("trained" for a first version)
    version: int
    metrics: Dict[str, float]      # on the labelled images it scored (labelled_metrics)


def labelled_scores(project: Project, model: ModelRow, judged_only: bool = True
                    ) -> List[Tuple[float, Optional[str]]]:
    """(score, label) of the model's results on the labelled good images and (``judged_only``, the
    metrics) the labelled defects the project's split keeps for judging (:mod:`.splits`), else all
    labelled defects (the threshold panel: every confirmed part helps to place a threshold); always
    leaving out the images it learnt: those it was fine-tuned on (APC) and the good images added to
    it (their scores are no longer unseen ones)."""
    excluded = {int(i) for i in (model.meta.get("trained_on_anomalies") or [])}
    learnt = already_learnt(model.meta)
    rows = [r for r in project.images(model.id) if r.path not in learnt]
    if not judged_only:
        return [(r.score, r.label) for r in rows if r.score is not None and r.id not in excluded]
    return judged_scores(rows, anomaly_split(project), excluded)


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
