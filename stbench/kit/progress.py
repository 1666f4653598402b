"""Progress lines for long training loops, written to a stream (the job log) at a steady wall-clock interval.

A method's output reaches its impute log through a pipe, never a terminal, so a redrawn bar (tqdm) would
show nothing useful there. :class:`Progress` writes one plain line at the first step, then at most once
every ``every_s`` seconds, and at the last step: step/total, loss, elapsed time and an ETA from the rate
of this process's steps (a resumed run counts only the steps it ran itself). tqdm has no fixed-interval
line mode for a non-terminal stream, hence these few lines.
"""

from __future__ import annotations

import datetime as _dt
import sys
import time

DEFAULT_EVERY_S = 30.0


def hms(seconds: float) -> str:
    """``H:MM:SS`` (hours unbounded)."""
    s = int(round(max(0.0, float(seconds))))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    """``update(step, loss)`` after each optimiser step; it writes a line when one is due.

    ``step`` counts completed steps (1..total); ``start`` is the step the loop starts from (a resumed
    run's checkpoint step). ``loss`` may be a number or a zero-argument callable, called only when a
    line is written (so that a GPU loop syncs with the host only then). ``clock`` is for tests.
    """

    def __init__(self, total: int, *, label: str, every_s: float | None = DEFAULT_EVERY_S, start: int = 0,
                 stream=None, clock=time.monotonic, enabled: bool = True):
        self.total, self.label, self.start = int(total), str(label), int(start)
        self.every_s = DEFAULT_EVERY_S if every_s is None else float(every_s)
        self.stream, self.clock, self.enabled = stream, clock, bool(enabled)
        self.t0 = clock()
        self.last = None  # clock of the last line written

    def due(self, step: int) -> bool:
        """Whether ``update(step)`` would write a line (cheap: one clock read)."""
        if not self.enabled:
            return False
        return (self.last is None or step >= self.total
                or self.clock() - self.last >= self.every_s)

    def update(self, step: int, loss=None) -> str | None:
        """Write the line for ``step`` if one is due; return it (None when nothing was written)."""
        if not self.due(step):
            return None
        now = self.clock()
        self.last = now
        elapsed = now - self.t0
        done = step - self.start
        eta = (self.total - step) * elapsed / done if done > 0 else None
        if callable(loss):
            loss = loss()
        pct = 100.0 * step / self.total if self.total else 100.0
        parts = [f"{self.label}: step {step}/{self.total} ({pct:.1f}%)"]
        if loss is not None:
            parts.append(f"loss {float(loss):.4g}")
        parts.append(f"elapsed {hms(elapsed)}")
        parts.append("eta " + (hms(eta) if eta is not None else "?"))
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        line = f"[{stamp} UTC] " + ", ".join(parts)
        self.write(line)
        return line

    def write(self, line: str) -> None:
        """A line of its own (e.g. 'resuming from step ...'), flushed at once; written even when disabled."""
        stream = self.stream if self.stream is not None else sys.stderr
        stream.write(line + "\n")
        stream.flush()
