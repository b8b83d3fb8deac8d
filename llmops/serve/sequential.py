"""Always-valid confidence sequences for rates, so a canary can be looked at every few seconds
without inflating its false-alarm rate (a fixed-sample test re-run at every look would).

For observations in [0, 1] (sub-Gaussian with variance proxy 1/4) the normal-mixture boundary
of Robbins (1970), in the form of Howard, Ramdas, McAuliffe and Sekhon (2021, "Time-uniform,
nonparametric, nonasymptotic confidence sequences", eq. 14), holds at every sample size at once:
with probability at least 1 - alpha, for all n,

    |mean_n - p| <= sqrt((n/4 + rho) * log((n/4 + rho) / (rho * (alpha/2)^2))) / n.

``rho`` sets where the sequence is tightest (here around ``tune_n`` samples). The bound is
conservative for rates near 0 or 1 (it does not use the variance p(1-p)); it never claims more
than it can.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Interval", "difference", "rate_interval"]

_VARIANCE = 0.25


@dataclass(frozen=True, slots=True)
class Interval:
    """A time-uniform confidence interval."""

    estimate: float | None
    low: float
    high: float


def _radius(n: int, alpha: float, tune_n: int) -> float:
    rho = _VARIANCE * tune_n
    v = n * _VARIANCE + rho
    return math.sqrt(v * math.log(v / (rho * (alpha / 2) ** 2))) / n


def rate_interval(successes: float, n: int, *, alpha: float, tune_n: int = 200) -> Interval:
    """The (1 - alpha) confidence sequence for a rate after ``successes`` of ``n`` (or for the
    mean of ``n`` observations in [0, 1] summing to ``successes``)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if n <= 0:
        return Interval(None, 0.0, 1.0)
    mean = successes / n
    r = _radius(n, alpha, tune_n)
    return Interval(mean, max(0.0, mean - r), min(1.0, mean + r))


def difference(
    a: tuple[float, int], b: tuple[float, int], *, alpha: float, tune_n: int = 200
) -> Interval:
    """A (1 - alpha) confidence sequence for rate(a) - rate(b), from each arm's sequence at
    alpha/2 (a union bound: valid for any two independent streams)."""
    ia = rate_interval(*a, alpha=alpha / 2, tune_n=tune_n)
    ib = rate_interval(*b, alpha=alpha / 2, tune_n=tune_n)
    estimate = None if ia.estimate is None or ib.estimate is None else ia.estimate - ib.estimate
    return Interval(estimate, ia.low - ib.high, ia.high - ib.low)
