"""An inspection report as a PDF: what a QA engineer hands on after a review.

Page 1 sums up a model's results in a project: the model and how its threshold was set, how many
parts were inspected, flagged and passed, what the operator's review found (confirmed defects,
false alarms, missed defects), and the score distribution against the threshold.  The next pages
show the flagged parts, highest score first, each with its anomaly map on the image (the viewer's
colours: blue normal, red anomalous, regions above the pixel threshold outlined), then a list of
every flagged part.

Drawn with matplotlib's PDF backend (no Qt, no pyplot state), written next to its destination and
renamed, so a failed or cancelled export never leaves half a file.

The report is read from the project by its owner (:func:`report_data`: plain data) and drawn from
that alone (:func:`write_report`), so that the window can draw it in a worker process that never
opens the project database (:class:`ReportJob`).
"""

from __future__ import annotations

import math
import os
from datetime import datetime
from pathlib import Path
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from .. import __version__
from ..core.errors import InspectorError
from ..core.images import read_image, resize_longest
from ..core.jobs import Job, as_job
from ..core.overlay import render_overlay
from ..project.handoff import OwnedJob
from ..project.store import ImageRow, ModelRow, Project, ProjectError, read_map, storage_error

A4 = (8.27, 11.69)                      # inches, portrait
GRID = (3, 2)                           # flagged parts per page: rows, columns
LIST_ROWS = 40                          # lines per page of the flagged-parts list
MAX_PICTURES = 60                       # flagged parts shown with their map; the list has them all
PICTURE_PX = 640                        # longest side of a picture in the PDF (keeps files small)
COLOURS = {"good": "#2b6cb0", "anomalous": "#c53030", None: "#a0aec0"}


def review_status(row: ImageRow) -> str:
    """What the operator's label says about a result."""
    if row.label is None:
        return "not reviewed"
    if row.verdict == "anomalous":
        return "confirmed defect" if row.label == "anomalous" else "false alarm (labelled good)"
    return "missed defect (labelled anomalous)" if row.label == "anomalous" else "confirmed good"


def summarise(rows: Sequence[ImageRow]) -> Dict[str, int]:
    """Counts of a model's results by verdict and by what the review found."""
    flagged = [r for r in rows if r.verdict == "anomalous"]
    passed = [r for r in rows if r.verdict == "normal"]
    return {
        "inspected": len(flagged) + len(passed),
        "flagged": len(flagged),
        "passed": len(passed),
        "confirmed": sum(r.label == "anomalous" for r in flagged),
        "false_alarms": sum(r.label == "good" for r in flagged),
        "flagged_unreviewed": sum(r.label is None for r in flagged),
        "missed": sum(r.label == "anomalous" for r in passed),
        "passed_unreviewed": sum(r.label is None for r in passed),
    }


def threshold_text(model: ModelRow) -> str:
    """How the model's image threshold was set; says so when the operator changed it since."""
    saved = (model.meta.get("thresholds") or {}).get("image") or {}
    value = model.image_threshold
    if not math.isfinite(value):
        return "not set (too few training images): no part is flagged until one is set"
    if saved and math.isclose(float(saved.get("value", float("nan"))), value, rel_tol=1e-9):
        return f"{value:.4g}: {saved.get('detail') or saved.get('method', '')}"
    return f"{value:.4g}: set by the operator"


@dataclass
class ReportData:
    """Everything the report shows, read from a project (picklable: no database in it)."""
    name: str
    folder: Path
    model: ModelRow
    rows: List[ImageRow]                 # the model's results, highest score first
    unreadable: int


def report_data(project: Project, model_id: Optional[int] = None) -> ReportData:
    """Read the report on ``model_id``'s results (default: the current model) from ``project``."""
    model_id = model_id if model_id is not None else project.current_model_id
    if model_id is None:
        raise ProjectError("the project has no model yet: train one and inspect images first")
    model = project.model(model_id)
    rows = [r for r in project.images(model_id, order="score") if r.score is not None]
    if not rows:
        raise ProjectError(f"model '{model.name}' has no results yet: inspect images first")
    return ReportData(project.name, project.folder, model, rows, project.counts(model_id)["unreadable"])


