"""Fault injection: hostile devices, to test and study what a compromised device does to a fleet.

A device of ``fleet.hostile.devices`` is compromised with its credentials intact: it publishes on
its own topic, with its own sender index and sequence numbers, messages the codec accepts, but
their values are ``+v, -v, +v, ...`` (``v = fleet.hostile.value``, by default 3e38, near the
largest float32) in place of the parameters its learner computed. The simulation applies
:func:`poison` to every parameter publication before encoding it, so the poison travels through
the simulated network (or a mixed fleet's real broker) like any message. Everything else about
the device stays honest: it senses, acts and learns as the others, and its KPIs count.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from fleet.learners.comm import Publication
from fleet.mqtt.codec import DType

FLOAT32_MAX = float(np.finfo(np.float32).max)
LARGEST = {DType.FLOAT16: 65504.0, DType.INT8: FLOAT32_MAX, DType.FLOAT32: FLOAT32_MAX}
"""Largest finite value each wire dtype of parameter values carries."""


def poison(pub: Publication, hostile: np.ndarray, value: float) -> Publication:
    """``pub`` with the values of the hostile senders replaced by ``+value, -value, ...`` along
    each message (capped at what the values' wire dtype carries). ``hostile`` (N,) bool by
    device; values are the last array of a publication, dense ``(M, P)`` or top-k ``(M, k)``."""
    rows = np.isin(pub.sender, np.flatnonzero(hostile))  # a cloud endpoint (index N) never is
    if not rows.any():
        return pub
    values = pub.arrays[-1].copy()
    magnitude = min(value, LARGEST[pub.dtypes[-1]])
    values[rows] = np.where(np.arange(values.shape[1]) % 2 == 0, magnitude, -magnitude).astype(values.dtype)
    return replace(pub, arrays=[*pub.arrays[:-1], values])
