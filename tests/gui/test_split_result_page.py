"""The wizard's result page says on which defects the metrics were computed (the held-back ones)
and how many were for training."""

import numpy as np

from inspector.project.training_run import TrainOutcome, labelled_metrics


def _outcome(test_scores, for_training, trained_on):
    return TrainOutcome(1, "m", 20, 3.0, [], np.array([0.1, 0.2]), 0.5, 0.5, "mean+3std", test_scores,
                        labelled_metrics(test_scores, 0.5), for_training, trained_on)


def test_the_result_page_names_the_held_back_defects(qtbot):
    from inspector.gui.app import create_app
    from inspector.gui.wizard import ResultPage

    create_app()
    page = ResultPage()
    qtbot.addWidget(page)
    scores = [(0.2, "good"), (0.3, "good"), (0.9, "anomalous"), (0.4, "anomalous"), (0.8, "anomalous"), (0.7, None)]
    page.show_outcome(_outcome(scores, for_training=4, trained_on=4))
    text = page.summary.text()
    assert "On the <b>3</b> labelled defects held back for judging and 2 good test images" in text
    assert f"image AUROC <b>{labelled_metrics(scores, 0.5)['image_auroc']:.3f}</b>" in text
    assert "4 labelled defects are for training (fine-tuned on 4 of them)" in text

    page.show_outcome(_outcome(scores, for_training=4, trained_on=0))        # PatchCore: learns none
    assert "4 labelled defects are for training (not used by this method)" in page.summary.text()

    page.show_outcome(_outcome([(0.2, "good"), (0.7, None)], for_training=3, trained_on=3))
    text = page.summary.text()
    assert "AUROC" not in text and "no labelled defects held back for judging: no metrics" in text
