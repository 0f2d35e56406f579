"""Joining Ray: a running cluster at an address, or a local Ray started for the caller.

Studies (:mod:`fleet.study.engines`) and split runs (:mod:`fleet.sim.split`) both use a Ray
that this process already joined as it is; otherwise :func:`join_ray` starts a local one, or
joins the cluster at an address after :func:`check_address` found it reachable (Ray itself
would wait for minutes before it gives up).
"""

from __future__ import annotations

import logging
import socket

from fleet.errors import ConfigError


def check_address(address: str, named: str = "--address") -> None:
    """ConfigError unless a TCP connection to the cluster at ``address`` (``host:port`` or
    ``ray://host:port``; ``auto`` is left to Ray) opens within 5 seconds; ``named``: where the
    address was given, for the message."""
    if address == "auto":
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(
            f"{named} {address!r}: write host:port (the head node's GCS port, 6379 by default) or ray://host:port"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as e:
        raise ConfigError(
            f"{named} {address}: no Ray cluster answers there ({e.strerror or e}); start one with "
            f"`ray start --head` or leave {named} out to start a local one; nothing was run"
        ) from None


def join_ray(address: str | None, num_cpus: int | None, named: str = "--address") -> bool:
    """Join the cluster at ``address``, or start a local Ray of ``num_cpus`` CPUs (None: every
    core) when ``address`` is None, unless this process joined a Ray already. Whether it joined
    or started one now (the caller then shuts it down). ConfigError naming ``named`` if Ray
    cannot join the cluster."""
    import ray

    if ray.is_initialized():
        return False
    try:
        ray.init(
            address=address,
            num_cpus=None if address else num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
        )
    except (ConnectionError, RuntimeError, ValueError) as e:
        reason = f"{type(e).__name__}: {' '.join(str(e).split())}"[:500]
        raise ConfigError(f"{named} {address}: Ray could not join the cluster ({reason}); nothing was run") from None
    return True