def _picture(data: ReportData, row: ImageRow, pixel_threshold: float) -> Optional[np.ndarray]:
    """The part with its anomaly map, at most PICTURE_PX on its longest side; None if unreadable."""
    try:
        image = read_image(row.path)
    except InspectorError:
        return None
    amap = read_map(data.folder, row.map_path)
    if amap is not None:
        image = render_overlay(image, amap, pixel_threshold, opacity=0.45)
    return resize_longest(image, PICTURE_PX) if max(image.shape[:2]) > PICTURE_PX else image


def _summary_page(data: ReportData, model: ModelRow, rows: Sequence[ImageRow], counts: Dict[str, int],
                  unreadable: int) -> Figure:
    fig = Figure(figsize=A4)
    fig.text(0.08, 0.95, "Inspection report", fontsize=22, weight="bold", va="top")
    fig.text(0.08, 0.915, data.name, fontsize=14, va="top", color="#4a5568")
    training = model.meta.get("training") or {}
    trained = f"{str(model.meta.get('created') or model.created)[:16].replace('T', ' ')} on " \
              f"{training.get('n_images', '?')} good images"
    if training.get("n_holdout"):
        trained += f" ({training['n_holdout']} more held out to set the threshold)"
    version = (model.meta.get("lineage") or {}).get("version", 1)
    lines = [
        ("Model", f"{model.name}  ({model.method}, {model.backbone})"
                  + (f", version {version}: history on page 2" if version != 1 else "")),
        ("Trained", trained),
        ("Image threshold", threshold_text(model)),
        ("Pixel threshold", f"{model.pixel_threshold:.4g} (outlines regions on the pictures)"),
        ("Report", f"{datetime.now().strftime('%Y-%m-%d %H:%M')}, Inspector {__version__}"),
        ("Project folder", str(data.folder)),
    ]
    _table(fig, 0.08, 0.87, lines, width=90)
    c = counts
    results = [
        ("Inspected", f"{c['inspected']}"),
        ("Flagged anomalous", f"{c['flagged']}: {c['confirmed']} confirmed defects, {c['false_alarms']} false "
                              f"alarms, {c['flagged_unreviewed']} not reviewed"),
        ("Passed", f"{c['passed']}: {c['missed']} missed defects (labelled anomalous), "
                   f"{c['passed_unreviewed']} not reviewed"),
    ]
    if unreadable:
        results.append(("Unreadable", f"{unreadable} images could not be read and were not inspected"))
    fig.text(0.08, 0.66, "Results", fontsize=14, weight="bold", va="top")
    _table(fig, 0.08, 0.63, results, width=80)

    ax = fig.add_axes((0.1, 0.1, 0.82, 0.36))
    scores = {lab: [r.score for r in rows if r.label == lab and r.score is not None]
              for lab in ("good", "anomalous", None)}
    every = [s for v in scores.values() for s in v]
    if every:
        lo, hi = min(every), max(every)
        if math.isfinite(model.image_threshold):
            lo, hi = min(lo, model.image_threshold), max(hi, model.image_threshold)
        bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 40)
        names = {"good": "labelled good", "anomalous": "labelled anomalous", None: "not reviewed"}
        for lab, vals in scores.items():
            if vals:
                ax.hist(vals, bins=bins, color=COLOURS[lab], alpha=0.7, label=f"{names[lab]} ({len(vals)})")
        if math.isfinite(model.image_threshold):
            ax.axvline(model.image_threshold, color="black", linestyle="--",
                       label=f"threshold {model.image_threshold:.4g}")
        ax.legend(loc="upper right", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no results yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_title("Anomaly scores", fontsize=12, loc="left")
    ax.set_xlabel("score (higher = more anomalous)")
    ax.set_ylabel("parts")
    return fig


HISTORY_LINES = 40                      # lines of the model history page (the newest entries are kept)


def history_lines(model: ModelRow) -> List[str]:
    """The model's version history (lineage), one entry after the other: version, when, who, what,
    the rule, and the images added."""
    lineage = model.meta.get("lineage") or {}
    out: List[str] = []
    for h in lineage.get("history") or []:
        when = str(h.get("when", ""))[:16].replace("T", " ")
        out.append(f"v{h.get('version', '?')}  {when}  {h.get('who', '?')}:  {h.get('what', '')}")
        if h.get("rule"):
            out.append(f"      rule: {h['rule']}")
        if h.get("detail"):
            out.append(f"      {h['detail']}")
        images = [str(p).replace("\\", "/").rsplit("/", 1)[-1] for p in h.get("images") or []]
        if images:
            shown = ", ".join(images[:8]) + (f" and {len(images) - 8} more" if len(images) > 8 else "")
            out.append(f"      images: {shown}")
    return out


def _history_page(model: ModelRow) -> Figure:
    fig = Figure(figsize=A4)
    lineage = model.meta.get("lineage") or {}
    fig.text(0.08, 0.95, "Model history", fontsize=18, weight="bold", va="top")
    parent = lineage.get("parent") or {}
    fig.text(0.08, 0.915, f"{model.name}, version {lineage.get('version', 1)}", fontsize=10, va="top",
             color="#4a5568")
    if parent:
        fig.text(0.08, 0.895, f"made from {parent.get('file', '?')} (metadata sha256 "
                 f"{str(parent.get('meta_sha256', ''))[:16]}…)", fontsize=8.5, va="top", color="#4a5568")
    fig.text(0.08, 0.873, "Every change since training, with who made it and when: the audit trail kept in the "
             "model file.", fontsize=9, va="top", color="#4a5568")
    lines = history_lines(model)
    if len(lines) > HISTORY_LINES:
        fig.text(0.08, 0.85, f"(the latest {HISTORY_LINES} of {len(lines)} lines)", fontsize=8.5, va="top")
        lines = lines[-HISTORY_LINES:]
    for i, line in enumerate(lines):
        text = line if len(line) <= 115 else line[:114] + "…"
        fig.text(0.08, 0.83 - i * 0.02, text, fontsize=8.5, va="top",
                 weight="normal" if line.startswith(" ") else "bold")
    return fig


def _table(fig: Figure, x: float, y: float, lines, width: int, step: float = 0.028) -> None:
    for i, (key, value) in enumerate(lines):
        fig.text(x, y - i * step, key, fontsize=9.5, weight="bold", va="top")
        text = value if len(value) <= width else value[:width - 1] + "…"
        fig.text(x + 0.2, y - i * step, text, fontsize=9.5, va="top")


def _pictures_page(pictures: List[tuple], page: int, pages: int, shown: int, flagged: int) -> Figure:
    fig = Figure(figsize=A4)
    fig.text(0.08, 0.965, f"Flagged parts, highest score first ({page}/{pages})", fontsize=13,
             weight="bold", va="top")
    if shown < flagged:
        fig.text(0.08, 0.94, f"The {shown} highest of {flagged} flagged parts; the list after these pages "
                 "has them all.", fontsize=9, va="top")
    rows, cols = GRID
    for k, (row, picture) in enumerate(pictures):
        ax = fig.add_subplot(rows, cols, k + 1)
        if picture is None:
            ax.text(0.5, 0.5, "image could not be read", ha="center", va="center", transform=ax.transAxes)
        else:
            ax.imshow(picture)
        ax.set_xticks([])
        ax.set_yticks([])
        status = review_status(row)
        ax.set_title(f"{row.name}\nscore {row.score:.4g} · {status}", fontsize=8.5,
                     color=COLOURS["anomalous"] if status == "confirmed defect" else "black")
    fig.subplots_adjust(left=0.05, right=0.95, top=0.88, bottom=0.03, hspace=0.3, wspace=0.08)
    return fig


def _list_page(flagged: Sequence[ImageRow], start: int, page: int, pages: int) -> Figure:
    fig = Figure(figsize=A4)
    fig.text(0.08, 0.965, f"All flagged parts ({page}/{pages})", fontsize=13, weight="bold", va="top")
    y = 0.92
    for head, x in (("#", 0.08), ("part", 0.13), ("score", 0.62), ("review", 0.72)):
        fig.text(x, y, head, fontsize=9, weight="bold", va="top")
    for i, row in enumerate(flagged[start:start + LIST_ROWS]):
        y = 0.895 - i * 0.021
        name = row.name if len(row.name) <= 60 else "…" + row.name[-59:]
        for text, x in ((str(start + i + 1), 0.08), (name, 0.13), (f"{row.score:.4g}", 0.62),
                        (review_status(row), 0.72)):
            fig.text(x, y, text, fontsize=8.5, va="top")
    return fig


def write_report(data: ReportData, path, job: Optional[Job] = None) -> int:
    """Write the report of ``data`` to ``path``; returns the number of pages.

    Reports progress per page and stops between pages when cancelled, leaving no file behind; a
    full disk or a read-only folder is one clear :class:`~inspector.project.store.StorageError`.
    """
    job = as_job(job)
    model, rows = data.model, data.rows
    counts = summarise(rows)
    flagged = [r for r in rows if r.verdict == "anomalous"]
    shown = flagged[:MAX_PICTURES]
    per_page = GRID[0] * GRID[1]
    picture_pages = math.ceil(len(shown) / per_page)
    list_pages = math.ceil(len(flagged) / LIST_ROWS)
    history = 1 if history_lines(model) else 0
    total = 1 + history + picture_pages + list_pages

    out = Path(path)
    tmp = out.with_name(out.name + ".part")
    try:
        with open(tmp, "wb") as fh:           # this file object, not matplotlib, closes the file
            pdf = PdfPages(fh, metadata={"Title": f"Inspection report: {data.name}",
                                         "Creator": f"Inspector {__version__}"})
            try:
                job.step("writing the report", 0, total)
                pdf.savefig(_summary_page(data, model, rows, counts, data.unreadable))
                done = 1
                if history:
                    pdf.savefig(_history_page(model))
                    done += 1
                for p in range(picture_pages):
                    job.step("writing the report", done, total)
                    chunk = shown[p * per_page:(p + 1) * per_page]
                    pictures = [(r, _picture(data, r, model.pixel_threshold)) for r in chunk]
                    pdf.savefig(_pictures_page(pictures, p + 1, picture_pages, len(shown), len(flagged)))
                    done += 1
                for p in range(list_pages):
                    job.step("writing the report", done, total)
                    pdf.savefig(_list_page(flagged, p * LIST_ROWS, p + 1, list_pages))
                    done += 1
            except BaseException:
                try:         # after a failed write matplotlib's close fails too (zlib): the first error counts
                    pdf.close()
                except Exception:  # noqa: BLE001
                    pass
                raise
            pdf.close()
        job.step("writing the report", total, total)
        os.replace(tmp, out)
    except OSError as exc:
        raise storage_error(exc, str(out)) from None
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
    return total


def export_pdf(project: Project, path, model_id: Optional[int] = None, job: Optional[Job] = None) -> int:
    """Write the report on ``model_id``'s results (default: the current model) to ``path``, in this
    process. Returns the number of pages."""
    return write_report(report_data(project, model_id), path, job)


def _draw(plan, job: Optional[Job] = None, deliver=None) -> int:
    data, path = plan
    return write_report(data, path, job)


class ReportJob(OwnedJob):
    """The report drawn in a worker process from data the owner read (it writes nothing in the
    project, so a read-only view can report too). Returns the number of pages."""

    title = "writing the report"
    work = staticmethod(_draw)

    def __init__(self, project: Project, path, model_id: Optional[int] = None):
        super().__init__(project)
        self.path, self.model_id = str(path), model_id

    def prepare(self):
        return report_data(self.project, self.model_id), self.path
