"""The overall progress meter and the training plan (no torch, no timing: a fake clock)."""

import pytest

from inspector.core.jobs import Job
from inspector.core.pipeline.holdout import CrossFit, HoldOut
from inspector.core.progress import (PlanStage, ProgressMeter, fmt_eta, fmt_rate, stage_key, training_plan)


class Clock:
    def __init__(self, t=100.0):
        self.t = t

    def __call__(self):
        return self.t

    def advance(self, s):
        self.t += s


PLAN = [PlanStage("loading backbone", "loading backbone", 0.1),
        PlanStage("extracting features", "extracting features", 0.5, "img"),
        PlanStage("coreset", "coreset", 0.4)]


def test_no_eta_before_the_first_measured_step():
    clock = Clock()
    m = ProgressMeter(PLAN, clock)
    assert m.eta() is None and m.eta_text() == ""
    m.update("loading backbone", 0, 1)
    clock.advance(30)
    m.update("loading backbone", 1, 1)
    assert m.eta() is None                   # a count-less stage measures nothing
    clock.advance(5)
    m.update("extracting features", 16, 200)  # the first counted step: only a reference point
    assert m.eta() is None
    clock.advance(20)
    assert m.eta() is None                   # time alone does not make it measured
    m.update("extracting features", 32, 200)
    clock.advance(20)
    m.update("extracting features", 48, 200)
    assert m.eta() is not None               # two steps after the reference, 40 s of them
    # 16 images per 20 s, 152 left: 190 s for this stage, then the coreset at the same s/weight
    stage_left = 152 / (32 / 40)
    spw = 200 / ((32 / 40) * 0.5)
    assert m.eta() == pytest.approx(stage_left + 0.4 * spw)
    assert "left" in m.eta_text()


def test_finished_stages_calibrate_the_ones_ahead():
    """Stages too short to measure a rate (one report each, as a cross-fit fold's) still give an
    ETA once a counted stage has finished: its whole time per weight, never one tick's."""
    clock = Clock()
    plan = [PlanStage(f"fold {k}/extracting features", "", 0.2, "img") for k in range(1, 6)]
    m = ProgressMeter(plan, clock)
    clock.advance(1)
    m.update("thresholds, fold 1 of 5: extracting features", 0, 16)
    clock.advance(4)
    m.update("thresholds, fold 1 of 5: extracting features", 16, 16)
    assert m.eta() is None                     # not finished yet: one tick is no measurement
    clock.advance(4)
    m.update("thresholds, fold 2 of 5: extracting features", 16, 16)
    # fold 1 took 4 s for 0.2 of the whole: fold 2 just ended, 3 folds of 4 s remain
    assert m.eta() == pytest.approx(max(0.0, 0.2 * 20 - 4) + 0.6 * 20)


def test_a_stage_first_tick_after_long_setup_gives_no_wild_eta():
    """The coreset's first pick comes after seconds of set-up: no ETA from that tick alone, and the
    set-up time does not enter its rate."""
    clock = Clock()
    m = ProgressMeter([PlanStage("coreset", "coreset", 1.0)], clock)
    m.update("coreset", 0, 10000)
    clock.advance(8)
    m.update("coreset", 1, 10000)
    assert m.eta() is None
    clock.advance(0.5)
    m.update("coreset", 257, 10000)
    clock.advance(0.5)
    m.update("coreset", 513, 10000)
    assert m.eta() is None                   # under MIN_SPAN seconds of measured steps
    for _ in range(6):
        clock.advance(0.5)
        m.update("coreset", m.stage_counts[0] + 256, 10000)
    rate = 256 / 0.5
    assert m.eta() == pytest.approx((10000 - m.stage_counts[0]) / rate)


def test_eta_counts_down_between_reports_and_grows_when_they_stop():
    clock = Clock()
    m = ProgressMeter([PlanStage("fine-tuning", "fine-tuning", 1.0, "batch")], clock)
    for i in range(1, 5):
        m.update("fine-tuning (epoch 1 of 3, loss 0.5)", i, 12)
        clock.advance(2)
    clock.advance(-2)
    first = m.eta()                          # 8 batches at 2 s: 16 s
    assert first == pytest.approx(16)
    clock.advance(1)
    assert m.eta() == pytest.approx(15)      # on schedule: counts down
    clock.advance(29)                        # no report for 30 s: slower than measured
    assert m.eta() > first


