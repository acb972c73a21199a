"""Counter-based random streams: the draw for (stream, step, task) does not depend on who makes it.

A sharded run visits task ``i`` on whichever rank owns it; a one-process run visits it itself. For the
two to take the same chain, the noise of task ``i``'s SGLD step at step ``t`` (and its minibatch) is
drawn from a generator seeded by a hash of ``(seed, stream, t, i)`` instead of from one sequential
stream. Seeding a ``torch.Generator`` costs microseconds, far below one adapter's step.
"""

from __future__ import annotations

import torch

_MASK = (1 << 64) - 1

NOISE, BATCH, SCHEDULE, LOCAL, SHARED = 1, 2, 3, 4, 5  # stream ids


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def key(seed: int, stream: int, step: int, task: int = 0) -> int:
    """A 63-bit seed that mixes the four counters (distinct tuples give unrelated seeds)."""
    x = int(seed) & _MASK
    for part in (stream, step, task):
        x = _splitmix64(x ^ (int(part) & _MASK))
    return x >> 1


def generator(seed: int, stream: int, step: int, task: int = 0) -> torch.Generator:
    """A fresh CPU generator for the draw ``(seed, stream, step, task)``."""
    return torch.Generator().manual_seed(key(seed, stream, step, task))
