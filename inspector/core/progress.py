"""Honest progress: one overall fraction and ETA over all the stages of a job (torch-free).

A long job reports ``(stage, done, total)`` through :mod:`.jobs`.  Per stage that says little: a
training runs a dozen stages of very different cost, and a stage's first tick (the coreset's
first pick comes after seconds of set-up; an epoch's end after minutes) says nothing about the
rest.  Here:

- :func:`training_plan` lists the stages a training will report, each with its share of the whole
  (``weight``), from :data:`STAGE_COSTS`, a table of measured relative costs;
- :class:`ProgressMeter` turns the reports into an overall fraction (monotonic: finished stages
  count whole, a stage never counts less than before) and an ETA that is ``None`` until it means
  something: not before a stage has been *measured* (its first counted step is only the reference
  point; the rate needs :attr:`ProgressMeter.MIN_STEPS` later steps spanning
  :attr:`ProgressMeter.MIN_SPAN` seconds), and never after the job was cancelled or ended.

The GUI (wizard, status bar) and the terminal (:mod:`inspector.terminal`) draw the same meter.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

# -- measured stage costs -----------------------------------------------------------------------------
#
# Seconds per stage, on the development machine (2 CPU cores shared with other jobs, no GPU;
# wide_resnet50_2 with random weights, which cost what ImageNet weights cost; 224 px frames of
# synthetic 256 px parts; default options).  How: ``train_model`` runs of 20 and 60 good images
# (PatchCore), 20 good + 4 labelled anomalies (APC) and 12 good (N-pad, the full fit and part of a
# fold), every ``(stage, done, total)`` report timestamped; a stage's time runs from the previous
# stage's last report to its own last one.  The machine's load (other people's tests) changed
# several-fold during the runs, so every cost is taken relative to feature extraction *in the same
# run* and scaled to its unloaded rate (0.17 s per image, the 20-image run at load < 1); APC's
# fine-tuning step against feature extraction was timed alternately (4 batches of 8 each, medians)
# so that the load hit both alike: 3.5 feature-images per fine-tuning sample.
#
#   stage                        measured                         model (seconds)
#   loading backbone             1.2-1.9 s                        1.2
#   extracting features          0.14-0.23 s/img                  0.17 per image
#   coreset (greedy k-center)    fold of 16: 0.1 s, of 48: 0.5 s; 0.0016 n^1.5 x ratio/0.1, plus
#                                full fit of 60: 1.6 s            1.0 in the full fit (coverage
#                                                                 radius, JIT cache load)
#   building index               0.7-1.8 s for 1-5k rows          0.8 + 0.002 per image
#   scoring (held-out)           0.14 s/img                       0.14 per image
#   fine-tuning (APC)            3.5 x a feature image / sample   0.6 per sample
#   reading images (APC)         0.04 s/img                       0.02 per image
#   N-pad statistics             1.2 x a feature image            0.2 per image
#   N-pad neighbour weights      41 feature-images (n-free)       7 (x (k/150)^3, assumed)
#   N-pad distributions A, B     107 feature-images (n-free)      18 (x (k/150)^3, assumed)
#   N-pad k-means                118 feature-images, 940 centr.   20 x (c/940)^2 up to 4096
#                                                                 centroids (flat), ^1.5 beyond
#   not measured (estimates)     saving 0.5; inspecting 0.2/img; alignment 0.05/img; N-pad scoring
#                                (1 + shifts) x 0.17 + 0.05 per image
#
# All scale with the frame's area (pixels / 224^2) where the backbone or the patch count does.
# Only the ratios matter: the meter turns them into shares of the whole and measures each stage's
# actual rate as it runs.  On a GPU the backbone stages (features, fine-tuning, scoring) are
# relatively cheaper than here, so there the bar moves faster through them than the weights say.

FEATURES = 0.17
SCORING = 0.14
INSPECTING = 0.2
FINE_TUNING_SAMPLE = 0.6
READING = 0.02
BACKBONE_LOAD = 1.2
SAVE = 0.5
INDEX_FIXED, INDEX_PER_IMAGE = 0.8, 0.002
CORESET_A, CORESET_EXP, CORESET_FULL_FIT = 0.0016, 1.5, 1.0
NPAD_STATISTICS = 0.2
NPAD_WEIGHTS, NPAD_DISTRIBUTIONS = 7.0, 18.0
NPAD_KMEANS, NPAD_KMEANS_AT, NPAD_KMEANS_FLAT_MAX = 20.0, 940, 4096
NPAD_SCORING_EXTRA = 0.05
ALIGN_PER_IMAGE = 0.05
POSITIONS = 784              # feature-grid positions of a 224 px frame (stride 8)
REFERENCE_SIZE = 224


@dataclass(frozen=True)
class PlanStage:
    """One stage of a job: ``key`` as :func:`stage_key` names its reports, a label for people,
    ``weight`` its share of the whole job (a plan's weights sum to 1), ``unit`` what its count
    counts ("img", "batch", or "" where a rate means nothing)."""
    key: str
    label: str
    weight: float
    unit: str = ""


# units of what a stage counts, by key (fold prefixes stripped); stages not listed show no rate
UNITS = {"extracting features": "img", "scoring": "img", "calibrating thresholds": "img",
         "inspecting": "img", "reading images": "img", "alignment reference": "img", "fine-tuning": "batch",
         "statistics": "batch", "scoring the new images": "img"}

_FOLD = re.compile(r"^thresholds, fold (\d+) of \d+: (.*)$")
_ALIASES = {"extracting features (second pass)": "statistics"}


def stage_key(stage: str) -> str:
    """The plan key of a reported stage name: "thresholds, fold 2 of 5: coreset" → "fold 2/coreset";
    a parenthesised remark (a loss, a pass number) and a ": detail" are dropped."""
    stage = stage.strip()
    m = _FOLD.match(stage)
    prefix = ""
    if m:
        prefix, stage = f"fold {m.group(1)}/", m.group(2)
    stage = _ALIASES.get(stage, stage)
    stage = re.sub(r"\s*\(.*\)$", "", stage)
    stage = stage.split(":", 1)[0].strip()
    return prefix + stage


def stage_unit(key: str) -> str:
    return UNITS.get(key.split("/", 1)[-1], "")


def _label(key: str) -> str:
    if key.startswith("fold "):
        fold, rest = key.split("/", 1)
        return f"thresholds, {fold}: {rest}"
    return key


def training_plan(method: str, options: Optional[Mapping] = None, n_images: int = 0, *,
                  calibration=None, align: str = "none", n_anomalies: int = 0, size: int = REFERENCE_SIZE,
                  n_test: int = 0, save: bool = False) -> List[PlanStage]:
    """The stages a training of ``method`` on ``n_images`` good images reports, in order, each with
    its share of the whole from the measured costs above.

    ``calibration``: a :class:`~.pipeline.holdout.CrossFit` or ``HoldOut`` (default: what
    :func:`~.pipeline.holdout.default_calibration` picks for ``n_images``); ``align``: the
    alignment ("none" skips the reference stage); ``size``: the network's frame in pixels;
    ``n_test``: test images inspected afterwards and ``save``: the model is saved (a project's
    training); ``n_anomalies``: APC's labelled anomalies."""
    from .pipeline.holdout import CrossFit, default_calibration

    options = dict(options or {})
    n = max(1, int(n_images))
    plan = calibration if calibration is not None else default_calibration(n)
    pix = (max(16, int(size or REFERENCE_SIZE)) / REFERENCE_SIZE) ** 2
    from .methods import catalog
    costs_of = catalog.get(method).costs
    scoring = costs_of.scoring(options, pix)
    costs: List[Tuple[str, float]] = []
    if align and align != "none":
        costs.append(("alignment reference", ALIGN_PER_IMAGE * n))
    if isinstance(plan, CrossFit):
        costs += costs_of.fit(options, n, pix, True)
        folds = max(2, int(plan.folds))
        for k in range(folds):
            held = len(range(k, n, folds))              # fold sizes as split_folds cuts them
            # a fold refits on the other folds' images: the bank, or the whole model where the
            # method says so
            for key, c in costs_of.fit(options, n - held, pix, costs_of.refits_model_per_fold):
                costs.append((f"fold {k + 1}/{key}", c))
            costs.append((f"fold {k + 1}/scoring", scoring * held))
    else:
        held = int(getattr(plan, "n", 0) or 0)
        costs += costs_of.fit(options, n - held, pix, True)
        if held:
            costs.append(("calibrating thresholds", scoring * held))
    if save:
        costs.append(("saving the model", SAVE))
    if n_test:
        costs.append(("inspecting", INSPECTING * pix * n_test))
    total = sum(c for _, c in costs) or 1.0
    return [PlanStage(key, _label(key), c / total, stage_unit(key)) for key, c in costs]


# -- the meter -----------------------------------------------------------------------------------------

def fmt_duration(s: float) -> str:
    """m:ss, or h:mm:ss from an hour on."""
    s = int(round(max(0.0, s)))
    return f"{s // 60}:{s % 60:02d}" if s < 3600 else f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def fmt_eta(s: float) -> str:
    """A remaining time rounded so that it does not flicker: "about 0:40 left", "about 12 min left",
    "a few seconds left"."""
    if s < 5:
        return "a few seconds left"
    if s < 60:
        step = 5
    elif s < 600:
        step = 10
    else:
        return f"about {int(round(s / 60))} min left"
    return f"about {fmt_duration(max(step, round(s / step) * step))} left"


def fmt_rate(per_second: Optional[float], unit: str) -> str:
    """A rate in a unit people read: "12.3 img/s", "0.8 s/img"; "" without a unit or a rate (a
    count-less stage never shows millions per second)."""
    if not unit or per_second is None or not math.isfinite(per_second) or per_second <= 0:
        return ""
    if per_second >= 1:
        return f"{per_second:.0f} {unit}/s" if per_second >= 100 else f"{per_second:.1f} {unit}/s"
    secs = 1.0 / per_second
    return f"{secs:.1f} s/{unit}" if secs < 100 else f"{fmt_duration(secs)} per {unit}"


@dataclass
class _StageRun:
    key: str
    index: int                     # in the plan; -1 when not in it
    started: float                 # when the previous stage's last report came (its time starts)
    last_t: float = 0.0
    frac: float = 0.0
    done: int = 0
    total: int = 0                 # the last report's (the stage counted if > 1)
    ref: Optional[Tuple[float, float, int]] = None      # (t, frac, done) of the first counted step
    steps_after_ref: int = 0


class ProgressMeter:
    """Overall fraction, current stage and ETA of one job, from its ``(stage, done, total)`` reports.

    ``clock`` (seconds, monotonic) is injectable for tests.  Without a plan each stage is the
    whole (its own fraction is the overall one).  ``state``: "running", "done", "cancelled",
    "failed"; the ETA is ``None`` in every state but "running".
    """

    MIN_STEPS = 2        # counted steps after the stage's first, before its rate is used
    MIN_SPAN = 3.0       # seconds those steps must span

    def __init__(self, plan: Optional[Sequence[PlanStage]] = None, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.start_time = clock()
        self.state = "running"
        self.end_time: Optional[float] = None
        self.stage_text = ""
        self._plan: List[PlanStage] = []
        self._index: Dict[str, int] = {}
        self._cum: List[float] = []
        self._run: Optional[_StageRun] = None
        self._overall = 0.0
        self._last_report: Optional[float] = None    # the time of the last report
        self._hist_time = 0.0          # seconds spent in finished plan stages
        self._hist_weight = 0.0        # their weight
        self.measured = False          # whether any stage has been measured yet (no ETA before)
        self.set_plan(plan)

    # -- input -------------------------------------------------------------------------------------------
    def set_plan(self, plan: Optional[Sequence[PlanStage]]) -> None:
        self._plan = list(plan or [])
        self._index = {s.key: i for i, s in enumerate(self._plan)}
        cum, acc = [], 0.0
        for s in self._plan:
            cum.append(acc)
            acc += s.weight
        self._cum = cum

    @property
    def plan(self) -> List[PlanStage]:
        return list(self._plan)

    def update(self, stage: str, done: int, total: int) -> None:
        if self.state != "running":
            return
        now = self.clock()
        key = stage_key(stage)
        run = self._run
        if run is None or key != run.key:
            index = self._index.get(key, -1)
            if self._plan and run is not None and 0 <= index < run.index:
                return                              # a late report of a stage already passed
            if run is not None and run.index >= 0 and run.total > 1:
                # a finished counted stage: its whole time (set-up included) and weight calibrate
                # the stages ahead; count-less ones (a backbone load, an index build: a download or
                # a compile can take any time) do not
                self._hist_time += max(0.0, self._last_report - run.started)
                self._hist_weight += self._plan[run.index].weight
            # a stage's time runs from the previous stage's last report (the first stage's from
            # its own first report: what came before is the engine starting, not this job's work)
            run = self._run = _StageRun(key, index, now if self._last_report is None else self._last_report)
        self.stage_text = stage
        frac = min(1.0, max(0.0, done / total)) if total and total > 0 else 0.0
        if total > 1 and done > 0:                  # a counted step: measurable
            if run.ref is None:
                run.ref = (now, frac, done)
            elif done > run.ref[2]:
                run.steps_after_ref += 1
        run.frac, run.done, run.total, run.last_t = max(run.frac, frac), done, total, now
        self._last_report = now
        self._overall = max(self._overall, self._raw_overall())
        if self.stage_rate() is not None:
            self.measured = True

    def finish(self) -> None:
        self._end("done")
        self._overall = 1.0

    def cancel(self) -> None:
        self._end("cancelled")

    def fail(self) -> None:
        self._end("failed")

    def _end(self, state: str) -> None:
        if self.state == "running":
            self.state, self.end_time = state, self.clock()

    # -- output ------------------------------------------------------------------------------------------
    def _raw_overall(self) -> float:
        run = self._run
        if run is None:
            return 0.0
        if not self._plan:
            return run.frac
        if run.index < 0:
            return self._overall
        return self._cum[run.index] + self._plan[run.index].weight * run.frac

    @property
    def overall(self) -> float:
        """0..1 over the whole job (monotonic while it runs)."""
        return self._overall

    @property
    def determinate(self) -> bool:
        """Whether a fraction is known (a plan, or a stage with a count)."""
        if self._plan:
            return self._run is not None
        return self._run is not None and self._run.total > 0

    @property
    def stage_key(self) -> str:
        return self._run.key if self._run else ""

    @property
    def stage_counts(self) -> Tuple[int, int]:
        return (self._run.done, self._run.total) if self._run else (0, 0)

    @property
    def stage_position(self) -> Tuple[int, int]:
        """(1-based position of the current stage in the plan, number of stages); (0, n) if unknown."""
        idx = self._run.index if self._run else -1
        return idx + 1, len(self._plan)

    def elapsed(self) -> float:
        end = self.end_time if self.end_time is not None else self.clock()
        return end - self.start_time

    def stage_rate(self) -> Optional[float]:
        """Counted steps per second of the current stage, once measured (see the class)."""
        run = self._run
        if run is None or run.ref is None or run.steps_after_ref < self.MIN_STEPS:
            return None
        span = run.last_t - run.ref[0]
        if span < self.MIN_SPAN or run.done <= run.ref[2]:
            return None
        return (run.done - run.ref[2]) / span

    def _stage_seconds_left(self, now: float) -> Optional[float]:
        """The current stage's remaining seconds from its own measured rate.  Between reports it
        counts down; once a report is overdue (twice the usual interval) the stage is slower than
        measured, and the estimate follows the rate up to now instead."""
        run = self._run
        rate = self.stage_rate()
        if rate is None:
            return None
        left = run.total - run.done
        since = now - run.last_t
        interval = (run.last_t - run.ref[0]) / max(1, run.steps_after_ref)
        if since <= max(1.0, 2 * interval):
            return max(0.0, left / rate - since)
        slow = (run.done - run.ref[2]) / max(1e-9, now - run.ref[0])
        return left / slow

    def _seconds_per_weight(self) -> Optional[float]:
        """Seconds per unit of plan weight: from the finished stages (whole durations, set-up
        included) once they span MIN_SPAN seconds, else from the current stage's measured rate."""
        if self._hist_time >= self.MIN_SPAN and self._hist_weight > 0:
            return self._hist_time / self._hist_weight
        run = self._run
        rate = self.stage_rate()
        if rate is None or run is None or run.index < 0:
            return None
        w = self._plan[run.index].weight
        if w <= 0 or run.total <= 0:
            return None
        return run.total / (rate * w)

    def _compute_eta(self, now: float) -> Optional[float]:
        if self.state != "running" or self._run is None:
            return None
        run = self._run
        if not self._plan or run.index < 0:
            return self._stage_seconds_left(now)
        if not (self.measured or self._hist_time >= self.MIN_SPAN):
            return None             # nothing measured yet: no stage rate, no finished counted stage
        spw = self._seconds_per_weight()
        if spw is None:
            return None
        future = max(0.0, 1.0 - self._cum[run.index] - self._plan[run.index].weight)
        here = self._stage_seconds_left(now)
        if here is None:
            # not measured yet (a count-less stage, or its first steps): its share of the time as
            # the stages measured so far predict it, less what it has taken; no estimate once it
            # runs well past that
            expected = self._plan[run.index].weight * spw
            spent = now - run.started
            if spent > 2 * expected + self.MIN_SPAN:
                return None
            here = max(0.0, expected - spent)
        return here + future * spw

    def eta(self) -> Optional[float]:
        """Seconds left for the whole job, or ``None`` while not meaningful (see the class)."""
        if self.state != "running":
            return None
        return self._compute_eta(self.clock())

    def eta_text(self) -> str:
        left = self.eta()
        return fmt_eta(left) if left is not None else ""

    def rate_text(self) -> str:
        return fmt_rate(self.stage_rate(), stage_unit(self.stage_key))

    def times_text(self) -> str:
        """The line under a progress bar: elapsed and ETA while running; how it ended after."""
        if self.state == "done":
            return f"Done in {fmt_duration(self.elapsed())}"
        if self.state == "cancelled":
            return f"Cancelled after {fmt_duration(self.elapsed())}"
        if self.state == "failed":
            return f"Stopped after {fmt_duration(self.elapsed())}"
        text = f"Elapsed {fmt_duration(self.elapsed())}"
        eta = self.eta_text()
        return f"{text}   ·   {eta}" if eta else text


def settings_plan(settings, n_images: int, n_test: int = 0, save: bool = False) -> List[PlanStage]:
    """:func:`training_plan` for a :class:`~.pipeline.training.TrainSettings` (or anything with
    its fields) on ``n_images`` good images."""
    from .pipeline.holdout import HoldOut

    holdout = getattr(settings, "holdout", None)
    crop, resize = getattr(settings, "crop", None), getattr(settings, "resize", REFERENCE_SIZE)
    return training_plan(settings.method, getattr(settings, "options", None) or {}, n_images,
                         calibration=HoldOut(int(holdout)) if holdout is not None else None,
                         align=getattr(settings, "align", "none") or "none",
                         n_anomalies=len(getattr(settings, "anomalies", None) or []),
                         size=crop or resize or REFERENCE_SIZE, n_test=n_test, save=save)
