"""Statistics for eval results: confidence intervals, paired comparisons, judge agreement.

- :func:`bootstrap_ci`: percentile bootstrap (2,000 resamples, seeded) of a mean; past 20,000
  values the normal approximation, which is as accurate there and needs no resampling memory.
- :func:`paired`: B against A on the same cases: mean difference with its bootstrap interval,
  a paired bootstrap p-value, the exact sign test, and wins, losses and ties.
- :func:`mcnemar`: the exact McNemar test of verdict flips between two runs of the same cases.
- :func:`agreement`: judge against human labels: raw agreement, Cohen's kappa and the
  confusion table.
- :func:`krippendorff_alpha`: agreement among several raters (nominal labels, any number of
  raters per item, missing labels allowed).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "Agreement",
    "Interval",
    "Paired",
    "agreement",
    "bootstrap_ci",
    "krippendorff_alpha",
    "mcnemar",
    "paired",
    "sign_test",
]

RESAMPLES = 2000
_NORMAL_ABOVE = 20_000
_CHUNK = 200


@dataclass(frozen=True, slots=True)
class Interval:
    """A mean and its 95% confidence interval."""

    mean: float
    low: float
    high: float


def _bootstrap_means(values: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = values.size
    out = np.empty(RESAMPLES)
    for start in range(0, RESAMPLES, _CHUNK):
        stop = min(start + _CHUNK, RESAMPLES)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = values[idx].mean(axis=1)
    return out


def bootstrap_ci(values: Sequence[float], *, level: float = 0.95, seed: int = 0) -> Interval:
    """The mean of ``values`` with a ``level`` confidence interval (NaNs when empty)."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return Interval(math.nan, math.nan, math.nan)
    mean = float(data.mean())
    if data.size == 1 or np.all(data == data[0]):
        return Interval(mean, mean, mean)
    alpha = (1 - level) / 2
    if data.size > _NORMAL_ABOVE:
        half = 1.959963984540054 * float(data.std(ddof=1)) / math.sqrt(data.size)
        return Interval(mean, mean - half, mean + half)
    means = _bootstrap_means(data, seed)
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return Interval(mean, float(low), float(high))


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test p-value (ties excluded); normal approximation past 1,000."""
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    if n > 1000:
        z = (abs(wins - losses) - 1) / math.sqrt(n)
        return min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2)))
    tail = float(sum(math.comb(n, i) for i in range(k + 1)) / 2**n)
    return min(1.0, 2 * tail)


def mcnemar(pass_to_fail: int, fail_to_pass: int) -> float:
    """Two-sided exact McNemar p-value for paired pass/fail verdicts: only the discordant cases
    count (a binomial test of ``fail_to_pass`` against ``pass_to_fail`` at 1/2)."""
    if pass_to_fail < 0 or fail_to_pass < 0:
        raise ValueError(f"flip counts must be >= 0: {pass_to_fail}, {fail_to_pass}")
    return sign_test(fail_to_pass, pass_to_fail)


@dataclass(frozen=True, slots=True)
class Paired:
    """B compared with A on the cases both have."""

    n: int
    mean_a: float
    mean_b: float
    diff: Interval
    """Mean of B - A per case, with its bootstrap interval."""
    p_bootstrap: float
    """Paired bootstrap p-value for 'no difference' (two-sided)."""
    p_sign: float
    """Exact sign test p-value over the cases that differ."""
    wins: int
    """Cases where B scored higher."""
    losses: int
    ties: int

    @property
    def win_rate(self) -> float:
        """B's wins over all compared cases (ties count as half)."""
        return (self.wins + 0.5 * self.ties) / self.n if self.n else math.nan

    def to_json(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "n": self.n,
            "mean_a": self.mean_a,
            "mean_b": self.mean_b,
            "diff": self.diff.mean,
            "diff_ci_low": self.diff.low,
            "diff_ci_high": self.diff.high,
            "p_bootstrap": self.p_bootstrap,
            "p_sign": self.p_sign,
            "wins": self.wins,
            "losses": self.losses,
            "ties": self.ties,
            "win_rate": self.win_rate,
        }

    def verdict(self, *, alpha: float = 0.05, a: str = "A", b: str = "B") -> str:
        """One sentence: whether ``b`` is better, worse, or not distinguishable from ``a``."""
        p = max(self.p_bootstrap, self.p_sign) if self.n else 1.0
        ci = f"95% CI {self.diff.low:+.3f} to {self.diff.high:+.3f}, p={p:.2g}"
        if p < alpha and self.diff.mean > 0:
            return f"{b} beats {a} by {self.diff.mean:+.3f} ({ci})"
        if p < alpha and self.diff.mean < 0:
            return f"{b} is worse than {a} by {self.diff.mean:+.3f} ({ci})"
        return f"no significant difference ({self.diff.mean:+.3f}, p={p:.2g}, n={self.n})"


