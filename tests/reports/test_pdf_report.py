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

META = {"thresholds": {"image": {"value": 0.5, "method": "mean+3std", "n": 8, "origin": "training",
                                 "when": "2026-12-01T09:15:00+00:00",
                                 "detail": "mean 0.3 + 3 x std 0.07 of 8 held-out normal images"}},
        "training": {"n_images": 8}}


def _pages(path) -> int:
    return len(re.findall(rb"/Type\s*/Page\b", path.read_bytes()))


def pdf_text(path) -> list:
    """The text of each page of a PDF, read back with pypdf (whitespace folded to single spaces)."""
    pypdf = pytest.importorskip("pypdf", reason="pypdf (the dev extra) reads the report's text back")
    return [" ".join((page.extract_text() or "").split()) for page in pypdf.PdfReader(str(path)).pages]


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
    assert pages == _pages(out) == 2 + 1 + 1           # summary, charts, 3 flagged parts on one page, the list
    assert seen[-1] == ("writing the report", pages, pages)
    assert not (tmp_path / "report.pdf.part").exists()


def test_pictures_stop_at_the_cap_and_the_list_keeps_every_flagged_part(tmp_path, project, monkeypatch):
    mid = project.current_model_id
    project.set_image_threshold(mid, 0.0)                 # flag all 6
    monkeypatch.setattr(pdf_report, "MAX_PICTURES", 2)
    monkeypatch.setattr(pdf_report, "LIST_ROWS", 4)
    pages = export_pdf(project, tmp_path / "r.pdf")
    assert pages == _pages(tmp_path / "r.pdf") == 2 + 1 + math.ceil(6 / 4)


def test_summary_counts_the_operators_review_apart_from_the_datasets_truth(project):
    mid = project.current_model_id
    bad = [r.id for r in project.images(mid, label="anomalous")]
    good = [r.id for r in project.images(mid, label="good", split="test")]
    project.set_image_threshold(mid, 0.2 + 0.01 * max(good))  # the highest-scoring good part is flagged
    rows = [r for r in project.images(mid) if r.score is not None]
    c = summarise(rows)
    # nobody reviewed anything yet: the dataset's labels are not the operator's confirmations
    assert (c["inspected"], c["flagged"], c["passed"]) == (6, 4, 2)
    assert (c["reviewed"], c["confirmed"], c["false_alarms"], c["flagged_unreviewed"]) == (0, 0, 0, 4)
    assert (c["gt_anomalous"], c["gt_good"], c["gt_caught"], c["gt_false_alarms"]) == (3, 3, 3, 1)
    project.set_label(bad[0], "anomalous")                    # the operator confirms one defect
    project.set_label(max(good), "good")                      # and calls one flagged part a false alarm
    project.set_label(min(good), "anomalous")                 # and finds a defect the model passed
    rows = [r for r in project.images(mid) if r.score is not None]
    c = summarise(rows)
    assert (c["reviewed"], c["confirmed"], c["false_alarms"], c["flagged_unreviewed"]) == (3, 1, 1, 2)
    assert (c["missed"], c["confirmed_good"], c["passed_unreviewed"]) == (1, 0, 1)
    assert (c["gt_anomalous"], c["gt_good"], c["disagree"]) == (3, 3, 1)
    assert [n for n, _ in c["reviewers"]] and sum(k for _, k in c["reviewers"]) == 3
    statuses = {r.id: review_status(r) for r in rows}
    assert statuses[bad[0]] == "confirmed defect" and statuses[bad[1]] == "not reviewed"
    assert statuses[max(good)] == "false alarm (operator: good)"
    assert statuses[min(good)] == "missed defect (operator: defect)"


def test_threshold_text_says_how_it_was_set(project):
    from inspector.core.lineage import current_user

    mid = project.current_model_id
    m = project.model(mid)
    assert threshold_text(m) == ("0.5: mean 0.3 + 3 x std 0.07 of 8 held-out normal images; set automatically by "
                                 "the rule mean+3std at training, 2026-12-01 09:15")
    project.set_image_threshold(mid, 0.6)
    text = threshold_text(project.model(mid), project.threshold_changes(mid))
    assert text.startswith(f"0.6: set by {current_user()} on ") and "(manual)" in text
    assert "the model's own threshold 0.5: mean 0.3" in text
    # moved before Inspector recorded threshold changes: said so, not guessed
    assert threshold_text(project.model(mid)).startswith("0.6: changed in this project before Inspector recorded")
    project.set_image_threshold(mid, math.inf)
    assert threshold_text(project.model(mid)).startswith("not set")


