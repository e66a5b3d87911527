"""The comparison's rules (Qt-free): which figure is better, and whether a verdict agrees with a label."""

from inspector.project.compare import agrees, better


def test_better_depends_on_the_metric():
    assert better("image_auroc", 0.9, 0.8) and not better("image_auroc", 0.8, 0.9)
    assert better("missed", 1, 3) and not better("missed", 3, 1)
    assert not better("f1", 0.5, 0.5) and not better("f1", None, 0.5) and not better("n_labelled", 9, 3)


def test_agrees_with_the_operators_label():
    assert agrees("anomalous", "anomalous") and agrees("normal", "good")
    assert agrees("normal", "anomalous") is False and agrees("anomalous", "good") is False
    assert agrees(None, "good") is None and agrees("normal", None) is None
