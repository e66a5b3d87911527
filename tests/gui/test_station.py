"""The station view through the real main window: parts land in a folder, counts change, the
project's database gets each result (written by the GUI thread), pause holds new parts back."""

import cv2
import numpy as np
import pytest

from inspector.core.modelfile import load_model
from inspector.project.demo import add_blob, texture as weave
from inspector.project.training_run import train_project_model

DEADLINE = 240_000       # ms: a loaded 2-core machine starts the worker process slowly


def texture(seed):
    return weave(np.random.default_rng(seed))


def with_defect(img, seed=0):
    add_blob(img, np.random.default_rng(seed))
    return img


def put(path, img):
    """Write an image as a camera would: to a temporary name, then renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))[1].tobytes())
    tmp.rename(path)
    return path


@pytest.fixture
def project_with_model(window, dataset, tmp_path):
    window.new_project(tmp_path / "p")
    window.add_images(dataset, "mvtec")
    p = window.project
    out = train_project_model(p, {"method": "patchcore", "backbone": "resnet18", "random_weights": True,
                                  "resize": 64}, name="m", inspect_test=False)
    # a threshold between a normal part's score and a defective one's, so both verdicts occur
    model = load_model(p.model_file(p.model(out.model_id)))
    normal, defect = (x.score for x in model.predict([texture(500), with_defect(texture(501))]))
    assert defect > normal
    p.set_image_threshold(out.model_id, (normal + defect) / 2)
    window._model_changed()
    return p, out.model_id


def test_station_counts_parts_as_they_land_and_pause_holds_them(window, project_with_model, qtbot, tmp_path):
    p, mid = project_with_model
    camera = tmp_path / "camera"
    put(camera / "before0.png", texture(500))                    # already there: the backlog
    put(camera / "before1.png", texture(502))
    st = window.open_station(camera, settle=0.3, poll=True)
    assert st is not None and st.isVisible() and not window.act_watch.isEnabled()
    qtbot.waitUntil(lambda: st.state != "starting", timeout=DEADLINE)
    assert st.state == "watching", st.status.text()
    qtbot.waitUntil(lambda: st.counts["inspected"] == 2, timeout=DEADLINE)

    put(camera / "line" / "part0.png", with_defect(texture(501)))
    put(camera / "part1.png", texture(503))
    (camera / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)     # never decodes
    qtbot.waitUntil(lambda: st.counts["inspected"] == 4 and st.counts["unreadable"] == 1, timeout=DEADLINE)
    assert st.counts["failed"] >= 1 and st.counts["passed"] >= 2
    assert st.counts["passed"] + st.counts["failed"] == 4
    assert st.tiles["inspected"].text() == "4" and int(st.tiles["rate"].text()) == 5
    assert st.strip.count() == 5 and st.strip.item(0).toolTip()
    assert st.last_failed.pixmap() is not None and not st.last_failed.pixmap().isNull()
    st.grab().save(str(tmp_path / "station.png"))

    # every result is in the project (the GUI thread wrote it), with its map
    rows = {r.path: r for r in p.images(mid) if r.path.startswith(str(camera))}
    assert len(rows) == 5
    assert sum(r.score is not None for r in rows.values()) == 4
    assert all(p.load_map(r) is not None for r in rows.values() if r.score is not None)
    assert rows[str(camera / "broken.png")].readable is False
    assert rows[str(camera / "line" / "part0.png")].verdict == "anomalous"

    st.pause_button.setChecked(True)
    qtbot.waitUntil(lambda: st.state == "paused", timeout=DEADLINE)
    put(camera / "while_paused.png", texture(504))
    qtbot.wait(2500)                                            # many settle periods: nothing may move
    assert st.counts["inspected"] == 4 and "Paused" in st.status.text()
    st.pause_button.setChecked(False)
    qtbot.waitUntil(lambda: st.counts["inspected"] == 5, timeout=DEADLINE)

    st.stop_button.click()
    qtbot.waitUntil(lambda: not st.running, timeout=DEADLINE)
    assert st.state == "stopped" and window.act_watch.isEnabled()

    # a second station on the same folder inspects nothing twice
    st2 = window.open_station(camera, settle=0.3, poll=True)
    qtbot.waitUntil(lambda: st2.state != "starting", timeout=DEADLINE)
    assert "from before" not in st2.status.text()
    put(camera / "after.png", texture(505))
    qtbot.waitUntil(lambda: st2.counts["inspected"] == 1, timeout=DEADLINE)
    assert st2.strip.item(0).text() == "after.png"
    window.close_project()                                      # stops the station first
    assert not st2.running
