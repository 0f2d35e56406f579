"""Named random streams derived from one seed.

Every generator of a run comes from ``Streams(seed).numpy("name")``: the stream depends only
on the seed and the name, so adding a new consumer of randomness never shifts the draws of
the others, and nothing uses global random state.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch


class Streams:
    """Independent generators keyed by name, all derived from ``seed``."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def _sequence(self, name: str) -> np.random.SeedSequence:
        return np.random.SeedSequence([self.seed, zlib.crc32(name.encode())])

    def numpy(self, name: str) -> np.random.Generator:
        """A numpy Generator (PCG64) for ``name``."""
        return np.random.Generator(np.random.PCG64(self._sequence(name)))

    def torch(self, name: str, device: str = "cpu") -> torch.Generator:
        """A torch Generator for ``name`` on ``device``."""
        gen = torch.Generator(device=device)
        gen.manual_seed(int(self._sequence(name).generate_state(1, np.uint64)[0] >> np.uint64(1)))
        return gen
