"""Bradley–Terry rankings from pairwise preferences."""

from __future__ import annotations

import numpy as np
import pytest

from llmops.evals.ranking import Comparison, bradley_terry


def _sample(strengths: dict[str, float], n: int, seed: int) -> list[Comparison]:
    rng = np.random.default_rng(seed)
    names = sorted(strengths)
    out = []
    for _ in range(n):
        a, b = rng.choice(names, size=2, replace=False)
        p = strengths[a] / (strengths[a] + strengths[b])
        out.append(Comparison(str(a), str(b), 1.0 if rng.random() < p else 0.0))
    return out


def test_recovers_the_order_and_ratios_of_known_strengths() -> None:
    truth = {"weak": 0.5, "mid": 1.0, "strong": 4.0}
    ranking = bradley_terry(_sample(truth, 3000, seed=3), resamples=50)
    assert [m.model for m in ranking.models] == ["strong", "mid", "weak"]
    fitted = {m.model: m.strength for m in ranking.models}
    assert fitted["strong"] / fitted["mid"] == pytest.approx(4.0, rel=0.2)
    assert fitted["mid"] / fitted["weak"] == pytest.approx(2.0, rel=0.2)
    for m in ranking.models:
        assert m.low <= m.strength <= m.high
    assert ranking.probability("strong", "weak") == pytest.approx(8 / 9, abs=0.04)


def test_ties_count_half_and_the_prior_keeps_an_undefeated_model_finite() -> None:
    even = bradley_terry([Comparison("a", "b", 0.5)] * 10, resamples=20)
    assert even.probability("a", "b") == pytest.approx(0.5)
    assert {m.ties for m in even.models} == {10}
    # 4 wins plus the prior's half win each way: (4 + 0.5) / (4 + 1) = 0.9
    clean = bradley_terry([Comparison("a", "b", 1.0)] * 4, resamples=20)
    assert clean.probability("a", "b") == pytest.approx(0.9, abs=1e-6)
    assert clean.models[0].model == "a" and np.isfinite(clean.models[0].strength)
    assert (clean.models[0].wins, clean.models[0].losses) == (4, 0)


def test_intervals_narrow_with_more_comparisons() -> None:
    truth = {"a": 1.0, "b": 2.0}
    small = bradley_terry(_sample(truth, 40, seed=1), resamples=100)
    large = bradley_terry(_sample(truth, 2000, seed=1), resamples=100)
    width = {r.comparisons: r.models[0].high - r.models[0].low for r in (small, large)}
    assert width[2000] < width[40] / 3


def test_bad_comparisons_are_refused_and_nothing_ranks_empty() -> None:
    with pytest.raises(ValueError, match="outcome must be in"):
        bradley_terry([Comparison("a", "b", 2.0)])
    with pytest.raises(ValueError, match="compared with itself"):
        bradley_terry([Comparison("a", "a", 1.0)])
    assert bradley_terry([]).models == []


def test_models_that_never_met_are_counted_as_separate_groups() -> None:
    ranking = bradley_terry(
        [Comparison("a", "b", 1.0)] * 5 + [Comparison("c", "d", 1.0)], resamples=10
    )
    assert ranking.groups == 2
    assert bradley_terry([Comparison("a", "b", 1.0), Comparison("b", "c", 0.5)]).groups == 1
    with pytest.raises(ValueError, match="resamples must be at least 1"):
        bradley_terry([Comparison("a", "b", 1.0)], resamples=0)