def test_overall_is_weighted_and_monotonic_across_stages():
    clock = Clock()
    m = ProgressMeter(PLAN, clock)
    seen = []
    reports = [("loading backbone", 0, 1), ("loading backbone", 1, 1), ("extracting features", 100, 200),
               ("extracting features", 200, 200), ("coreset", 0, 1),        # set-up: 0 of an unknown count
               ("coreset", 0, 1000), ("coreset", 500, 1000),
               ("extracting features", 10, 200),                          # a late report of a past stage
               ("coreset", 1000, 1000)]
    for r in reports:
        clock.advance(1)
        m.update(*r)
        seen.append(m.overall)
    assert seen == sorted(seen)
    assert seen[0] == 0.0 and seen[1] == pytest.approx(0.1)    # 1 of 1: the stage is done
    assert seen[2] == pytest.approx(0.1 + 0.25)   # half of the features: half of their weight
    assert seen[4] == pytest.approx(0.6)
    assert seen[6] == pytest.approx(0.8)
    assert seen[7] == pytest.approx(0.8)
    assert seen[8] == pytest.approx(1.0)


def test_a_skipped_stage_counts_as_done():
    m = ProgressMeter(PLAN, Clock())
    m.update("coreset", 1, 2)
    assert m.overall == pytest.approx(0.8)


def test_nothing_stale_after_cancel_or_finish():
    clock = Clock()
    m = ProgressMeter(PLAN, clock)
    for i in range(1, 6):
        m.update("extracting features", 16 * i, 200)
        clock.advance(2)
    assert m.eta() is not None and "left" in m.times_text()
    m.cancel()
    assert m.eta() is None and m.eta_text() == ""
    assert "left" not in m.times_text() and m.times_text().startswith("Cancelled after 0:")
    m.update("extracting features", 200, 200)      # reports after the cancel change nothing
    assert m.eta() is None and m.state == "cancelled"
    done = ProgressMeter(PLAN, clock)
    clock.advance(75)
    done.finish()
    assert done.times_text() == "Done in 1:15" and done.overall == 1.0 and done.eta() is None


def test_stage_keys():
    assert stage_key("thresholds, fold 2 of 5: coreset") == "fold 2/coreset"
    assert stage_key("fine-tuning (epoch 2 of 3, loss 0.412: cls 0.1, seg 0.2, rec 0.1)") == "fine-tuning"
    assert stage_key("extracting features (second pass)") == "statistics"
    assert stage_key("alignment reference (pass 1 of 2)") == "alignment reference"
    assert stage_key("alignment reference: reading images") == "alignment reference"


@pytest.mark.parametrize("per_second,unit,text", [
    (12.34, "img", "12.3 img/s"), (1813753.08, "img", "1813753 img/s"), (150.2, "img", "150 img/s"),
    (1.25, "batch", "1.2 batch/s"), (0.8, "img", "1.2 s/img"), (0.05, "batch", "20.0 s/batch"),
    (1 / 250, "batch", "4:10 per batch"), (1813753.08, "", ""), (None, "img", ""), (0.0, "img", "")])
def test_rate_formatting(per_second, unit, text):
    assert fmt_rate(per_second, unit) == text


def test_eta_is_rounded_so_it_does_not_flicker():
    assert fmt_eta(3) == "a few seconds left"
    assert fmt_eta(6) == "about 0:05 left"
    assert fmt_eta(42) == "about 0:40 left"
    assert fmt_eta(127) == "about 2:10 left"
    assert fmt_eta(3 * 3600) == "about 180 min left"


@pytest.mark.parametrize("method", ["patchcore", "npad", "apc"])
def test_training_plan_lists_weighted_stages(method):
    plan = training_plan(method, {}, 40, n_anomalies=4, n_test=10, save=True)
    assert sum(s.weight for s in plan) == pytest.approx(1.0)
    assert all(s.weight > 0 for s in plan)
    keys = [s.key for s in plan]
    assert len(keys) == len(set(keys))
    assert keys[-2:] == ["saving the model", "inspecting"]
    assert sum(k.startswith("fold 5/") for k in keys) > 0        # 40 images: 5-fold cross-fit
    assert ("fine-tuning" in keys) == (method == "apc")
    if method == "npad":
        assert "fold 3/loading backbone" in keys                 # N-pad refits whole per fold
    held = training_plan(method, {}, 300, calibration=HoldOut(25))
    assert held[-1].key == "calibrating thresholds" and not any(s.key.startswith("fold") for s in held)


def test_training_plan_weights_follow_the_costs():
    exact = {"coreset_group_rows": 0}
    small = training_plan("patchcore", exact, 100, calibration=HoldOut(10))
    large = training_plan("patchcore", exact, 1000, calibration=HoldOut(25))
    w = lambda plan, key: next(s.weight for s in plan if s.key == key)
    per_feature = lambda plan: w(plan, "coreset") / w(plan, "extracting features")
    # the backbone load is fixed, the features grow with the images, an exact coreset faster
    assert w(large, "loading backbone") < w(small, "loading backbone")
    assert per_feature(large) > per_feature(small)
    # a grouped one (the default, 60k rows = 76 images of 224 px a group) as the features beyond a group
    mid_g = training_plan("patchcore", {}, 500, calibration=HoldOut(25))
    large_g = training_plan("patchcore", {}, 1000, calibration=HoldOut(25))
    assert per_feature(large_g) == pytest.approx(per_feature(mid_g), rel=0.1)
    assert per_feature(large_g) < per_feature(large) / 2
    apc = training_plan("apc", {"epochs": 3}, 40, calibration=CrossFit(5))
    assert w(apc, "fine-tuning") > 0.5                          # APC's fine-tuning dominates on a CPU
    more = training_plan("apc", {"epochs": 6}, 40, calibration=CrossFit(5))
    assert w(more, "fine-tuning") > w(apc, "fine-tuning")


