"""The GUI's view of a :class:`~inspector.core.progress.ProgressMeter`: the same overall bar,
stage line and ETA in the training wizard and in the main window's status bar."""

from __future__ import annotations

from PySide6.QtWidgets import QProgressBar

from ..core.progress import ProgressMeter

STEPS = 1000          # the bar's resolution


def show_on_bar(bar: QProgressBar, meter: ProgressMeter) -> None:
    """The overall fraction on ``bar`` (busy while nothing is known yet)."""
    if meter.determinate:
        if bar.maximum() != STEPS:
            bar.setRange(0, STEPS)
        bar.setValue(int(round(STEPS * meter.overall)))
    else:
        bar.setRange(0, 0)


def stage_title(meter: ProgressMeter) -> str:
    """The current stage as reported, capitalised."""
    text = meter.stage_text
    return text[:1].upper() + text[1:]


def stage_detail(meter: ProgressMeter) -> str:
    """Where the current stage stands: "Step 3 of 17  ·  120 of 209  ·  12.3 img/s"."""
    parts = []
    at, n = meter.stage_position
    if at and n > 1:
        parts.append(f"Step {at} of {n}")
    done, total = meter.stage_counts
    if total > 1:
        parts.append(f"{done} of {total}")
    rate = meter.rate_text()
    if rate:
        parts.append(rate)
    return "   ·   ".join(parts)
