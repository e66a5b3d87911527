"""Progress in a terminal: the job protocol's callback drawn as tqdm bars (the CLI and the
research tools share it)."""

from __future__ import annotations

import sys


class TerminalProgress:
    """The job protocol's progress callback as terminal bars, one per stage (tqdm)."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._bar = None
        self._stage = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm
        if stage != self._stage or self._bar is None or (total and self._bar.total != total):
            self.close()
            self._stage = stage
            self._bar = tqdm(total=total or None, desc=stage, unit="", leave=False, file=sys.stderr,
                             dynamic_ncols=True)
        self._bar.n = done
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
