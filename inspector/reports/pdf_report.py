"""An inspection report as a PDF: what a QA engineer hands on after a review, for a quality
manager to sign.

Page 1 is the record: a title block (project, line, lot, the dates of the inspected results, the
model and its version, how each threshold was set: rule, data, step, when and who), the results
(inspected, flagged, passed), what the **operator's review** found (parts reviewed, by whom and
when: confirmed defects, false alarms, defects among the passed parts, not reviewed), apart from
it what the **dataset's ground truth** says (the labels its folders gave, never a review), results
per defect type where the dataset has types, and a sign-off block.  Page 2 shows the score
distribution against the threshold (and the parts per defect type).  Then the model's history
(its versions), the flagged parts with their anomaly maps, highest score first (the viewer's
colours: blue normal, red anomalous, regions above the pixel threshold outlined), and a list of
every flagged part.  Every page has a footer with the project, line, lot and "page i of n".

Drawn with matplotlib's PDF backend (no Qt, no pyplot state; TrueType text, so the words can be
searched and copied), written next to its destination and renamed, so a failed or cancelled
export never leaves half a file.

The report is read from the project by its owner (:func:`report_data`: plain data) and drawn from
that alone (:func:`write_report`), so that the window can draw it in a worker process that never
opens the project database (:class:`ReportJob`).
"""

from __future__ import annotations

import math
import os
import textwrap
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import matplotlib
import matplotlib.lines
import numpy as np
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .. import __version__
from ..core.errors import InspectorError
from ..core.images import read_image, resize_longest
from ..core.jobs import Job, as_job
from ..core.lineage import current_user
from ..core.overlay import render_overlay
from ..core.thresholds import provenance
from ..project.handoff import OwnedJob
from ..project.store import ImageRow, ModelRow, Project, ProjectError, read_map, storage_error

A4 = (8.27, 11.69)                      # inches, portrait
GRID = (3, 2)                           # flagged parts per page: rows, columns
LIST_ROWS = 38                          # lines per page of the flagged-parts list
MAX_PICTURES = 60                       # flagged parts shown with their map; the list has them all
PICTURE_PX = 640                        # longest side of a picture in the PDF (keeps files small)
MAX_TYPES = 12                          # defect types listed on page 1 (the rest summed as "other")
COLOURS = {"good": "#2b6cb0", "anomalous": "#c53030", None: "#a0aec0"}
GREY = "#4a5568"
SETTING_LINE, SETTING_LOT = "report_line", "report_lot"     # the project's last line and lot


def _day(when: Optional[str]) -> str:
    return str(when or "")[:16].replace("T", " ")


def review_status(row: ImageRow) -> str:
    """What the operator's review says about a result (never the dataset's labels)."""
    op = row.operator_label
    if op is None:
        return "not reviewed"
    if row.verdict == "anomalous":
        return "confirmed defect" if op == "anomalous" else "false alarm (operator: good)"
    return "missed defect (operator: defect)" if op == "anomalous" else "confirmed good"


def _short_status(row: ImageRow) -> str:
    """:func:`review_status` without the bracket, with who decided (for lists and captions)."""
    text = review_status(row).split(" (")[0]
    return f"{text} ({row.label_by})" if row.operator_label is not None and row.label_by else text


def dataset_status(row: ImageRow) -> str:
    """What the dataset's folders say about a part: its defect type, or good, or nothing."""
    if row.dataset_label is None:
        return "no ground truth"
    if row.dataset_label == "anomalous" and row.defect_type not in (None, "anomalous"):
        return f"defect ({row.defect_type})"
    return "defect" if row.dataset_label == "anomalous" else "good"


