"""``inspector watch`` as an operator runs it: a subprocess on a folder that images land in.

Waits are bounded (a deadline, then the test fails with the watcher's stderr); nothing asserts
on how fast it is (benchmarks measure that).
"""

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import pytest

from helpers import texture, with_defect, write_rgb
from inspector.cli import main
from inspector.core.pipeline.watch import FolderWatcher

REPO = Path(__file__).resolve().parents[2]
FAST = ["--backbone", "resnet18", "--random-weights", "--resize", "64", "--coreset", "0.5", "-q"]
DEADLINE = 240          # seconds: a loaded 2-core machine starts torch slowly


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("train")
    for i in range(8):
        write_rgb(d / f"{i:03d}.png", texture(i))
    m = tmp_path_factory.mktemp("model") / "m.inspector"
    assert main(["train", str(d), "-o", str(m), *FAST]) == 0
    return m


def png_bytes(i: int) -> bytes:
    img = with_defect(texture(300 + i), seed=i)[0] if i % 7 == 3 else texture(300 + i)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return buf.tobytes()


def write_slowly(path: Path, data: bytes, chunks: int = 5, pause: float = 0.08) -> None:
    """As a camera streaming a file: several writes with pauses, flushed each time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        step = len(data) // chunks + 1
        for k in range(0, len(data), step):
            f.write(data[k:k + step])
            f.flush()
            time.sleep(pause)


class Watch:
    """``inspector watch`` in a subprocess, its stdout collected line by line."""

    def __init__(self, model, folder, out, *extra):
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        where = ["-o", str(out)] if out else []
        self.p = subprocess.Popen([sys.executable, "-m", "inspector", "watch", str(model), str(folder), *where,
                                   *extra], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines, self.err = [], []
        self._threads = [threading.Thread(target=self._pump, args=(self.p.stdout, self.lines), daemon=True),
                         threading.Thread(target=self._pump, args=(self.p.stderr, self.err), daemon=True)]
        for t in self._threads:
            t.start()

    @staticmethod
    def _pump(stream, into):
        for line in stream:
            into.append(line)

    def wait_for(self, what, condition):
        deadline = time.monotonic() + DEADLINE
        while not condition():
            if self.p.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"watch never got to {what}; exit {self.p.returncode}; stderr:\n{''.join(self.err)}")
            time.sleep(0.1)

    def started(self):
        self.wait_for("watching", lambda: any(line.startswith("watching ") for line in self.err))

    def stop(self, sig=signal.SIGINT) -> int:
        if self.p.poll() is None:
            self.p.send_signal(sig)
        try:
            rc = self.p.wait(60)
        except subprocess.TimeoutExpired:
            self.p.kill()
            rc = self.p.wait()
        for t in self._threads:
            t.join(10)
        return rc

    def results(self):
        return [json.loads(line) for line in self.lines if line.startswith("{")]


def csv_rows(out: Path):
    f = out / "results.csv"
    return list(csv.DictReader(open(f, newline=""))) if f.is_file() else []


@pytest.mark.parametrize("events", ["poll", "native"])
def test_watch_inspects_each_image_once_across_a_restart(model, tmp_path, events):
    folder, out = tmp_path / "camera", tmp_path / "out"
    folder.mkdir()
    for i in range(3):                                   # there before the watcher: the backlog
        (folder / f"early{i}.png").write_bytes(png_bytes(100 + i))
    extra = ["--settle", "0.4"] + (["--poll"] if events == "poll" else [])
    w = Watch(model, folder, out, *extra)
    w.started()
    assert ("polling" in "".join(w.err)) == (events == "poll")
    good = [folder / f"early{i}.png" for i in range(3)]
    for i in range(26):
        p = folder / ("sub" if i == 13 else "") / f"part{i:03d}.png"
        if i % 5 == 2:
            write_slowly(p, png_bytes(i))
        else:
            p.parent.mkdir(exist_ok=True)
            p.write_bytes(png_bytes(i))
        good.append(p)
    bad = folder / "part_bad.png"
    write_slowly(bad, b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 200)    # never decodes
    (folder / "notes.txt").write_text("not an image")                    # ignored
    assert len(good) + 1 == 30
    w.wait_for("all 30 files", lambda: len(csv_rows(out)) >= 30)
    assert w.stop(signal.SIGTERM) == 0
    first_err = "".join(w.err)
    assert "Traceback" not in first_err
    assert f"skipped {bad}: not a readable image" in first_err             # one clear line for it
    first = w.results()

    for i in range(10):                                  # land while nobody watches
        p = folder / ("later" if i % 3 == 0 else "") / f"late{i}.png"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(png_bytes(200 + i))
        good.append(p)
    w = Watch(model, folder, out, *extra)
    w.started()
    assert "10 image(s) waiting from before" in "".join(w.err)
    w.wait_for("the 10 new files", lambda: len(csv_rows(out)) >= 40)
    time.sleep(1.0)                                      # anything inspected twice would show now
    assert w.stop() == 0
    assert "Traceback" not in "".join(w.err)
    second = w.results()

    rows = csv_rows(out)
    assert sorted(r["path"] for r in rows) == sorted(str(p) for p in good + [bad])   # once each
    by_path = {r["path"]: r for r in rows}
    for p in good:
        r = by_path[str(p)]
        assert r["status"] == "ok" and r["verdict"] in ("normal", "anomalous") and r["time"]
        assert (out / r["overlay"]).is_file()
    assert by_path[str(bad)]["status"].startswith("skipped: ") and "not a readable image" in by_path[str(bad)]["status"]
    assert len({r["overlay"] for r in rows if r["overlay"]}) == 39            # part013 and sub/part013 apart
    assert sorted(r["path"] for r in first) == sorted(str(p) for p in good[:29] + [bad])
    assert sorted(r["path"] for r in second) == sorted(str(p) for p in good[29:])
    assert set(first[0]) == {"time", "path", "status", "score", "verdict", "threshold", "model", "overlay"}


def test_watch_into_a_project_owns_it_for_the_run(tmp_path):
    """--project: the watching process stores each part in the project's database; on restart the
    project says what was done."""
    from inspector.project import Project
    from inspector.project.training_run import train_project_model
    train = tmp_path / "train"
    for i in range(8):
        write_rgb(train / f"{i:03d}.png", texture(i))
    project = Project.create(tmp_path / "proj")
    project.add_folder(train, "train")
    out = train_project_model(project, {"method": "patchcore", "backbone": "resnet18", "random_weights": True,
                                        "resize": 64}, name="line-a", inspect_test=False)
    project.close()
    camera = tmp_path / "camera"
    for i in range(3):
        write_rgb(camera / f"p{i}.png", texture(400 + i))
    (camera / "bad.png").write_bytes(b"not an image")
    w = Watch("line-a", camera, None, "--project", str(tmp_path / "proj"), "--settle", "0.3", "--poll",
              "--sort-into", str(tmp_path / "sorted"))
    w.wait_for("4 results", lambda: len(w.results()) >= 4)
    assert w.stop() == 0 and "Traceback" not in "".join(w.err)
    verdicts = {Path(r["path"]).name: r["verdict"] for r in w.results() if r["status"] == "ok"}
    sorted_ = {p.name: p.parent.name for p in (tmp_path / "sorted").rglob("*.png")}
    assert sorted_ == {n: "fail" if v == "anomalous" else "pass" for n, v in verdicts.items()} and len(sorted_) == 3
    assert (camera / "p0.png").is_file()                  # copied, not moved
    write_rgb(camera / "sub" / "p9.png", texture(409))
    w = Watch("line-a", camera, None, "--project", str(tmp_path / "proj"), "--settle", "0.3", "--poll")
    w.started()
    assert "1 image(s) waiting from before" in "".join(w.err)
    w.wait_for("1 result", lambda: len(w.results()) >= 1)
    assert w.stop() == 0
    assert [r["path"] for r in w.results()] == [str(camera / "sub" / "p9.png")]
    project = Project.open(tmp_path / "proj")
    try:
        rows = {Path(r.path).name: r for r in project.images(out.model_id, split="test")}
        assert set(rows) == {"p0.png", "p1.png", "p2.png", "p9.png", "bad.png"}
        assert all(rows[n].score is not None and project.load_map(rows[n]) is not None
                   for n in ("p0.png", "p1.png", "p2.png", "p9.png"))
        assert rows["bad.png"].readable is False and "not a readable image" in rows["bad.png"].error
    finally:
        project.close()


def test_watch_needs_a_place_for_results_and_an_existing_folder(model, tmp_path, capsys):
    assert main(["watch", str(model), str(tmp_path)]) == 2
    assert "-o OUT_DIR" in capsys.readouterr().err
    assert main(["watch", str(model), str(tmp_path), "--project", str(tmp_path), "--sort-into", "s", "--move"]) == 2
    assert "sort by copying" in capsys.readouterr().err
    assert main(["watch", str(model), str(tmp_path / "nowhere"), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "folder not found" in err and len(err.strip().splitlines()) == 1


def test_sorting_moves_or_copies_by_verdict_keeping_sub_folders(tmp_path):
    from inspector.core.methods.base import Prediction
    from inspector.core.pipeline.inspect import InspectResult
    from inspector.core.pipeline.outputs import Sorter
    camera = tmp_path / "camera"
    a, b = write_rgb(camera / "line" / "a.png", texture(1)), write_rgb(camera / "b.png", texture(2))
    write_rgb(tmp_path / "sorted" / "fail" / "line" / "a.png", texture(3))          # a name already taken

    def result(p, score, threshold=1.0):
        return InspectResult(p, "ok", Prediction(score, None, threshold, threshold))

    mover = Sorter(tmp_path / "sorted", camera, move=True)
    assert mover.place(result(a, 2.0)) == tmp_path / "sorted" / "fail" / "line" / "a_2.png" and not a.exists()
    assert Sorter(tmp_path / "sorted", camera).place(result(b, 0.5)) == tmp_path / "sorted" / "pass" / "b.png"
    assert b.exists()                                                                  # copied
    assert mover.place(result(b, 0.5, threshold=float("inf"))) is None                 # no verdict: stays
    assert mover.place(InspectResult(b, "skipped: not a readable image")) is None


def test_a_file_that_never_stops_changing_is_given_up_not_awaited_forever(tmp_path):
    """The watcher alone (no model): a file rewritten all the time is handed on with an error."""
    w = FolderWatcher(tmp_path, settle=0.3, poll=True, max_wait=1.5)
    w.start()
    f = tmp_path / "busy.png"
    stop = threading.Event()

    def keep_writing():
        n = 0
        while not stop.is_set():
            n += 1
            f.write_bytes(b"x" * n)
            time.sleep(0.05)

    t = threading.Thread(target=keep_writing, daemon=True)
    t.start()
    guard = threading.Timer(60, w.stop)         # a bug must fail the test, not hang it
    guard.start()
    got = []
    try:
        for item in w.stream():
            got.append(item)
            w.stop()
    finally:
        stop.set()
        guard.cancel()
        w.close()
        t.join()
    (item,) = got
    assert item.path == f and "still being written" in item.error
