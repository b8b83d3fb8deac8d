"""Ranking models from pairwise preferences: the Bradley–Terry model with bootstrap intervals.

Each comparison says which of two models a person (or a judge) preferred, or that they tied.
Bradley–Terry gives every model a strength ``p`` such that ``P(i beats j) = p_i / (p_i + p_j)``;
it is fitted with the minorization–maximization updates (Hunter, 2004), a tie counting half a
win to each side. A weak prior (half a win each way between every pair that met) keeps an
undefeated model's strength finite. Intervals come from resampling the comparisons.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Comparison", "RankedModel", "Ranking", "bradley_terry"]

PRIOR = 0.5
"""Pseudo-wins each way between every pair of models that met."""
RESAMPLES = 200
_ITERATIONS = 500
_TOLERANCE = 1e-9


@dataclass(frozen=True, slots=True)
class Comparison:
    """``first`` against ``second``: ``outcome`` 1.0 when ``first`` won, 0.0 when it lost,
    0.5 for a tie."""

    first: str
    second: str
    outcome: float


@dataclass(frozen=True, slots=True)
class RankedModel:
    """One model's place in a ranking."""

    model: str
    rank: int
    strength: float
    """Bradley–Terry strength, scaled so the strengths' geometric mean is 1."""
    low: float
    """2.5th percentile of the strength over bootstrap resamples."""
    high: float
    wins: int
    losses: int
    ties: int

    def to_json(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "model": self.model,
            "rank": self.rank,
            "strength": self.strength,
            "low": self.low,
            "high": self.high,
            "wins": self.wins,
            "losses": self.losses,
            "ties": self.ties,
        }


@dataclass(frozen=True, slots=True)
class Ranking:
    """Models from strongest to weakest, fitted on ``comparisons`` preferences."""

    models: list[RankedModel]
    comparisons: int
    groups: int = 1
    """Sets of models linked by comparisons: past 1, models of different sets never met
    (directly or through others) and their order says nothing."""

    def to_json(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "comparisons": self.comparisons,
            "groups": self.groups,
            "models": [m.to_json() for m in self.models],
        }

    def probability(self, a: str, b: str) -> float:
        """The fitted probability that ``a`` is preferred to ``b``."""
        strength = {m.model: m.strength for m in self.models}
        return strength[a] / (strength[a] + strength[b])


def _fit(names: list[str], wins: np.ndarray, games: np.ndarray) -> np.ndarray:
    """Strengths from ``wins[i, j]`` (i's wins over j, ties halved) and ``games[i, j]``."""
    k = len(names)
    p = np.ones(k)
    total_wins = wins.sum(axis=1)
    for _ in range(_ITERATIONS):
        denom = (games / (p[:, None] + p[None, :])).sum(axis=1)
        new = np.where(denom > 0, total_wins / np.where(denom > 0, denom, 1.0), p)
        new = np.maximum(new, 1e-12)
        new /= math.exp(float(np.log(new).mean()))
        if float(np.abs(new - p).max()) < _TOLERANCE:
            return new
        p = new
    return p


def _tables(
    k: int, first: np.ndarray, second: np.ndarray, outcome: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(wins, games)`` tables of ``k`` models from index arrays (ties count half)."""
    wins = np.zeros((k, k))
    np.add.at(wins, (first, second), outcome)
    np.add.at(wins, (second, first), 1.0 - outcome)
    met = (wins + wins.T) > 0
    wins = wins + PRIOR * met
    return wins, wins + wins.T


def bradley_terry(
    comparisons: Sequence[Comparison], *, resamples: int = RESAMPLES, seed: int = 0
) -> Ranking:
    """Fit Bradley–Terry strengths to ``comparisons``, with bootstrap intervals.

    Raises:
        ValueError: an outcome outside [0, 1], or a model compared with itself.
    """
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    for c in comparisons:
        if not 0.0 <= c.outcome <= 1.0:
            raise ValueError(f"comparison outcome must be in [0, 1], got {c.outcome}")
        if c.first == c.second:
            raise ValueError(f"a model cannot be compared with itself: {c.first!r}")
    names = sorted({c.first for c in comparisons} | {c.second for c in comparisons})
    if not names:
        return Ranking(models=[], comparisons=0)
    index = {n: i for i, n in enumerate(names)}
    first = np.array([index[c.first] for c in comparisons])
    second = np.array([index[c.second] for c in comparisons])
    outcome = np.array([c.outcome for c in comparisons], dtype=float)
    k, n = len(names), len(comparisons)
    strength = _fit(names, *_tables(k, first, second, outcome))
    rng = np.random.default_rng(seed)
    samples = np.empty((resamples, k))
    for r in range(resamples):
        pick = rng.integers(0, n, size=n)
        samples[r] = _fit(names, *_tables(k, first[pick], second[pick], outcome[pick]))
    low, high = np.quantile(samples, [0.025, 0.975], axis=0)
    tally = {n: [0, 0, 0] for n in names}
    for c in comparisons:
        if c.outcome == 0.5:
            tally[c.first][2] += 1
            tally[c.second][2] += 1
        else:
            winner, loser = (c.first, c.second) if c.outcome > 0.5 else (c.second, c.first)
            tally[winner][0] += 1
            tally[loser][1] += 1
    order = sorted(range(len(names)), key=lambda i: (-strength[i], names[i]))
    return Ranking(
        models=[
            RankedModel(
                model=names[i],
                rank=rank,
                strength=float(strength[i]),
                low=float(low[i]),
                high=float(high[i]),
                wins=tally[names[i]][0],
                losses=tally[names[i]][1],
                ties=tally[names[i]][2],
            )
            for rank, i in enumerate(order, start=1)
        ],
        comparisons=n,
        groups=_groups(names, comparisons),
    )


def _groups(names: list[str], comparisons: Sequence[Comparison]) -> int:
    """How many sets of models the comparisons link (union-find)."""
    parent = {n: n for n in names}

    def root(n: str) -> str:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for c in comparisons:
        parent[root(c.first)] = root(c.second)
    return len({root(n) for n in names})