def summarise(rows: Sequence[ImageRow]) -> Dict:
    """Counts of a model's results by verdict, by what the operator's review found, and apart
    from it by the dataset's ground truth."""
    flagged = [r for r in rows if r.verdict == "anomalous"]
    passed = [r for r in rows if r.verdict == "normal"]
    reviewed = [r for r in rows if r.operator_label is not None]
    dates = sorted(r.label_updated for r in reviewed if r.label_updated)
    return {
        "inspected": len(flagged) + len(passed),
        "flagged": len(flagged),
        "passed": len(passed),
        # the operator's review
        "reviewed": len(reviewed),
        "confirmed": sum(r.operator_label == "anomalous" for r in flagged),
        "false_alarms": sum(r.operator_label == "good" for r in flagged),
        "flagged_unreviewed": sum(r.operator_label is None for r in flagged),
        "missed": sum(r.operator_label == "anomalous" for r in passed),
        "confirmed_good": sum(r.operator_label == "good" for r in passed),
        "passed_unreviewed": sum(r.operator_label is None for r in passed),
        "reviewers": sorted(Counter(r.label_by or "name not recorded" for r in reviewed).items()),
        "review_dates": (dates[0], dates[-1]) if dates else None,
        # the dataset's ground truth (its folders; nobody reviewed these)
        "gt_good": sum(r.dataset_label == "good" for r in rows),
        "gt_anomalous": sum(r.dataset_label == "anomalous" for r in rows),
        "gt_none": sum(r.dataset_label is None for r in rows),
        "gt_caught": sum(r.dataset_label == "anomalous" for r in flagged),
        "gt_missed": sum(r.dataset_label == "anomalous" for r in passed),
        "gt_false_alarms": sum(r.dataset_label == "good" for r in flagged),
        "gt_passed_good": sum(r.dataset_label == "good" for r in passed),
        "disagree": sum(r.operator_label is not None and r.dataset_label is not None
                        and r.operator_label != r.dataset_label for r in rows),
    }


def per_defect_type(rows: Sequence[ImageRow]) -> List[Tuple[str, Dict[str, int]]]:
    """Results per defect type (the dataset's folders), when the dataset has types beyond good /
    anomalous; else empty.  Good first, then the types by name."""
    types = {r.defect_type for r in rows if r.defect_type}
    if not types - {"good", "anomalous"}:
        return []
    out: Dict[str, Dict[str, int]] = {}
    for r in rows:
        t = r.defect_type or "(no type)"
        d = out.setdefault(t, {"parts": 0, "flagged": 0, "passed": 0, "reviewed": 0})
        d["parts"] += 1
        d["flagged"] += r.verdict == "anomalous"
        d["passed"] += r.verdict == "normal"
        d["reviewed"] += r.operator_label is not None
    return sorted(out.items(), key=lambda kv: (kv[0] != "good", kv[0] == "(no type)", kv[0]))


def threshold_text(model: ModelRow, changes: Sequence[Dict] = (), recorded: Optional[Dict] = None) -> str:
    """How the model's image threshold now in force was set: by its rule (the data, the step, when)
    or by someone (who, when); says what is not recorded rather than guess.

    ``changes``: the project's record of threshold moves (:meth:`Project.threshold_changes`);
    ``recorded``: the model file's image threshold record, when the project's copy has none."""
    value = model.image_threshold
    if not math.isfinite(value):
        return "not set (too few training images): no part is flagged until one is set"
    saved = recorded or (model.meta.get("thresholds") or {}).get("image") or {}
    own = saved.get("value")
    own_ok = isinstance(own, (int, float)) and math.isfinite(own)
    created = model.meta.get("created") or model.created
    last = changes[-1] if changes else None
    if last is not None and math.isclose(float(last["value"]), value, rel_tol=1e-9):
        out = (f"{value:.4g}: set by {last.get('who') or 'the operator (name not recorded)'} on "
               f"{_day(last.get('when'))} ({last.get('how') or 'manual'})")
        if own_ok and not math.isclose(own, value, rel_tol=1e-9):
            out += f"; the model's own threshold {own:.4g}: {provenance(saved, created)}"
        return out
    if own_ok and math.isclose(own, value, rel_tol=1e-9):
        return f"{value:.4g}: {provenance(saved, created)}"
    if saved:
        return (f"{value:.4g}: changed in this project before Inspector recorded who and when; "
                f"the model's own threshold {own:.4g}: {provenance(saved, created)}" if own_ok else
                f"{value:.4g}: changed in this project before Inspector recorded who and when")
    return f"{value:.4g}: how it was set is not recorded"


