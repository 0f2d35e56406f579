"""Progress of a long run, on stderr: a bar on a terminal, a line every few percent elsewhere.

A run reports its progress as the simulated time in seconds (``Simulation.run``'s
``progress``). On a terminal tqdm draws a bar. Where stderr is a file or a pipe (a batch job,
CI, ``nohup``), a bar shows nothing useful, so a line is written instead each time the run
passes another ``every_percent`` of its horizon::

    thermostats-small-v1: 25% (12.0 of 48.0 sim-h) after 31 s
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO


class ProgressLines:
    """A progress callback that writes one line per ``every_percent`` of ``total_s`` passed."""

    def __init__(self, total_s: float, name: str, stream: TextIO, every_percent: int = 5) -> None:
        self.total_s, self.name, self.stream, self.every_percent = total_s, name, stream, every_percent
        self.started = time.monotonic()
        self._step = 0
        """How many ``every_percent`` steps the last line reported."""

    def __call__(self, t_s: float) -> None:
        percent = math.floor(100 * t_s / self.total_s + 1e-9) if self.total_s > 0 else 100
        if percent // self.every_percent > self._step:
            self._step = percent // self.every_percent
            done = f"{t_s / 3600:.1f} of {self.total_s / 3600:.1f} sim-h"
            print(
                f"{self.name}: {percent}% ({done}) after {time.monotonic() - self.started:.0f} s",
                file=self.stream,
                flush=True,
            )


@contextmanager
def progress_reporter(total_s: float, name: str, stream: TextIO | None = None) -> Iterator[Callable[[float], None]]:
    """A progress callback for a run of ``total_s`` simulated seconds named ``name``: a tqdm bar
    when ``stream`` (default: stderr) is a terminal, else :class:`ProgressLines`."""
    stream = stream or sys.stderr
    if not stream.isatty():
        yield ProgressLines(total_s, name, stream)
        return
    from tqdm import tqdm

    bar = tqdm(
        total=round(total_s / 3600, 2),
        unit="sim-h",
        desc=name,
        file=stream,
        bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} sim-h [{elapsed}<{remaining}]",
    )
    try:
        yield lambda t: bar.update(round(t / 3600, 2) - bar.n)
    finally:
        bar.close()
