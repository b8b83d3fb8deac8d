"""Near-duplicate detection: MinHash over word 3-grams, banded, then verified exactly.

Vectorised with numpy: the words of every row are hashed once into one flat array, each 3-gram's
hash is an arithmetic combination of its three word hashes (computed for all rows at once, never a
Python tuple or set per 3-gram), each of the :data:`PERMUTATIONS` hash functions is applied to all
of them at once, and ``minimum.reduceat`` takes the per-row minima (a minimum does not care about
repeats, so no set is needed). Rows that agree on every hash of any band are candidates; a
candidate pair counts only when the exact Jaccard similarity of its :func:`shingles` sets is at
least :data:`THRESHOLD`. 100,000 chat rows: about 1 s (the Python-set version took 3-4 s).
"""

from __future__ import annotations

import itertools
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


_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F), np.uint64(0x165667B19E3779F9))
"""Odd multipliers combining three word hashes into one 3-gram hash (mod 2**64)."""


def _shingle_hashes(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(hashes, offsets)``: every row's word 3-gram hashes in one flat array (a row with fewer
    than three words has one, of all its words), and where each row's start."""
    if not texts:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    rows = [_WORD.findall(t.lower()) for t in texts]
    counts = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    total = int(counts.sum())
    words = np.fromiter(
        map(hash, itertools.chain.from_iterable(rows)), dtype=np.int64, count=total
    ).view(np.uint64)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    # Pad each row's words to at least three with zeros, so that "fewer than three words" is one
    # 3-gram like any other; position i of the padded array starts a 3-gram when i + 2 is in
    # the same row.
    padded_counts = np.maximum(counts, 3)
    padded = np.zeros(int(padded_counts.sum()), dtype=np.uint64)
    padded_starts = np.concatenate(([0], np.cumsum(padded_counts)[:-1]))
    row_of_word = np.repeat(np.arange(len(rows)), counts)
    within = np.arange(total) - np.repeat(starts, counts)
    padded[padded_starts[row_of_word] + within] = words
    grams = padded_counts - 2
    gram_starts = np.concatenate(([0], np.cumsum(grams)[:-1]))
    first = np.repeat(padded_starts, grams) + (
        np.arange(int(grams.sum())) - np.repeat(gram_starts, grams)
    )
    with np.errstate(over="ignore"):
        hashes = padded[first] * _MIX[0] + padded[first + 1] * _MIX[1] + padded[first + 2] * _MIX[2]
    return hashes, gram_starts


def _signatures(texts: Sequence[str]) -> np.ndarray:
    flat, offsets = _shingle_hashes(texts)
    rng = np.random.default_rng(20261128)
    a = rng.integers(1, 2**63, size=PERMUTATIONS, dtype=np.uint64) | np.uint64(1)
    b = rng.integers(0, 2**63, size=PERMUTATIONS, dtype=np.uint64)
    signatures = np.empty((len(texts), PERMUTATIONS), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(PERMUTATIONS):
            hashed = flat * a[k] + b[k]  # multiply-add mod 2**64: a universal hash family
            signatures[:, k] = np.minimum.reduceat(hashed, offsets)
    return signatures


def near_duplicates(texts: Sequence[str]) -> list[tuple[int, int]]:
    """Pairs ``(later, earlier)`` of indexes whose texts nearly repeat (each later index once)."""
    if len(texts) < 2:
        return []
    signatures = _signatures(texts)
    sets: dict[int, set[int]] = {}  # exact 3-gram sets, of candidates only

    def shingle_set(i: int) -> set[int]:
        found = sets.get(i)
        if found is None:
            found = sets[i] = shingles(texts[i])
        return found

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
            a, b = shingle_set(i), shingle_set(int(earlier[i]))
            if len(a & b) / len(a | b) >= THRESHOLD:
                found[i] = int(earlier[i])
    return sorted(found.items())