def pixel_threshold_text(model: ModelRow, recorded: Optional[Dict] = None) -> str:
    value = model.pixel_threshold
    if not math.isfinite(value):
        return "not set"
    saved = recorded or (model.meta.get("thresholds") or {}).get("pixel") or {}
    own = saved.get("value")
    text = f"{value:.4g} (outlines regions on the pictures)"
    if isinstance(own, (int, float)) and math.isfinite(own):
        if math.isclose(own, value, rel_tol=1e-9):
            return f"{text}: {provenance(saved, model.meta.get('created') or model.created)}"
        return f"{text}: moved with the image threshold from {own:.4g}"
    return text


@dataclass
class ReportData:
    """Everything the report shows, read from a project (picklable: no database in it)."""
    name: str
    folder: Path
    model: ModelRow
    rows: List[ImageRow]                 # the model's results, highest score first
    unreadable: int
    line: str = ""
    lot: str = ""
    threshold: str = ""                  # how the image threshold was set (threshold_text)
    pixel: str = ""
    made_by: str = ""
    made: str = field(default_factory=lambda: datetime.now().strftime("%Y-%m-%d %H:%M"))


def _file_thresholds(project: Project, model: ModelRow) -> Dict:
    """The model file's threshold records, for a model registered before the project kept them."""
    if (model.meta.get("thresholds") or {}).get("image"):
        return {}
    try:
        from ..core.modelfile import read_metadata
        return read_metadata(project.model_file(model)).get("thresholds") or {}
    except Exception:  # noqa: BLE001  (a missing or damaged file: the report says "not recorded")
        return {}


def report_data(project: Project, model_id: Optional[int] = None, line: Optional[str] = None,
                lot: Optional[str] = None) -> ReportData:
    """Read the report on ``model_id``'s results (default: the current model) from ``project``.

    ``line`` and ``lot`` go in the title block; None takes the project's last ones (kept by
    :func:`remember_line_lot`)."""
    model_id = model_id if model_id is not None else project.current_model_id
    if model_id is None:
        raise ProjectError("the project has no model yet: train one and inspect images first")
    model = project.model(model_id)
    rows = [r for r in project.images(model_id, order="score") if r.score is not None]
    if not rows:
        raise ProjectError(f"model '{model.name}' has no results yet: inspect images first")
    recorded = _file_thresholds(project, model)
    line = project.setting(SETTING_LINE, "") if line is None else line
    lot = project.setting(SETTING_LOT, "") if lot is None else lot
    return ReportData(project.name, project.folder, model, rows, project.counts(model_id)["unreadable"],
                      line or "", lot or "",
                      threshold_text(model, project.threshold_changes(model_id), recorded.get("image")),
                      pixel_threshold_text(model, recorded.get("pixel")), current_user())


def remember_line_lot(project: Project, line: Optional[str], lot: Optional[str]) -> None:
    """Keep the line and lot given for a report as the project's next default (not in a read-only view)."""
    if project.read_only:
        return
    for key, value in ((SETTING_LINE, line), (SETTING_LOT, lot)):
        if value is not None:
            try:
                project.set_setting(key, value or None)
            except ProjectError:         # a full disk: the report still says them, only the default is not kept
                return


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


# -- drawing -----------------------------------------------------------------------------------

def _footer(fig: Figure, data: ReportData, page: int, pages: int) -> None:
    fig.add_artist(matplotlib.lines.Line2D([0.08, 0.92], [0.035, 0.035], color="#cbd5e0", linewidth=0.6))
    left = f"Inspection report · {data.name}"
    if data.line:
        left += f" · line {data.line}"
    if data.lot:
        left += f" · lot {data.lot}"
    fig.text(0.08, 0.03, left, fontsize=7.5, va="top", color=GREY)
    fig.text(0.08, 0.017, f"made {data.made} by {data.made_by or '?'}, Inspector {__version__}", fontsize=7,
             va="top", color=GREY)
    fig.text(0.92, 0.03, f"Page {page} of {pages}", fontsize=7.5, va="top", ha="right", color=GREY)