def test_the_reports_text_keeps_review_dataset_and_threshold_apart(tmp_path, project):
    """The words of the PDF itself (read back with pypdf): title block, provenance, footers."""
    mid = project.current_model_id
    bad = [r.id for r in project.images(mid, label="anomalous")]
    project.set_label(bad[0], "anomalous")
    project.set_label(bad[1], "good")
    out = tmp_path / "r.pdf"
    pages = export_pdf(project, out, line="L3", lot="2026-48-A")
    text = pdf_text(out)
    assert len(text) == pages
    first = text[0]
    assert "Weave line 3" in first and "Line L3" in first and "Lot 2026-48-A" in first
    assert "Reviewed 2 of 6 parts" in first
    assert "1 confirmed defects, 1 false alarms, 1 not reviewed" in first
    assert "Dataset ground truth" in first and "Labelled 3 defects, 3 good, 0 without a label" in first
    assert "set automatically by the rule mean+3std at training, 2026-12-01 09:15" in first
    assert "version 1" in first and "Sign-off" in first and "signature" in first
    assert "Per defect type" in first and "blob 3/3" in first and "Results per defect type" in text[1]
    for k, page in enumerate(text, 1):
        assert f"Page {k} of {pages}" in page and "line L3 · lot 2026-48-A" in page
    assert "operator: confirmed defect" in text[2] and "dataset: defect (blob)" in text[2]


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
    assert main(["report", str(folder), "-o", str(out), "-q", "--line", "Press 7", "--lot", "A-113"]) == 0
    assert "4 pages" in capsys.readouterr().out and _pages(out) == 4
    first = pdf_text(out)[0]
    assert "Line Press 7" in first and "Lot A-113" in first
    assert main(["report", str(folder), "-o", str(out), "-q"]) == 0      # the project keeps the last ones
    assert "Lot A-113" in pdf_text(out)[0]
    assert main(["report", str(folder), "-o", str(out), "-q", "--lot", ""]) == 0
    assert "Lot —" in pdf_text(out)[0] and "Line Press 7" in pdf_text(out)[0]
    capsys.readouterr()
    assert main(["report", str(folder), "-o", str(out), "--model", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no model named 'nope'" in err and "weave-v1" in err and "Traceback" not in err
    assert main(["report", str(tmp_path / "missing"), "-o", str(out)]) == 2
    assert "not found" in capsys.readouterr().err


def test_threshold_records_say_who_and_when_and_survive_a_round_trip():
    from inspector.core import thresholds as th

    auto = th.mean_std([1.0, 2.0, 3.0, 4.0, 5.0]).stamped("training", when="2026-12-04T08:00:00+00:00")
    assert th.Threshold.from_dict(auto.to_dict()) == auto
    assert th.provenance(auto.to_dict()) == ("mean 3 + 3 x std 1.414 of 5 held-out normal images; set automatically "
                                             "by the rule mean+3std at training, 2026-12-04 08:00")
    chosen = th.Threshold(2.0, "f1-optimal", 0, "best F1 0.9 on 40 labelled parts").stamped(
        "threshold panel", who="mia", when="2026-12-05T14:30:00+00:00")
    assert th.provenance(chosen.to_dict()) == ("set by mia on 2026-12-05 14:30 in the threshold panel (rule: best F1 "
                                               "on labelled parts); best F1 0.9 on 40 labelled parts")
    old = th.mean_std([1.0, 2.0, 3.0, 4.0, 5.0]).to_dict()          # a file from before provenance was kept
    assert set(old) == {"value", "method", "n", "detail"}
    assert th.provenance(old, "2026-11-01T10:00:00").endswith("when the model was made, 2026-11-01 10:00 "
                                                              "(the model's date)")
    assert th.provenance(None) == "how it was set is not recorded"
