"""How many CPU threads a run computes with.

One number sets every thread pool of a run: torch's intra-op threads (``torch.set_num_threads``)
in this process, and the OpenMP and BLAS pools (``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``,
``OPENBLAS_NUM_THREADS``) of every process started from it, numpy's included, which read them
when they start. A run of a study gets its task's CPU request; a plain ``fleet run`` gets
:func:`threads_for_fleet` unless told otherwise.

Why it matters: OpenMP threads spin while they wait for a core. A small fleet's tensors are
too small to gain from a second thread, and beside a busy process two threads lose badly:
``fleet run thermostats-small-v1 --set horizon=6h --set learner.name=independent-v1`` took
20 s with torch's default two threads while another process kept one of the two cores busy,
and 0.9 s with one thread, which is what a parallel study does to every run. From about a
thousand devices a second thread pays (1.3 times faster at 1,000 devices on an idle two-core
machine, benchmarks/results/learners-e2e-1day-threads.json).
"""

from __future__ import annotations

import os

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
"""Environment variables that size the OpenMP and BLAS thread pools of a starting process."""
SMALL_FLEET = 1000
"""Fleets of fewer devices compute on one thread."""


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def threads_for_fleet(n_devices: int) -> int:
    """Threads for a plain run: ``OMP_NUM_THREADS`` where the environment sets it, else one for a
    fleet under SMALL_FLEET devices and every usable core for a larger one."""
    given = os.environ.get("OMP_NUM_THREADS", "")
    if given.isdigit() and int(given) > 0:
        return int(given)
    return 1 if n_devices < SMALL_FLEET else usable_cores()


def thread_env(threads: int) -> dict[str, str]:
    """The environment variables that give a starting process ``threads`` threads."""
    return {name: str(threads) for name in THREAD_ENV}


def set_threads(threads: int) -> int:
    """Compute on ``threads`` threads here (torch) and in every process started from now on."""
    import torch

    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    os.environ.update(thread_env(threads))
    torch.set_num_threads(threads)
    return threads