def _table(fig: Figure, x: float, y: float, lines, width: int = 74, step: float = 0.0175,
           key_width: float = 0.2, size: float = 9) -> float:
    """Key / value lines; long values wrap. Returns the y below the last line."""
    for key, value in lines:
        fig.text(x, y, key, fontsize=size, weight="bold", va="top")
        wrapped = textwrap.wrap(value, width) or [""]
        for k, part in enumerate(wrapped):
            fig.text(x + key_width, y - k * step, part, fontsize=size, va="top")
        y -= step * len(wrapped) + step * 0.35
    return y


def _heading(fig: Figure, y: float, text: str, note: str = "") -> float:
    fig.text(0.08, y, text, fontsize=12, weight="bold", va="top")
    if note:
        fig.text(0.08, y - 0.019, note, fontsize=8, va="top", color=GREY, style="italic")
        return y - 0.042
    return y - 0.026


def _date_range(rows: Sequence[ImageRow]) -> str:
    stamps = sorted(r.result_created for r in rows if r.result_created)
    if not stamps:
        return "not recorded"
    first, last = _day(stamps[0]), _day(stamps[-1])
    return first if first == last else f"{first} to {last}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _summary_page(data: ReportData, counts: Dict, types) -> Figure:
    model = data.model
    fig = Figure(figsize=A4)
    fig.text(0.08, 0.965, "Inspection report", fontsize=20, weight="bold", va="top")
    fig.text(0.92, 0.962, data.name, fontsize=12, va="top", ha="right", color=GREY)
    training = model.meta.get("training") or {}
    trained = f"{_day(model.meta.get('created') or model.created)} on {training.get('n_images', '?')} good images"
    if training.get("n_holdout"):
        trained += f" ({training['n_holdout']} more held out to set the threshold)"
    version = (model.meta.get("lineage") or {}).get("version", 1)
    title = [
        ("Project", data.name),
        ("Line", data.line or "—"),
        ("Lot", data.lot or "—"),
        ("Results inspected", f"{_date_range(data.rows)} ({_plural(counts['inspected'], 'part')})"),
        ("Model", f"{model.name} ({model.method}, {model.backbone}), version {version}"
                  + (": history on a later page" if version != 1 else "")),
        ("Trained", trained),
        ("Image threshold", data.threshold),
        ("Pixel threshold", data.pixel),
        ("Report", f"made {data.made} by {data.made_by}, Inspector {__version__}"),
    ]
    y = _table(fig, 0.08, 0.925, title)

    c = counts
    y = _heading(fig, y - 0.012, "Results", "the model's verdicts")
    results = [("Inspected", f"{c['inspected']}"),
               ("Flagged anomalous", f"{c['flagged']}"),
               ("Passed", f"{c['passed']}")]
    if data.unreadable:
        results.append(("Unreadable", f"{data.unreadable} images could not be read and were not inspected"))
    y = _table(fig, 0.08, y, results)

    y = _heading(fig, y - 0.008, "Operator review", "decisions an operator made in Review or by painting a mask")
    if c["reviewed"]:
        who = ", ".join(f"{name} ({n})" for name, n in c["reviewers"])
        dates = c["review_dates"]
        when = "" if not dates else (f", {_day(dates[0])}" if _day(dates[0]) == _day(dates[1])
                                     else f", {_day(dates[0])} to {_day(dates[1])}")
        review = [("Reviewed", f"{c['reviewed']} of {c['inspected']} parts, by {who}{when}")]
    else:
        review = [("Reviewed", f"0 of {c['inspected']} parts: no operator has reviewed these results")]
    review += [
        ("Of the flagged", f"{c['confirmed']} confirmed defects, {c['false_alarms']} false alarms, "
                           f"{c['flagged_unreviewed']} not reviewed"),
        ("Of the passed", f"{c['missed']} defects found by the operator (missed by the model), "
                          f"{c['confirmed_good']} confirmed good, {c['passed_unreviewed']} not reviewed"),
    ]
    y = _table(fig, 0.08, y, review)

    y = _heading(fig, y - 0.008, "Dataset ground truth",
                 "the labels the dataset's folders gave (e.g. test/good, test/<defect>); nobody reviewed these")
    if c["gt_good"] + c["gt_anomalous"]:
        truth = [
            ("Labelled", f"{c['gt_anomalous']} defects, {c['gt_good']} good, {c['gt_none']} without a label"),
            ("Against the model", f"{c['gt_caught']} of {c['gt_anomalous']} defects flagged, {c['gt_missed']} "
                                  f"passed; {c['gt_false_alarms']} of {c['gt_good']} good parts flagged"),
        ]
        if c["disagree"]:
            truth.append(("Operator differs", f"on {_plural(c['disagree'], 'part')} (the operator's decision is "
                                              "the one counted in the review above)"))
    else:
        truth = [("Labelled", f"none of the {c['inspected']} parts has a label from its dataset")]
    y = _table(fig, 0.08, y, truth)

    if types:                # in one line here; the table and its chart on page 2
        shown = ", ".join(f"{name} {d['flagged']}/{d['parts']}" for name, d in types[:MAX_TYPES])
        if len(types) > MAX_TYPES:
            shown += f" and {len(types) - MAX_TYPES} more types"
        y = _table(fig, 0.08, y, [("Per defect type", f"flagged / parts: {shown} (table on page 2)")])

    _signoff(fig, min(y - 0.015, SIGNOFF_TOP))
    return fig


