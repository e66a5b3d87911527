"""One owner of a project: an owner lock no other descriptor can drop, read-only views, work that
never needs the database, storage errors in one sentence."""

import errno
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inspector.core.jobs import CancelToken, Cancelled, Job
from inspector.project import DB_NAME, Project, ProjectError, StorageError
from inspector.project.demo import make_mvtec
from inspector.project.lock import LOCK_NAME
from inspector.project.store import storage_error

ROOT = Path(__file__).resolve().parents[2]
OPEN_ELSEWHERE = ("import sys\nfrom inspector.project import Project\n"
                  "p = Project.open(sys.argv[1])\nprint(p.read_only_reason)\np.close()\n")


def _open_elsewhere(folder) -> str:
    """What another process gets when it opens the project: None (owner) or why read-only."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", OPEN_ELSEWHERE, str(folder)], capture_output=True, text=True,
                         env=env, check=True)
    return out.stdout.strip()


@pytest.fixture
def project(tmp_path):
    data = make_mvtec(tmp_path / "cat", n_train=6, n_good=2, n_bad=2, size=32)
    p = Project.create(tmp_path / "proj")
    p.add_mvtec(data)
    yield p
    p.close()


def test_the_owner_lock_survives_closing_other_descriptors_of_the_files(project):
    folder = project.folder
    project.set_label(project.image_ids(split="test")[0], "good")     # WAL and -shm exist now
    for name in (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm", LOCK_NAME):
        for _ in range(3):                # what a file dialog sniffing the folder does
            fd = os.open(folder / name, os.O_RDONLY)
            os.close(fd)
    reason = _open_elsewhere(folder)
    assert reason.startswith(f"open in another Inspector window (pid {os.getpid()} on ")
    project.close()
    assert _open_elsewhere(folder) == "None"     # closed: the next one owns it


def test_a_second_open_in_this_process_is_a_read_only_view(project):
    mid = project.add_model("m", _model_file(project), "patchcore", "resnet18", 0.5, 0.5)
    other = project.add_model("n", _model_file(project, "n"), "patchcore", "resnet18", 0.5, 0.5)
    view = Project.open(project.folder)
    try:
        assert view.read_only and "this application" in view.read_only_reason
        image = view.image_ids(split="test")[0]
        with pytest.raises(ProjectError, match="not saved: read-only here: open in another"):
            view.set_label(image, "good")
        with pytest.raises(ProjectError, match="read-only here"):
            view.save_mask(image, np.ones((4, 4), bool))
        assert not (project.folder / "masks" / f"{image}.png").exists()
        view.set_current_model(mid)                # a view may look at another model: not saved
        assert view.current_model_id == mid and project.current_model_id == other
        project.set_label(image, "anomalous")      # the owner writes; the view reads it
        assert view.label(image) == ("anomalous", "operator")
        with pytest.raises(ProjectError, match="cannot open .* for changes: open in another Inspector window"):
            Project.open(project.folder, read_only=False)
    finally:
        view.close()
    project.set_label(image, "good")             # closing a view leaves the owner's lock alone
    assert _open_elsewhere(project.folder).startswith("open in another Inspector window")


def _model_file(project, name="m"):
    f = project.new_model_path(name)
    f.write_bytes(b"stand-in")
    return f


def test_training_work_needs_no_database(project):
    """The worker's half of a training runs with inspector.db out of reach; the owner stores it."""
    from inspector.project.training_run import TrainingJob

    job = TrainingJob(project, {"method": "patchcore", "backbone": "resnet18", "random_weights": True,
                                "resize": 32}, name="w")
    plan = job.prepare()
    db = project.folder / DB_NAME
    hidden = project.folder / "hidden.db"
    db.rename(hidden)                            # no database file while the work runs
    try:
        result = TrainingJob.work(plan, job=Job())
    finally:
        hidden.rename(db)
    outcome = job.finish(result)
    assert project.current_model_id == outcome.model_id
    rows = [r for r in project.images(outcome.model_id) if r.score is not None]
    assert len(rows) == 4 and all(project.load_map(r) is not None for r in rows)
    assert not list((project.folder / "maps").glob(".pending-*"))
    assert outcome.metrics["n_labelled"] == 4


def test_a_cancelled_training_registers_nothing_and_leaves_no_file(project):
    from inspector.project.training_run import train_project_model

    old = train_project_model(project, {"method": "patchcore", "backbone": "resnet18", "random_weights": True,
                                        "resize": 32}, name="old", inspect_test=False)
    files = sorted(f.name for f in (project.folder / "models").iterdir())
    token = CancelToken()

    def progress(stage, done, total):
        if stage == "inspecting" and done > 0:       # after the new file was saved
            token.cancel()

    with pytest.raises(Cancelled):
        train_project_model(project, {"method": "patchcore", "backbone": "resnet18", "random_weights": True,
                                      "resize": 32}, name="new", job=Job(progress, token))
    assert [m.name for m in project.models()] == ["old"] and project.current_model_id == old.model_id
    assert sorted(f.name for f in (project.folder / "models").iterdir()) == files
    assert not list((project.folder / "maps").iterdir())


def test_the_owner_removes_what_killed_processes_left(project):
    folder = project.folder
    project.close()
    left = [folder / "masks" / ".5.png.123.tmp", folder / "maps" / ".pending-abc" / "1.npy",
            folder / "maps" / "1" / ".2.npy.9.tmp", folder / "models" / ".m.inspector.x1y2.tmp"]
    for f in left:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"half")
    keep = folder / "maps" / "1" / "2.npy"
    keep.write_bytes(b"a map")
    view = Project.open(folder, read_only=True)      # a read-only view touches nothing
    view.close()
    assert all(f.exists() for f in left)
    Project.open(folder).close()
    assert not any(f.exists() for f in left) and keep.exists()
    assert not (folder / "maps" / ".pending-abc").exists()


def test_storage_errors_are_one_sentence():
    full = storage_error(OSError(errno.ENOSPC, "No space left on device"), "/x/report.pdf")
    assert isinstance(full, StorageError) and isinstance(full, ProjectError)
    assert str(full) == ("cannot write /x/report.pdf: the disk is full; nothing was changed. "
                         "Free some space and try again.")
    ro = storage_error(OSError(errno.EROFS, "Read-only file system"), "/x/report.pdf")
    assert "the disk is read-only" in str(ro) and "Choose a place that can be written" in str(ro)
    db = storage_error(sqlite3.OperationalError("database or disk is full"), "the project database")
    assert str(db).startswith("cannot write the project database: the disk is full; nothing was changed")
    assert "\n" not in str(db)
