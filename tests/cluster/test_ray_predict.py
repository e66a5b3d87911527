"""``predict --ray``: the same scores and verdicts as in process, on a local Ray instance, on a
local cluster of two worker nodes, and after a worker died; without Ray, one line saying how to
install it. Ray's tests skip with a reason when Ray is not installed."""

import csv
import faulthandler
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from helpers import texture, with_defect, write_rgb
from inspector.cli import main

try:
    import ray
    import ray.data  # noqa: F401
    HAVE_RAY = True
except ImportError:
    HAVE_RAY = False

needs_ray = pytest.mark.skipif(not HAVE_RAY, reason='Ray is not installed (pip install -e ".[cluster]")')
FAST = ["--backbone", "resnet18", "--random-weights", "--resize", "64", "--coreset", "0.5", "-q"]
COLUMNS = ["path", "status", "score", "verdict", "threshold", "model", "overlay", "note"]   # as predict
NOT_READABLE = "skipped: not a readable image (damaged or unsupported format)"


@pytest.fixture(scope="module")
def model_and_images(tmp_path_factory):
    """A small model (random weights) and a folder of 3 normal, 3 defective and 1 corrupt image."""
    root = tmp_path_factory.mktemp("ray")
    for i in range(12):
        write_rgb(root / "good" / f"{i:03d}.png", texture(i))
    for i in range(3):
        write_rgb(root / "test" / f"normal_{i}.png", texture(100 + i))
        write_rgb(root / "test" / f"defect_{i}.png", with_defect(texture(200 + i), seed=i)[0])
    (root / "test" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    model = root / "m.inspector"
    assert main(["train", str(root / "good"), "-o", str(model), *FAST]) == 0
    return model, root / "test"


@pytest.fixture
def bounded():
    """No test waits forever on a cluster that never comes up: dump the stacks and exit after 5 minutes."""
    faulthandler.dump_traceback_later(300, exit=True, file=sys.__stderr__)
    yield
    faulthandler.cancel_dump_traceback_later()
    if HAVE_RAY and ray.is_initialized():
        ray.shutdown()


def reference(model_path, folder):
    """Scores and verdicts by calling the model in this process, image by image."""
    from inspector.core.images import read_image
    from inspector.core.modelfile import load_model
    model = load_model(model_path)
    out = {}
    for p in sorted(folder.iterdir()):
        if p.name != "corrupt.png":
            pred = model.predict([read_image(p)])[0]
            out[str(p)] = (pred.score, pred.verdict)
    return out


def read_table(out_dir):
    """results.parquet as rows, after checking that it and results.csv have the columns and rows of predict."""
    import pyarrow.parquet as pq
    parquet = pq.read_table(out_dir / "results.parquet")
    assert parquet.column_names == COLUMNS
    table = parquet.to_pylist()
    with open(out_dir / "results.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        assert reader.fieldnames == COLUMNS
    assert [r["path"] for r in rows] == [r["path"] for r in table]
    return table


@needs_ray
def test_local_instance_matches_in_process_predict(model_and_images, tmp_path, capsys, bounded):
    model, folder = model_and_images
    out = tmp_path / "out"
    missing = tmp_path / "nowhere.png"
    rc = main(["predict", str(model), str(folder), str(missing), "-o", str(out), "--ray", "--ray-actors", "2", "-q"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "6 image(s) inspected on Ray (2 actor(s)" in captured.out and "Traceback" not in captured.err
    table = read_table(out)
    assert len(table) == 8 and len({r["path"] for r in table}) == 8          # one row per input
    by_path = {r["path"]: r for r in table}
    assert by_path[str(folder / "corrupt.png")]["status"] == NOT_READABLE
    assert by_path[str(missing)]["status"] == "skipped: not found"
    expected = reference(model, folder)
    assert set(expected) == {p for p, r in by_path.items() if r["status"] == "ok"}
    for path, (score, verdict) in expected.items():
        row = by_path[path]
        assert row["score"] == pytest.approx(score, abs=1e-5)
        assert row["verdict"] == verdict and row["model"] == str(model)
        overlay = cv2.imread(str(out / row["overlay"]))
        assert overlay is not None and overlay.shape == (64, 64, 3)
    assert {v for _, v in expected.values()} == {"normal", "anomalous"}   # the comparison covers both
    assert sorted(p.name for p in out.glob("*.png")) == sorted(r["overlay"] for r in table if r["overlay"])


def _node_recording_scorer(folder):
    """A Scorer that leaves a file per Ray node it loads the model on (.loaded) and scores on (.scored)."""
    from inspector.cluster.ray_predict import Scorer

    class NodeRecordingScorer(Scorer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            (folder / f"{ray.get_runtime_context().get_node_id()}.loaded").touch()

        def __call__(self, batch):
            (folder / f"{ray.get_runtime_context().get_node_id()}.scored").touch()
            return super().__call__(batch)

    return NodeRecordingScorer


@needs_ray
def test_a_cluster_of_two_worker_nodes(model_and_images, tmp_path, bounded):
    from ray.cluster_utils import Cluster

    from inspector.cluster.ray_predict import predict_on_ray
    model, folder = model_and_images
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    context = ray.data.DataContext.get_current()
    # both actors up before the first batch, whatever the machine's load
    was, context.wait_for_min_actors_s = context.wait_for_min_actors_s, 120
    try:
        workers = {cluster.add_node(num_cpus=1).node_id for _ in range(2)}
        cluster.wait_for_nodes(timeout=60)
        seen = tmp_path / "nodes"
        seen.mkdir()
        run = predict_on_ray(model, [folder], tmp_path / "out", address=cluster.address, actors=2,
                             batch_size=1, scorer=_node_recording_scorer(seen))
    finally:
        context.wait_for_min_actors_s = was
        ray.shutdown()
        cluster.shutdown()
    assert run.actors == 2 and len(run.rows) == 7
    assert {p.stem for p in seen.glob("*.loaded")} == workers   # a model copy on each worker node, none on the head
    assert {p.stem for p in seen.glob("*.scored")} <= workers and any(seen.glob("*.scored"))
    expected = reference(model, folder)
    for row in run.rows:
        if row["path"] in expected:
            assert row["status"] == "ok" and row["score"] == pytest.approx(expected[row["path"]][0], abs=1e-5)
        else:
            assert row["status"] == NOT_READABLE


def _dies_once_scorer(marker):
    """A Scorer whose worker process dies on its first batch (the marker file says it happened)."""
    from inspector.cluster.ray_predict import Scorer

    class DiesOnceScorer(Scorer):
        def __call__(self, batch):
            if not marker.exists():
                marker.write_text(str(os.getpid()))
                os._exit(1)
            return super().__call__(batch)

    return DiesOnceScorer


@needs_ray
def test_a_worker_that_dies_is_retried(model_and_images, tmp_path, bounded):
    from inspector.cluster.ray_predict import predict_on_ray
    model, folder = model_and_images
    marker = tmp_path / "died"
    run = predict_on_ray(model, [folder], tmp_path / "out", actors=1, batch_size=2, scorer=_dies_once_scorer(marker))
    assert marker.exists()                                      # the worker did die once
    assert not ray.is_initialized()                             # the local instance is shut down
    assert [Path(r["path"]).name for r in run.rows] == sorted(p.name for p in folder.iterdir())
    assert sum(r["status"] == "ok" for r in run.rows) == 6
    assert len(read_table(tmp_path / "out")) == 7


@needs_ray
def test_a_bad_model_file_is_one_line_before_ray_starts(tmp_path, capsys):
    bad = tmp_path / "bad.inspector"
    bad.write_bytes(b"\x00" * 100)
    assert main(["predict", str(bad), str(tmp_path), "-o", str(tmp_path / "o"), "--ray"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"inspector: error: {bad} is not an Inspector model file "
                                        "(damaged, or another kind of file)"]
    assert not ray.is_initialized()


@needs_ray
def test_an_address_that_does_not_answer_is_one_line(model_and_images, tmp_path, capsys):
    import socket
    with socket.socket() as s:                  # a port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    model, folder = model_and_images
    assert main(["predict", str(model), str(folder), "-o", str(tmp_path / "o"), f"--ray=127.0.0.1:{port}", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"inspector: error: cannot reach the Ray cluster at '127.0.0.1:{port}': Connection refused"
    assert not ray.is_initialized()


def test_ray_actors_without_ray_is_one_line(tmp_path, capsys):
    assert main(["predict", "m.inspector", "x.png", "-o", str(tmp_path), "--ray-actors", "2"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip() == "inspector: error: --ray-actors needs --ray (a local Ray instance, 'auto' or HOST:PORT)"


def _run_python(code: str, tmp_path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                      os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)


def test_without_ray_installed_it_says_how_to_install_it(tmp_path):
    code = ("import sys; sys.modules['ray'] = None\n"       # what an interpreter without Ray does on import
            "from inspector.cli import main\n"
            "sys.exit(main(['predict', 'm.inspector', 'x.png', '-o', 'out', '--ray']))")
    done = _run_python(code, tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        'inspector: error: --ray needs Ray, which is not installed: pip install -e ".[cluster]" '
        '(or pip install "ray[data]")']


def test_predict_without_ray_does_not_import_it(model_and_images, tmp_path):
    model, folder = model_and_images
    code = ("import sys\n"
            "from inspector.cli import main\n"
            f"rc = main(['predict', {str(model)!r}, {str(folder)!r}, '-o', 'out', '-q'])\n"
            "print('ray imported' if 'ray' in sys.modules else 'ray not imported')\n"
            "sys.exit(rc)")
    done = _run_python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "ray not imported"
    assert (tmp_path / "out" / "results.csv").is_file() and not (tmp_path / "out" / "results.parquet").exists()