SIGNOFF_TOP = 0.175             # the sign-off block's top at most (it needs down to 0.05, above the footer)


def _signoff(fig: Figure, top: float) -> None:
    """Name / signature / date lines for the operator and the quality manager."""
    fig.text(0.08, top, "Sign-off", fontsize=12, weight="bold", va="top")
    rows = ("Reviewed by (operator)", "Approved by (quality)")
    for i, role in enumerate(rows):
        y = top - 0.05 - i * 0.055
        fig.text(0.08, y + 0.006, role, fontsize=8.5, weight="bold", va="bottom")
        for x0, x1, label in ((0.30, 0.50, "name"), (0.53, 0.76, "signature"), (0.79, 0.92, "date")):
            fig.add_artist(matplotlib.lines.Line2D([x0, x1], [y, y], color="black", linewidth=0.7))
            fig.text(x0, y - 0.004, label, fontsize=7, va="top", color=GREY)


def _types_table(fig: Figure, y: float, types) -> float:
    y = _heading(fig, y, "Results per defect type", "the dataset's folders; reviewed: by the operator")
    cols = ((0.08, "type", "left"), (0.45, "parts", "right"), (0.57, "flagged", "right"),
            (0.69, "passed", "right"), (0.84, "reviewed", "right"))
    for x, head, ha in cols:
        fig.text(x, y, head, fontsize=8.5, weight="bold", va="top", ha=ha)
    shown = types[:MAX_TYPES]
    if len(types) > MAX_TYPES:
        rest = {k: sum(d[k] for _, d in types[MAX_TYPES:]) for k in ("parts", "flagged", "passed", "reviewed")}
        shown = shown + [(f"{len(types) - MAX_TYPES} other types", rest)]
    for i, (name, d) in enumerate(shown):
        yy = y - 0.016 * (i + 1)
        fig.text(0.08, yy, name, fontsize=8.5, va="top")
        for (x, key, ha) in cols[1:]:
            fig.text(x, yy, str(d[key]), fontsize=8.5, va="top", ha=ha)
    return y - 0.016 * (len(shown) + 1)


