"""Progress in a terminal: the job protocol's callback drawn from a :class:`ProgressMeter` (the CLI
and the research tools share it).

On a terminal one line is redrawn in place: the overall bar (over all stages when the job
announced its plan, else the current stage's), the current stage with its count, its rate in
a unit people read ("12.3 img/s", "0.8 s/img"; none for stages whose count is not of things)
and, once it means something, the ETA.  Into a file or a pipe (a log, CI) it prints one short
line every :attr:`TerminalProgress.LOG_INTERVAL` seconds instead of carriage-return bars.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import Callable, Optional

from .core.progress import ProgressMeter, fmt_duration


class TerminalProgress:
    """The job protocol's progress callback (and plan receiver, ``set_plan``) as terminal output."""

    REDRAW_INTERVAL = 0.2     # seconds between redraws on a terminal
    LOG_INTERVAL = 5.0        # seconds between lines into a file or pipe
    BAR = 20                  # characters of the bar

    def __init__(self, enabled: bool = True, stream=None, clock: Callable[[], float] = time.monotonic,
                 tty: Optional[bool] = None):
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        if tty is None:
            isatty = getattr(self.stream, "isatty", None)
            tty = bool(isatty and isatty())
        self.tty = tty
        self.meter = ProgressMeter(None, clock)
        self._last_draw: Optional[float] = None
        self._last_stage = None
        self._drawn = 0              # characters on the terminal line now

    def set_plan(self, plan) -> None:
        """A job's announced stages: a fresh meter over them."""
        self.meter = ProgressMeter(plan, self.clock)

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        self.meter.update(stage, done, total)
        now = self.clock()
        key = self.meter.stage_key
        changed = key != self._last_stage
        interval = self.REDRAW_INTERVAL if self.tty else self.LOG_INTERVAL
        if self._last_draw is not None and not (self.tty and changed) and now - self._last_draw < interval:
            return
        self._last_draw, self._last_stage = now, key
        self._draw(self.line(bar=self.tty))

    def line(self, bar: bool = True) -> str:
        """What is drawn now (without the carriage return)."""
        m = self.meter
        parts = []
        if m.determinate:
            pct = f"{100 * m.overall:3.0f}%"
            if bar:
                filled = int(round(self.BAR * m.overall))
                pct += " [" + "#" * filled + "-" * (self.BAR - filled) + "]"
            parts.append(pct)
        else:
            parts.append(f"[{fmt_duration(m.elapsed())}]")
        done, total = m.stage_counts
        stage = m.stage_text
        if total > 1:
            stage += f" {done}/{total}"
        parts.append(stage)
        tail = [t for t in (m.rate_text(), m.eta_text()) if t]
        text = "  ".join(parts)
        return text + ("  ·  " + ", ".join(tail) if tail else "")

    def _draw(self, text: str) -> None:
        if self.tty:
            width = max(20, shutil.get_terminal_size((100, 20)).columns - 1)
            text = text[:width]
            self.stream.write("\r" + text + " " * max(0, self._drawn - len(text)))
            self._drawn = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """The job ended (done, failed or cancelled): clear the line; nothing of it stays."""
        if self.tty and self._drawn:
            self.stream.write("\r" + " " * self._drawn + "\r")
            self.stream.flush()
        self._drawn = 0
        self._last_draw = self._last_stage = None
        self.meter = ProgressMeter(None, self.clock)
