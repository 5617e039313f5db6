"""Progress of long work: tqdm bars in a terminal, plain lines elsewhere.

In a log file or a SLURM ``.out`` a bar's redraws become carriage returns and cursor codes; there
:class:`PlainProgress` writes one line per ``interval`` seconds instead (stage, step/total,
percent, the bar's postfix such as the loss, rate and time left) and a last line when the work
ends. ``CLIPBENCH_PROGRESS`` chooses: ``auto`` (a bar when stderr is a terminal, lines
otherwise), ``bar``, ``lines`` or ``off``; ``clipbench --quiet`` sets ``off``, ``--verbose`` makes
lines come every 5 s instead of 30 s (``CLIPBENCH_PROGRESS_INTERVAL``, seconds).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Iterable, Iterator, Optional

MODES = ("auto", "bar", "lines", "off")
DEFAULT_INTERVAL = 30.0
QUIET_BELOW = 2.0  # seconds: shorter work ends without a line of its own


def mode() -> str:
    """The progress mode in force (``CLIPBENCH_PROGRESS``, default ``auto`` resolved against stderr)."""
    chosen = os.environ.get("CLIPBENCH_PROGRESS", "auto").strip().lower()
    if chosen not in MODES:
        chosen = "auto"
    if chosen == "auto":
        return "bar" if sys.stderr.isatty() else "lines"
    return chosen


def interval() -> float:
    try:
        return max(0.0, float(os.environ.get("CLIPBENCH_PROGRESS_INTERVAL", DEFAULT_INTERVAL)))
    except ValueError:
        return DEFAULT_INTERVAL


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


class PlainProgress:
    """The part of tqdm's interface clipbench uses, written as plain lines at a steady pace."""

    def __init__(self, iterable: Optional[Iterable] = None, total: Optional[int] = None, desc: str = "",
                 unit: str = "it", initial: int = 0, disable: bool = False, stream: Any = None, every: Optional[float] = None,
                 **_ignored: Any):
        self.iterable = iterable
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.desc, self.unit, self.n, self.disable = desc, unit, initial, disable
        self.stream = stream or sys.stderr
        self.every = interval() if every is None else every
        self.postfix = ""
        self._initial = initial
        self._start = self._last = time.monotonic()
        self._closed = False
        self._wrote = False
        self._written_at: Optional[int] = None

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            self._write()

    def set_postfix(self, ordered_dict: Optional[dict] = None, refresh: bool = True, **kwargs: Any) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        self.postfix = text

    def set_description(self, desc: str = "", refresh: bool = True) -> None:
        self.desc = desc

    def refresh(self) -> None:
        """Nothing to redraw: lines are written at their pace."""

    def line(self) -> str:
        elapsed = time.monotonic() - self._start
        done = self.n - self._initial
        rate = done / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.desc}: {self.n}" + (f"/{self.total}" if self.total else "") + f" {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        if self.postfix:
            parts.append(self.postfix)
        parts.append(f"{rate:.2f} {self.unit}/s" if rate >= 0.1 else f"{1 / rate:.1f} s/{self.unit}" if rate else "-")
        parts.append(f"elapsed {_duration(elapsed)}")
        if self.total and rate > 0 and self.n < self.total:
            parts.append(f"left {_duration((self.total - self.n) / rate)}")
        return ", ".join(parts)

    def _write(self) -> None:
        if not self.disable:
            print(self.line(), file=self.stream, flush=True)
            self._wrote, self._written_at = True, self.n

    def close(self) -> None:
        """The last line: for work that wrote lines or took at least :data:`QUIET_BELOW` seconds."""
        if not self._closed:
            self._closed = True
            fresh = self.n != self._written_at  # the last line written already says where the work ended
            if self.n > self._initial and fresh and (self._wrote or time.monotonic() - self._start >= QUIET_BELOW):
                self._write()


def progress(iterable: Optional[Iterable] = None, **kwargs: Any) -> Any:
    """A progress bar (tqdm) or plain progress lines, as :func:`mode` says; tqdm's arguments."""
    chosen = mode()
    if chosen == "off":
        kwargs["disable"] = True
    if chosen == "bar":
        from tqdm.auto import tqdm

        return tqdm(iterable, **kwargs)
    return PlainProgress(iterable, **kwargs)
