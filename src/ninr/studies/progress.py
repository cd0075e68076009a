"""Sweep progress: one overall bar (runs done / total, ETA) and one line per finished run.

On a terminal the bar is a tqdm bar and run lines print above it. Elsewhere (a log file, CI) there
is no bar and each run line carries the count and the ETA itself. ``quiet`` prints nothing.
The ETA counts only the runs of this session (runs resumed from the store took no time here).
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from ninr.studies.store import RunResult


def _clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def describe_result(result: RunResult, metric: str = "test_acc") -> str:
    """``"FC | in-NINR (Decay) | seed 1  run 3f2a9c01d2e4: completed test_acc 0.8712 (12.3s)"``."""
    spec = result.spec
    final = next((r for r in reversed(result.records) if r.get("final")), result.records[-1] if result.records else {})
    status = final.get("run_status", final.get("status", "?"))
    value = final.get(metric)
    shown = f" {metric} {value:.4f}" if isinstance(value, float) else ""
    phase = f" phase {final['phase']}" if final.get("phase") else ""
    where = f"{spec.get('part', '')} {spec.get('arch', '')} | {spec.get('label', '')} | seed {spec.get('seed', '')}"
    return f"{where}  run {result.run_id}: {status}{shown}{phase} ({result.wall_time_s:.1f}s)"


class Progress:
    """Progress of one sweep session.

    Args:
        total: Runs in the sweep.
        done: Runs already finished before this session (resumed).
        quiet: Print nothing.
        stream: Where to print (default stderr).
        bar: Force the bar on or off (default: on when ``stream`` is a terminal).
        label: Prefix of the bar, e.g. the part name.
    """

    def __init__(
        self,
        total: int,
        *,
        done: int = 0,
        quiet: bool = False,
        stream: TextIO | None = None,
        bar: bool | None = None,
        label: str = "",
    ) -> None:
        self.total, self.done, self.resumed = total, done, done
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        self.started = time.perf_counter()
        use_bar = (self.stream.isatty() if bar is None else bar) and not quiet
        self._bar: Any = None
        if use_bar:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, initial=done, desc=label or "runs", unit="run", file=self.stream, dynamic_ncols=True
            )

    def eta_s(self) -> float | None:
        """Seconds left at this session's pace (``None`` before the first run of the session)."""
        new = self.done - self.resumed
        if new <= 0:
            return None
        return (time.perf_counter() - self.started) / new * (self.total - self.done)

    def update(self, result: RunResult) -> None:
        """Count a finished run and print its line."""
        self.done += 1
        if self.quiet:
            return
        line = describe_result(result)
        if self._bar is not None:
            self._bar.update(1)
            self._bar.write(line, file=self.stream)
        else:
            eta = self.eta_s()
            eta_text = f"  ETA {_clock(eta)}" if eta is not None and self.done < self.total else ""
            width = len(str(self.total))
            print(f"[{self.done:>{width}}/{self.total}] {line}{eta_text}", file=self.stream, flush=True)

    def message(self, text: str) -> None:
        """A line that is not a run (start, summary), unless quiet."""
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        """Close the bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
