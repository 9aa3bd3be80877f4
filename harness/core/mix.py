"""Which entry of a request mix (`workload.requests`) request `seq` sends: a pure function of
(seed, seq), so every backend and client sends the same entries in the same order, and the
writer names each row's entry from its `seq` alone.

The hash is splitmix64: the seed is mixed once, `seq + 1` steps of the golden gamma are added,
and the sum is mixed again; the 64-bit result modulo the total weight is bisected into the
cumulative weights. The scalar `Picker` (one request at a time, in the clients) and `pick_many`
(NumPy, a whole column at once, in the writer) compute the same thing: both wrap at 2**64."""

from __future__ import annotations

from bisect import bisect_right
from itertools import accumulate
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

MASK = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15
_M1, _M2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def _finish(z: int) -> int:
    z = ((z ^ (z >> 30)) * _M1) & MASK
    z = ((z ^ (z >> 27)) * _M2) & MASK
    return z ^ (z >> 31)


def mixed_seed(seed: int) -> int:
    """The seed as the hash starts from: mixed, so that nearby seeds give unrelated mixes."""
    return _finish(seed & MASK)


def hash64(seed: int, seq: int) -> int:
    return _finish((mixed_seed(seed) + (seq + 1) * GAMMA) & MASK)


def cumulative(weights) -> list[int]:
    return list(accumulate(int(w) for w in weights))


class Picker:
    """`picker(seq)` → the index of the entry request `seq` sends. The seed's mixing and the
    cumulative weights are computed once, here; a call is the hash, a modulo and a bisect."""

    __slots__ = ("_start", "_bounds", "_total")

    def __init__(self, seed: int, weights) -> None:
        self._start = mixed_seed(seed)
        self._bounds = cumulative(weights)
        self._total = self._bounds[-1]

    def __call__(self, seq: int) -> int:
        z = (self._start + (seq + 1) * GAMMA) & MASK
        z = ((z ^ (z >> 30)) * _M1) & MASK
        z = ((z ^ (z >> 27)) * _M2) & MASK
        return bisect_right(self._bounds, (z ^ (z >> 31)) % self._total)


def pick(seed: int, seq: int, weights) -> int:
    """The entry index of one request (building a Picker once is cheaper for many)."""
    return Picker(seed, weights)(seq)


def pick_many(seed: int, seqs, weights) -> np.ndarray:
    """`pick` of every seq at once (int64 indexes), with uint64 arithmetic that wraps as the
    scalar version masks. NumPy is imported here: the clients import this module for Picker."""
    import numpy as np

    seqs = np.asarray(seqs, dtype=np.int64).astype(np.uint64)
    bounds = np.asarray(cumulative(weights), dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(mixed_seed(seed)) + (seqs + np.uint64(1)) * np.uint64(GAMMA)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(_M1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
        z = z ^ (z >> np.uint64(31))
    return np.searchsorted(bounds, z % bounds[-1], side="right").astype(np.int64)