def paired(a: Sequence[float], b: Sequence[float], *, seed: int = 0) -> Paired:
    """Compare per-case scores ``b`` against ``a`` (same length, same case order)."""
    if len(a) != len(b):
        raise ValueError(f"paired scores need the same cases: {len(a)} vs {len(b)}")
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = y - x
    n = int(d.size)
    wins, losses = int((d > 0).sum()), int((d < 0).sum())
    diff = bootstrap_ci(d.tolist(), seed=seed)
    if n < 2 or np.all(d == d[0]):
        p_boot = 1.0 if n == 0 or d.mean() == 0 else 0.0
    elif n > _NORMAL_ABOVE:
        se = float(d.std(ddof=1)) / math.sqrt(n)
        p_boot = math.erfc(abs(float(d.mean())) / se / math.sqrt(2)) if se else 0.0
    else:
        centered = _bootstrap_means(d - d.mean(), seed + 1)
        p_boot = float((np.abs(centered) >= abs(d.mean())).mean())
    return Paired(
        n=n,
        mean_a=float(x.mean()) if n else math.nan,
        mean_b=float(y.mean()) if n else math.nan,
        diff=diff,
        p_bootstrap=p_boot,
        p_sign=sign_test(wins, losses),
        wins=wins,
        losses=losses,
        ties=n - wins - losses,
    )


@dataclass(frozen=True, slots=True)
class Agreement:
    """A judge's labels against a person's."""

    n: int
    agreement: float
    kappa: float
    confusion: dict[str, dict[str, int]]
    """``confusion[human][judge]`` counts."""

    def to_json(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "n": self.n,
            "agreement": self.agreement,
            "kappa": self.kappa,
            "confusion": self.confusion,
        }


def agreement(judge: Sequence[str], human: Sequence[str]) -> Agreement:
    """Raw agreement, Cohen's kappa and the confusion table of two label lists."""
    if len(judge) != len(human):
        raise ValueError("judge and human labels must pair up")
    n = len(judge)
    labels = sorted(set(judge) | set(human))
    confusion = {h: {j: 0 for j in labels} for h in labels}
    for j, h in zip(judge, human, strict=True):
        confusion[h][j] += 1
    if n == 0:
        return Agreement(0, math.nan, math.nan, confusion)
    observed = sum(1 for j, h in zip(judge, human, strict=True) if j == h) / n
    cj, ch = Counter(judge), Counter(human)
    expected = sum(cj[label] * ch[label] for label in labels) / (n * n)
    kappa = 1.0 if expected == 1 else (observed - expected) / (1 - expected)
    return Agreement(n, observed, kappa, confusion)


def krippendorff_alpha(units: Sequence[Sequence[str]]) -> float:
    """Krippendorff's alpha for nominal labels: one label list per item (its raters' labels).

    Items with fewer than two labels carry no information about agreement and are left out.
    1 is perfect agreement, 0 what chance gives, below 0 systematic disagreement; NaN when no
    item has two labels. When every label is the same the raters cannot disagree: 1.0.
    """
    pairable = [list(u) for u in units if len(u) >= 2]
    if not pairable:
        return math.nan
    totals: Counter[str] = Counter()
    observed_disagreement = 0.0
    for labels in pairable:
        m = len(labels)
        counts = Counter(labels)
        totals.update(counts)
        # ordered pairs of different labels within the item, weighted 1/(m-1)
        observed_disagreement += (m * m - sum(c * c for c in counts.values())) / (m - 1)
    n = sum(totals.values())
    expected_disagreement = (n * n - sum(c * c for c in totals.values())) / (n - 1)
    if expected_disagreement == 0:
        return 1.0
    return 1.0 - observed_disagreement / expected_disagreement
