"""Near-duplicate detection: MinHash over word 3-grams, banded, then verified exactly.

Vectorised with numpy so 100,000 rows take about a second: every row's shingle hashes go into one
flat array, each of the :data:`PERMUTATIONS` hash functions is applied to all of them at once, and
``minimum.reduceat`` takes the per-row minima. Rows that agree on every hash of any band are
candidates; a candidate pair counts only when the exact Jaccard similarity of its shingle sets is at
least :data:`THRESHOLD`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

__all__ = ["PERMUTATIONS", "THRESHOLD", "near_duplicates", "shingles"]

PERMUTATIONS = 16
BANDS = 4
THRESHOLD = 0.8
_WORD = re.compile(r"\w+")


def shingles(text: str) -> set[int]:
    """Hashes of the word 3-grams of the lower-cased text (of the whole text when it has fewer
    words); hashing word tuples avoids building a string per 3-gram."""
    words = _WORD.findall(text.lower())
    if len(words) < 3:
        return {hash(tuple(words))}
    return set(map(hash, zip(words, words[1:], words[2:], strict=False)))


def _signatures(sets: Sequence[set[int]]) -> np.ndarray:
    lengths = np.fromiter((len(s) for s in sets), dtype=np.int64, count=len(sets))
    flat = np.fromiter(
        (hash(g) & 0xFFFFFFFFFFFFFFFF for s in sets for g in s),
        dtype=np.uint64,
        count=lengths.sum(),
    )
    offsets = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    rng = np.random.default_rng(20261128)
    a = rng.integers(1, 2**63, size=PERMUTATIONS, dtype=np.uint64) | np.uint64(1)
    b = rng.integers(0, 2**63, size=PERMUTATIONS, dtype=np.uint64)
    signatures = np.empty((len(sets), PERMUTATIONS), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(PERMUTATIONS):
            hashed = flat * a[k] + b[k]  # multiply-add mod 2**64: a universal hash family
            signatures[:, k] = np.minimum.reduceat(hashed, offsets)
    return signatures


def near_duplicates(texts: Sequence[str]) -> list[tuple[int, int]]:
    """Pairs ``(later, earlier)`` of indexes whose texts nearly repeat (each later index once)."""
    if len(texts) < 2:
        return []
    sets = [shingles(t) for t in texts]
    signatures = _signatures(sets)
    rows_per_band = PERMUTATIONS // BANDS
    found: dict[int, int] = {}
    for band in range(BANDS):
        keys = np.ascontiguousarray(
            signatures[:, band * rows_per_band : (band + 1) * rows_per_band]
        )
        # The first row of each bucket (np.unique returns first indexes): every later row of a
        # bucket is a candidate against it.
        _, first, inverse = np.unique(
            keys.view(np.dtype((np.void, keys.dtype.itemsize * rows_per_band))).ravel(),
            return_index=True,
            return_inverse=True,
        )
        earlier = first[inverse.ravel()]
        for i in np.flatnonzero(earlier != np.arange(len(texts))).tolist():
            if i in found:
                continue
            a, b = sets[i], sets[int(earlier[i])]
            if len(a & b) / len(a | b) >= THRESHOLD:
                found[i] = int(earlier[i])
    return sorted(found.items())
