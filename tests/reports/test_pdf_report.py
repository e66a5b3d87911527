"""The PDF inspection report: a real PDF with the pages it promises, written whole or not at all."""

import math
import re

import numpy as np
import pytest

from inspector.cli import main
from inspector.core.jobs import CancelToken, Cancelled, Job
from inspector.project import Project, ProjectError
from inspector.project.demo import make_mvtec
from inspector.reports import pdf_report
from inspector.reports.pdf_report import export_pdf, review_status, summarise, threshold_text

META = {"thresholds": {"image": {"value": 0.5, "method": "mean+3std", "n": 8,
                                 "detail": "mean 0.3 + 3 x std 0.07 of 8 held-out normal images"}},
        "training": {"n_images": 8}}


def _pages(path) -> int:
    return len(re.findall(rb"/Type\s*/Page\b", path.read_bytes()))


@pytest.fixture
def project(tmp_path):
    """A project with a model's results on 6 test parts: maps hot where the defect blob is."""
    data = make_mvtec(tmp_path / "weave", n_train=4, n_good=3, n_bad=3, size=64)
    p = Project.create(tmp_path / "proj", name="Weave line 3")
    p.add_mvtec(data)
    f = p.new_model_path("m")
    f.write_bytes(b"not read by the report")
    mid = p.add_model("weave-v1", f, "patchcore", "resnet18", 0.5, 0.4, META)
    items = []
    for r in p.images(split="test"):
        bad = r.label == "anomalous"
        amap = np.full((64, 64), 0.1, np.float32)
        if bad:
            amap[20:40, 20:40] = 0.9
        score = 0.8 + 0.01 * r.id if bad else 0.2 + 0.01 * r.id
        items.append((r.id, score, "anomalous" if score >= 0.5 else "normal", amap))
    p.add_results(mid, items)
    yield p
    p.close()


def test_the_report_is_a_pdf_with_summary_pictures_and_list(tmp_path, project):
    out = tmp_path / "report.pdf"
    seen = []
    pages = export_pdf(project, out, job=Job(lambda *a: seen.append(a)))
    assert out.read_bytes().startswith(b"%PDF") and out.stat().st_size > 10_000
    assert pages == _pages(out) == 1 + 1 + 1           # summary, 3 flagged parts on one page, the list
    assert seen[-1] == ("writing the report", pages, pages)
    assert not (tmp_path / "report.pdf.part").exists()


def test_pictures_stop_at_the_cap_and_the_list_keeps_every_flagged_part(tmp_path, project, monkeypatch):
    mid = project.current_model_id
    project.set_image_threshold(mid, 0.0)                 # flag all 6
    monkeypatch.setattr(pdf_report, "MAX_PICTURES", 2)
    monkeypatch.setattr(pdf_report, "LIST_ROWS", 4)
    pages = export_pdf(project, tmp_path / "r.pdf")
    assert pages == _pages(tmp_path / "r.pdf") == 1 + 1 + math.ceil(6 / 4)


def test_summary_counts_what_the_review_found(project):
    mid = project.current_model_id
    bad = [r.id for r in project.images(mid, label="anomalous")]
    good = [r.id for r in project.images(mid, label="good", split="test")]
    project.set_label(bad[0], None)                       # flagged, not reviewed yet
    project.set_image_threshold(mid, 0.2 + 0.01 * max(good))  # the highest-scoring good part is flagged
    project.set_label(good[0], None)
    rows = [r for r in project.images(mid) if r.score is not None]
    c = summarise(rows)
    assert c["inspected"] == 6 and c["flagged"] == 4 and c["passed"] == 2
    assert c["confirmed"] == 2 and c["false_alarms"] == 1 and c["flagged_unreviewed"] == 1
    assert c["missed"] == 0 and c["passed_unreviewed"] == 1
    statuses = {r.id: review_status(r) for r in rows}
    assert statuses[bad[1]] == "confirmed defect"
    assert statuses[max(good)] == "false alarm (labelled good)"
    assert statuses[bad[0]] == "not reviewed"


def test_threshold_text_says_how_it_was_set(project):
    mid = project.current_model_id
    assert "held-out normal images" in threshold_text(project.model(mid))
    project.set_image_threshold(mid, 0.6)
    assert threshold_text(project.model(mid)) == "0.6: set by the operator"
    project.set_image_threshold(mid, math.inf)
    assert threshold_text(project.model(mid)).startswith("not set")


def test_clear_errors_and_no_half_written_file(tmp_path, project):
    with pytest.raises(ProjectError, match="cannot write"):
        export_pdf(project, tmp_path / "no" / "such" / "dir" / "r.pdf")
    empty = Project.create(tmp_path / "empty")
    with pytest.raises(ProjectError, match="no model"):
        export_pdf(empty, tmp_path / "r.pdf")
    f = empty.new_model_path("m")
    f.write_bytes(b"x")
    empty.add_model("fresh", f, "patchcore", "resnet18", 0.5, 0.5)
    with pytest.raises(ProjectError, match="no results yet"):
        export_pdf(empty, tmp_path / "r.pdf")
    empty.close()
    assert not list(tmp_path.glob("r.pdf*"))


def test_cancel_between_pages_leaves_nothing(tmp_path, project):
    token = CancelToken()

    def progress(stage, done, total):
        if done >= 1:
            token.cancel()

    with pytest.raises(Cancelled):
        export_pdf(project, tmp_path / "r.pdf", job=Job(progress, token))
    assert not list(tmp_path.glob("r.pdf*"))


def test_cli_report(tmp_path, project, capsys):
    folder = project.folder
    project.close()
    out = tmp_path / "cli.pdf"
    assert main(["report", str(folder), "-o", str(out), "-q"]) == 0
    assert "3 pages" in capsys.readouterr().out and _pages(out) == 3
    assert main(["report", str(folder), "-o", str(out), "--model", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no model named 'nope'" in err and "weave-v1" in err and "Traceback" not in err
    assert main(["report", str(tmp_path / "missing"), "-o", str(out)]) == 2
    assert "not found" in capsys.readouterr().err
