"""The split: deterministic per key, monotone in the weight, accurate in share."""

from __future__ import annotations

import math
import random

import pytest

from llmops.serve.split import BUCKETS, bucket, choose, parse_sticky


def test_a_key_always_lands_on_the_same_arm() -> None:
    arms = {choose("bot", 37.5, f"user-{i}") for _ in range(5) for i in [7]}
    assert len(arms) == 1
    assert [choose("bot", 37.5, f"u{i}") for i in range(500)] == [
        choose("bot", 37.5, f"u{i}") for i in range(500)
    ]


def test_keys_only_move_from_stable_to_candidate_as_the_weight_grows() -> None:
    keys = [f"user-{i}" for i in range(3000)]
    previous = {k: choose("bot", 0, k) for k in keys}
    for weight in (1, 5, 10, 25, 50, 75, 99.99, 100):
        now = {k: choose("bot", weight, k) for k in keys}
        moved_back = [k for k in keys if previous[k] == "candidate" and now[k] == "stable"]
        assert moved_back == []
        previous = now
    assert set(previous.values()) == {"candidate"}


@pytest.mark.parametrize("weight", [1.0, 10.0, 33.3, 50.0])
def test_the_observed_share_is_inside_the_binomial_99_percent_interval(weight: float) -> None:
    n = 10_000
    hits = sum(choose("support-bot", weight, f"key-{i}") == "candidate" for i in range(n))
    p = weight / 100
    half = 2.576 * math.sqrt(p * (1 - p) / n)
    assert p - half <= hits / n <= p + half


def test_requests_without_a_key_are_drawn_each_time() -> None:
    rng = random.Random(1)
    arms = [choose("bot", 50, None, rng=rng) for _ in range(200)]
    assert 60 < arms.count("candidate") < 140


def test_buckets_differ_between_logical_models() -> None:
    same = sum(bucket("a", f"k{i}") == bucket("b", f"k{i}") for i in range(1000))
    assert same < 5
    assert all(0 <= bucket("a", f"k{i}") < BUCKETS for i in range(1000))


def test_sticky_specs() -> None:
    assert str(parse_sticky("header:X-User-Id")) == "header:x-user-id"
    assert str(parse_sticky("conversation")) == "conversation"
    assert parse_sticky(None) is None and parse_sticky("none") is None
    for bad in ("header:", "cookie:a", "header:a b", "header:" + "x" * 200):
        with pytest.raises(ValueError, match="header:<name> or conversation"):
            parse_sticky(bad)


def test_the_conversation_key_is_the_first_message() -> None:
    sticky = parse_sticky("conversation")
    assert sticky is not None
    body = {"messages": [{"role": "system", "content": "be brief"},
                         {"role": "user", "content": "hi"}]}  # fmt: skip
    longer = {"messages": [*body["messages"], {"role": "assistant", "content": "hello"},
                           {"role": "user", "content": "more"}]}  # fmt: skip
    assert sticky.key({}, body) == sticky.key({}, longer) == "be brief"
