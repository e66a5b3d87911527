"""The one inspect loop: order, per-file errors, batching of streams, progress and cancel."""

import queue
import threading

import numpy as np
import pytest

from helpers import texture, with_defect, write_rgb
from inspector.core.datasets import Input
from inspector.core.images import list_images
from inspector.core.jobs import Cancelled, CancelToken, Job
from inspector.core.pipeline.inspect import inspect_each, inspect_stream
from inspector.core.pipeline.training import TrainSettings, train_model

FAST = dict(backbone="resnet18", random_weights=True, resize=64, options={"coreset_ratio": 0.5})


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("good")
    for i in range(8):
        write_rgb(d / f"{i:03d}.png", texture(i))
    return train_model(list_images(d), TrainSettings(**FAST, holdout=2)).model


@pytest.fixture
def files(tmp_path):
    """Seven inputs: good and defective images, a damaged file, a missing path, in that order."""
    paths = []
    for i in range(3):
        paths.append(write_rgb(tmp_path / f"n{i}.png", texture(40 + i)))
    paths.append(tmp_path / "broken.png")
    paths[-1].write_bytes(b"\x89PNG not really")
    paths.append(write_rgb(tmp_path / "d0.png", with_defect(texture(50))[0]))
    paths.append(tmp_path / "missing.png")
    paths.append(write_rgb(tmp_path / "sub" / "n0.png", texture(44)))
    return paths


def test_one_result_per_input_in_order_with_the_same_scores_as_predict(model, files):
    results = list(inspect_stream(model, files, batch_size=2))
    assert [r.path for r in results] == files
    assert [r.status.split(":")[0] for r in results] == ["ok", "ok", "ok", "skipped", "ok", "skipped", "ok"]
    assert "not a readable image" in results[3].reason and results[3].prediction is None
    assert results[5].reason == "file not found"
    good = [r for r in results if r.ok]
    expected = model.predict([r.image for r in good])
    for r, p in zip(good, expected):
        assert r.prediction.score == pytest.approx(p.score, rel=1e-4)
        assert r.prediction.anomaly_map.shape == r.image.shape[:2]
        assert np.allclose(r.prediction.anomaly_map, p.anomaly_map, rtol=1e-3, atol=1e-4)
        assert r.prediction.image_threshold == model.image_threshold.value
    assert results[4].prediction.score > max(results[i].prediction.score for i in (0, 1, 2))


def test_inputs_with_an_error_keys_and_the_callback_form(model, files):
    items = [(10 + i, p) for i, p in enumerate(files[:3])] + [Input(files[0].parent / "x", "folder holds no images")]
    seen = []
    summary = inspect_each(model, items, seen.append, batch_size=4)
    assert [r.key for r in seen[:3]] == [10, 11, 12]
    assert seen[3].status == "skipped: folder holds no images"
    assert summary.n_ok == 3 and summary.skipped == [(files[0].parent / "x", "folder holds no images")]


def test_a_stream_is_scored_as_it_comes_not_when_a_batch_is_full(model, files):
    """The next file is only given once the previous result came out: a loop waiting to fill a
    batch of 8 would never give it (the test would fail on the timeout, not hang)."""
    given = queue.Queue()
    results = []

    def stream():
        for p in [files[0], files[1], files[2], files[4]]:
            yield p
            given.get(timeout=60)        # the consumer says it has the result

    for r in inspect_stream(model, stream(), batch_size=8):
        results.append(r)
        given.put(True)
    assert [r.path for r in results] == [files[0], files[1], files[2], files[4]] and all(r.ok for r in results)


def test_progress_and_cancel_stop_the_reader(model, files):
    token = CancelToken()
    steps = []

    def progress(stage, done, total):
        steps.append((stage, done, total))
        if done >= 2:
            token.cancel()

    before = threading.active_count()
    got = []
    with pytest.raises(Cancelled):
        for r in inspect_stream(model, files * 4, Job(progress, token), batch_size=2):
            got.append(r)
    assert steps[0] == ("inspecting", 0, 28) and 2 <= len(got) < 28
    for t in threading.enumerate():
        if t.name == "inspect-reader":
            t.join(5)
    assert threading.active_count() <= before


def test_an_image_that_breaks_the_model_is_skipped_alone(model, files):
    """Fault injection: scoring fails for any batch holding the defective image."""
    class Fragile(type(model)):
        def score_batch(self, x):
            if np.isclose(x.mean(axis=(1, 2, 3)), target, rtol=0, atol=1e-5).any():
                raise RuntimeError("kaboom")
            return super().score_batch(x)

    target = model.preprocess.normalise([model.preprocess.frame(with_defect(texture(50))[0])]).mean()
    fragile = Fragile.__new__(Fragile)
    fragile.__dict__.update(model.__dict__)
    results = list(inspect_stream(fragile, files, batch_size=8))
    assert [r.ok for r in results] == [True, True, True, False, False, False, True]
    assert results[4].status == "skipped: scoring failed (RuntimeError: kaboom)"


def test_an_input_stream_that_fails_raises_after_the_results_before_it(model, files):
    def stream():
        yield files[0]
        raise OSError("the share went away")

    got = []
    with pytest.raises(OSError, match="share went away"):
        for r in inspect_stream(model, stream()):
            got.append(r)
    assert [r.path for r in got] == [files[0]]