def test_training_plan_needs_no_torch():
    import subprocess
    import sys
    code = ("import sys; from inspector.core.progress import training_plan; training_plan('apc', {}, 50); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_first_announced_plan_wins():
    got = []
    job = Job(plan=got.append)
    job.announce(PLAN)
    job.announce(PLAN[:1])
    assert got == [PLAN]

    class Bar:
        def __init__(self):
            self.plan = None

        def __call__(self, stage, done, total):
            pass

        def set_plan(self, plan):
            self.plan = plan

    bar = Bar()
    Job(bar).announce(PLAN)
    assert bar.plan == PLAN


# -- the terminal ---------------------------------------------------------------------------------------

def _terminal(tty, plan=PLAN):
    import io
    from inspector.terminal import TerminalProgress
    clock = Clock()
    out = io.StringIO()
    bar = TerminalProgress(stream=out, clock=clock, tty=tty)
    if plan is not None:
        Job(bar).announce(plan)
    return bar, out, clock


def test_terminal_shows_overall_stage_rate_and_eta():
    bar, out, clock = _terminal(tty=True)
    bar("loading backbone", 0, 1)
    assert "img/s" not in bar.line() and "left" not in bar.line()
    for i in range(1, 6):
        clock.advance(2)
        bar("extracting features", 16 * i, 200)
    line = bar.line()
    assert line.startswith(" 30% [######")         # 0.1 + 0.5 x 80/200 of the whole
    assert "extracting features 80/200" in line and "8.0 img/s" in line and "left" in line
    assert "\r" in out.getvalue() and "\n" not in out.getvalue()
    bar.close()
    assert out.getvalue().endswith("\r") and "left" not in out.getvalue().rsplit("\r", 2)[-2]


def test_terminal_rate_of_a_countless_stage_is_never_shown():
    bar, out, clock = _terminal(tty=True)
    for i in range(1, 8):
        clock.advance(1e-6)
        bar("coreset", 1000 * i, 100000)          # picks, not images: no unit, no rate
    assert "/s" not in bar.line()
    bar, out, clock = _terminal(tty=True, plan=None)
    for i in range(1, 8):
        clock.advance(1)
        bar("extracting features", 16 * i, 200)
    assert "16.0 img/s" in bar.line() and bar.line().startswith(" 56% [")   # without a plan: the stage's


def test_terminal_into_a_file_prints_a_short_line_every_few_seconds():
    bar, out, clock = _terminal(tty=False)
    for i in range(1, 101):
        clock.advance(0.5)
        bar("extracting features", 2 * i, 200)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert 9 <= len(lines) <= 11                    # 50 s of reports, one line per 5 s
    assert all(len(line) < 100 for line in lines)
    bar.close()
    assert out.getvalue().splitlines() == lines      # nothing more, nothing to clear


# -- the plan against real trainings (tiny: resnet18, random weights, 64 px) ---------------------------

@pytest.mark.parametrize("method,extra", [
    ("patchcore", {}),                                           # 12 images: 5-fold cross-fit
    ("patchcore", {"holdout": 2, "align": "translation"}),
    ("npad", {"options": {"k_channels": 16, "shifts": 0}}),
])
def test_every_stage_a_training_reports_is_planned_in_order(good_dir, method, extra):
    from inspector.core.images import list_images
    from inspector.core.pipeline.training import TrainSettings, train_model

    settings = TrainSettings(method=method, backbone="resnet18", random_weights=True, resize=64,
                             **{"options": {"coreset_ratio": 0.5}, **extra})
    reports, plans = [], []
    train_model(list_images(good_dir), settings, Job(lambda *r: reports.append(r), plan=plans.append))
    assert len(plans) == 1
    keys = [s.key for s in plans[0]]
    order = [keys.index(stage_key(stage)) for stage, _, _ in reports]     # ValueError: a stage not planned
    assert order == sorted(order) and order[-1] == len(keys) - 1
    meter = ProgressMeter(plans[0], clock=lambda: 0.0)
    seen = []
    for r in reports:
        meter.update(*r)
        seen.append(meter.overall)
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0)
