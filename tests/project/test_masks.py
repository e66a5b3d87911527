"""Defect masks in the project: painted masks saved as PNGs, MVTec ground truth imported as labels."""

import numpy as np
import pytest

from inspector.core.images import read_mask
from inspector.project import Project
from inspector.project.demo import make_folder, make_mvtec


@pytest.fixture
def data(tmp_path):
    return make_mvtec(tmp_path / "cat", n_train=4, n_good=2, n_bad=3, size=32)


@pytest.fixture
def project(tmp_path):
    p = Project.create(tmp_path / "proj")
    yield p
    p.close()


def _mask(shape=(96, 96)):
    m = np.zeros(shape, bool)
    m[10:20, 30:50] = True
    return m


def test_saved_mask_labels_anomalous_and_survives_reopening(tmp_path, project):
    make_folder(tmp_path / "parts", n=3, n_bad=1)
    project.add_folder(tmp_path / "parts", "test")
    row = project.images()[0]
    assert row.label is None
    project.save_mask(row.id, _mask())
    f = project.folder / "masks" / f"{row.id}.png"
    assert f.is_file()
    row = project.image(row.id)
    assert (row.label, row.label_source, row.mask_path) == ("anomalous", "operator", f"masks/{row.id}.png")
    folder = project.folder
    project.close()
    again = Project.open(folder)
    try:
        r = again.image(row.id)
        assert r.label == "anomalous" and r.mask_path
        np.testing.assert_array_equal(again.load_mask(r), _mask())
        assert again.anomaly_pairs() == [(r.path, str(f))]
    finally:
        again.close()


def test_empty_mask_removes_the_file_and_keeps_the_label_restore_puts_it_back(tmp_path, project):
    make_folder(tmp_path / "parts", n=2, n_bad=0)
    project.add_folder(tmp_path / "parts", "test")
    row = project.images()[0]
    project.save_mask(row.id, _mask())
    project.save_mask(row.id, np.zeros((96, 96), bool))
    r = project.image(row.id)
    assert not (project.folder / "masks" / f"{row.id}.png").exists()
    assert r.label == "anomalous" and r.mask_path is None
    assert project.anomaly_pairs() == [(r.path, None)]
    project.restore_label(row.id, None, None, None)
    assert project.image(row.id).label is None
    assert project.labelled_anomalies() == []


def test_mvtec_ground_truth_masks_are_labels_with_masks(project, data):
    project.add_mvtec(data)
    anomalous = project.labelled_anomalies()
    assert len(anomalous) == 3
    for r in anomalous:
        assert r.label_source == "dataset" and r.mask_path and r.mask_path.endswith("_mask.png")
        m = project.load_mask(r)
        assert m is not None and m.dtype == bool and m.shape == (32, 32) and 0 < m.sum() < m.size
    pairs = project.anomaly_pairs()
    assert all(m is not None for _, m in pairs)
    # painting over a dataset mask is the operator's decision; the dataset's mask stays its ground truth
    r = anomalous[0]
    project.save_mask(r.id, np.ones((32, 32), bool))
    r2 = project.image(r.id)
    assert r2.label_source == "operator" and r2.mask_path == f"masks/{r.id}.png"
    assert r2.dataset_label == "anomalous" and r2.dataset_mask == r.mask_path
    assert read_mask(project.folder / r2.mask_path).all()
