"""Polling for something that happens on another thread or in another process."""

import time
from collections.abc import Callable


def wait_for(
    condition: Callable[[], object], what: str = "the condition", timeout: float = 15.0, interval: float = 0.01
) -> None:
    """Return once ``condition()`` is truthy; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