def _charts_page(data: ReportData, types) -> Figure:
    model, rows = data.model, data.rows
    fig = Figure(figsize=A4)
    fig.text(0.08, 0.965, "Score distribution" + (" and defect types" if types else ""), fontsize=13,
             weight="bold", va="top")
    fig.text(0.08, 0.94, "Colours: the dataset's ground truth where it has one, else the operator's decision.",
             fontsize=8.5, va="top", color=GREY)
    ax = fig.add_axes((0.1, 0.64 if types else 0.3, 0.82, 0.27 if types else 0.6))

    def truth(r: ImageRow) -> Tuple[Optional[str], str]:
        if r.dataset_label is not None:
            return r.dataset_label, "dataset"
        if r.operator_label is not None:
            return r.operator_label, "operator"
        return None, ""

    groups: Dict[Tuple[Optional[str], str], List[float]] = {}
    for r in rows:
        groups.setdefault(truth(r), []).append(r.score)
    lo, hi = min(r.score for r in rows), max(r.score for r in rows)
    if math.isfinite(model.image_threshold):
        lo, hi = min(lo, model.image_threshold), max(hi, model.image_threshold)
    bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 40)
    words = {"good": "good", "anomalous": "defect", None: "no label"}
    order = [("good", "dataset"), ("good", "operator"), ("anomalous", "dataset"), ("anomalous", "operator"),
             (None, "")]
    for key in order:
        vals = groups.get(key)
        if vals:
            lab, src = key
            name = f"{words[lab]} ({src})" if src else words[lab]
            ax.hist(vals, bins=bins, color=COLOURS[lab], alpha=0.75 if src != "operator" else 0.45,
                    hatch="//" if src == "operator" else None, label=f"{name}: {len(vals)}")
    if math.isfinite(model.image_threshold):
        ax.axvline(model.image_threshold, color="black", linestyle="--",
                   label=f"threshold {model.image_threshold:.4g}")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.3)          # room for the legend above the bars
    ax.legend(loc="upper center", fontsize=8, ncol=3)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("score (higher = more anomalous)")
    ax.set_ylabel("parts")
    if types:
        _types_table(fig, 0.585, types)
        bx = fig.add_axes((0.1, 0.08, 0.82, 0.22))
        names = [n for n, _ in types]
        flagged = [d["flagged"] for _, d in types]
        passed = [d["passed"] for _, d in types]
        x = np.arange(len(names))
        bx.bar(x, flagged, 0.6, color=COLOURS["anomalous"], label="flagged")
        bx.bar(x, passed, 0.6, bottom=flagged, color=COLOURS["good"], label="passed")
        bx.set_ylim(0, max(f + p for f, p in zip(flagged, passed)) * 1.25 + 0.5)
        bx.set_xticks(x, names, rotation=30 if len(names) > 4 else 0, ha="right" if len(names) > 4 else "center",
                      fontsize=8)
        bx.yaxis.set_major_locator(MaxNLocator(integer=True))
        bx.set_ylabel("parts")
        bx.set_title("Verdicts per defect type (the dataset's folders)", fontsize=11, loc="left")
        bx.legend(loc="upper center", fontsize=8, ncol=2)
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
        ax.set_title(f"{row.name}  ·  score {row.score:.4g}\noperator: {_short_status(row)}  ·  "
                     f"dataset: {dataset_status(row)}",
                     fontsize=8, color=COLOURS["anomalous"] if status == "confirmed defect" else "black")
    fig.subplots_adjust(left=0.05, right=0.95, top=0.89, bottom=0.06, hspace=0.32, wspace=0.08)
    return fig


def _list_page(flagged: Sequence[ImageRow], start: int, page: int, pages: int) -> Figure:
    fig = Figure(figsize=A4)
    fig.text(0.08, 0.965, f"All flagged parts ({page}/{pages})", fontsize=13, weight="bold", va="top")
    y = 0.92
    cols = (("#", 0.08), ("part", 0.12), ("score", 0.44), ("operator review", 0.52), ("dataset", 0.76))
    for head, x in cols:
        fig.text(x, y, head, fontsize=9, weight="bold", va="top")
    for i, row in enumerate(flagged[start:start + LIST_ROWS]):
        y = 0.895 - i * 0.021
        name = row.name if len(row.name) <= 40 else "…" + row.name[-39:]
        for text, (_, x) in zip((str(start + i + 1), name, f"{row.score:.4g}", _short_status(row)[:36],
                                 dataset_status(row)[:28]),
                                cols):
            fig.text(x, y, text, fontsize=8, va="top")
    return fig


