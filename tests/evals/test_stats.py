"""Statistics: intervals, paired tests, agreement."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmops.evals.stats import agreement, bootstrap_ci, paired, sign_test


def test_bootstrap_interval_covers_the_mean_and_shrinks_with_n() -> None:
    rng = np.random.default_rng(1)
    small = bootstrap_ci(rng.binomial(1, 0.7, 40).tolist())
    large = bootstrap_ci(rng.binomial(1, 0.7, 4000).tolist())
    assert small.low < small.mean < small.high
    assert (large.high - large.low) < (small.high - small.low) / 5
    assert large.low < 0.7 < large.high
    assert bootstrap_ci([1.0, 1.0]).low == 1.0 and math.isnan(bootstrap_ci([]).mean)
    huge = bootstrap_ci(rng.binomial(1, 0.5, 50_000).tolist())  # normal approximation
    assert huge.low < 0.5 < huge.high and huge.high - huge.low < 0.02


def test_sign_test_exact_values() -> None:
    assert sign_test(0, 0) == 1.0
    assert sign_test(10, 0) == pytest.approx(2 / 1024)
    assert sign_test(5, 5) == 1.0
    assert sign_test(600, 500) == pytest.approx(0.0029, abs=0.001)


def test_paired_detects_a_real_difference_and_not_noise() -> None:
    rng = np.random.default_rng(2)
    a = rng.binomial(1, 0.5, 200).astype(float)
    better = np.where(rng.random(200) < 0.3, 1.0, a)
    result = paired(a.tolist(), better.tolist())
    assert result.diff.mean > 0 and result.p_bootstrap < 0.01 and result.p_sign < 0.01
    assert result.losses == 0 and result.win_rate > 0.5
    assert result.verdict().startswith("B beats A")
    same = paired(a.tolist(), a.tolist())
    assert same.p_sign == 1.0 and same.verdict().startswith("no significant difference")
    with pytest.raises(ValueError, match="same cases"):
        paired([1.0], [1.0, 0.0])


def test_agreement_and_kappa() -> None:
    judge = ["pass", "pass", "fail", "fail", "pass", "fail"]
    human = ["pass", "pass", "fail", "pass", "pass", "fail"]
    result = agreement(judge, human)
    assert result.agreement == pytest.approx(5 / 6)
    assert result.kappa == pytest.approx(0.6667, abs=1e-3)
    assert result.confusion["pass"]["fail"] == 1 and result.confusion["fail"]["fail"] == 2
    assert agreement(["A", "B"], ["A", "B"]).kappa == 1.0


def test_mcnemar_counts_only_the_discordant_cases() -> None:
    from llmops.evals.stats import mcnemar

    assert mcnemar(0, 0) == 1.0
    assert mcnemar(0, 10) == pytest.approx(2 / 1024)  # ten fixes, no regression
    assert mcnemar(10, 0) == mcnemar(0, 10)
    assert mcnemar(17, 7) == pytest.approx(0.0639, abs=1e-4)
    with pytest.raises(ValueError, match="flip counts"):
        mcnemar(-1, 3)


def test_krippendorff_alpha_known_values() -> None:
    from llmops.evals.stats import krippendorff_alpha

    assert krippendorff_alpha([["A", "A"], ["B", "B"], ["tie", "tie"]]) == 1.0
    # two raters, one disagreement in three items: 1 - 2 / 3.6 (hand computed)
    assert krippendorff_alpha([["A", "A"], ["B", "B"], ["A", "B"]]) == pytest.approx(1 - 2 / 3.6)
    # items labelled once carry no agreement information; all-same labels cannot disagree
    assert math.isnan(krippendorff_alpha([["A"], ["B"]]))
    assert krippendorff_alpha([["A", "A"], ["A"]]) == 1.0
    # systematic disagreement is below zero
    assert krippendorff_alpha([["A", "B"], ["B", "A"], ["A", "B"]]) < 0
    # three raters with missing labels: the coincidence-matrix definition, worked by hand
    units = [["a", "a", "b"], ["b", "b"], ["a", "a", "a"], ["c", "b"]]
    assert krippendorff_alpha(units) == pytest.approx(11 / 29)