def write_report(data: ReportData, path, job: Optional[Job] = None) -> int:
    """Write the report of ``data`` to ``path``; returns the number of pages.

    Reports progress per page and stops between pages when cancelled, leaving no file behind; a
    full disk or a read-only folder is one clear :class:`~inspector.project.store.StorageError`.
    """
    job = as_job(job)
    model, rows = data.model, data.rows
    counts = summarise(rows)
    types = per_defect_type(rows)
    flagged = [r for r in rows if r.verdict == "anomalous"]
    shown = flagged[:MAX_PICTURES]
    per_page = GRID[0] * GRID[1]
    picture_pages = math.ceil(len(shown) / per_page)
    list_pages = math.ceil(len(flagged) / LIST_ROWS)
    history = 1 if history_lines(model) else 0
    total = 2 + history + picture_pages + list_pages

    out = Path(path)
    tmp = out.with_name(out.name + ".part")
    try:
        with open(tmp, "wb") as fh, matplotlib.rc_context({"pdf.fonttype": 42}):   # text that can be read back
            pdf = PdfPages(fh, metadata={"Title": f"Inspection report: {data.name}",
                                         "Subject": " ".join(x for x in (f"line {data.line}" if data.line else "",
                                                                         f"lot {data.lot}" if data.lot else "") if x),
                                         "Creator": f"Inspector {__version__}"})
            done = 0

            def save(fig: Figure) -> None:
                nonlocal done
                done += 1
                _footer(fig, data, done, total)
                pdf.savefig(fig)
                job.step("writing the report", done, total)

            try:
                job.step("writing the report", 0, total)
                save(_summary_page(data, counts, types))
                save(_charts_page(data, types))
                if history:
                    save(_history_page(model))
                for p in range(picture_pages):
                    chunk = shown[p * per_page:(p + 1) * per_page]
                    pictures = [(r, _picture(data, r, model.pixel_threshold)) for r in chunk]
                    save(_pictures_page(pictures, p + 1, picture_pages, len(shown), len(flagged)))
                for p in range(list_pages):
                    save(_list_page(flagged, p * LIST_ROWS, p + 1, list_pages))
            except BaseException:
                try:         # after a failed write matplotlib's close fails too (zlib): the first error counts
                    pdf.close()
                except Exception:  # noqa: BLE001
                    pass
                raise
            pdf.close()
        os.replace(tmp, out)
    except OSError as exc:
        raise storage_error(exc, str(out)) from None
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
    return total


def export_pdf(project: Project, path, model_id: Optional[int] = None, job: Optional[Job] = None,
               line: Optional[str] = None, lot: Optional[str] = None) -> int:
    """Write the report on ``model_id``'s results (default: the current model) to ``path``, in this
    process. ``line`` / ``lot``: the title block's (None: the project's last ones). Returns the
    number of pages."""
    return write_report(report_data(project, model_id, line, lot), path, job)


def _draw(plan, job: Optional[Job] = None, deliver=None) -> int:
    data, path = plan
    return write_report(data, path, job)


class ReportJob(OwnedJob):
    """The report drawn in a worker process from data the owner read (it writes nothing in the
    project, so a read-only view can report too). Returns the number of pages."""

    title = "writing the report"
    work = staticmethod(_draw)

    def __init__(self, project: Project, path, model_id: Optional[int] = None, line: Optional[str] = None,
                 lot: Optional[str] = None):
        super().__init__(project)
        self.path, self.model_id, self.line, self.lot = str(path), model_id, line, lot

    def prepare(self):
        return report_data(self.project, self.model_id, self.line, self.lot), self.path
