"""The named registries behind the extension points."""

from __future__ import annotations

import typing

import pytest

from llmops._plugins import Registry


def test_unknown_and_duplicate_names_are_clear_errors() -> None:
    things: Registry[int] = Registry("widget")
    things.register("alpha", 1)
    assert things.get("alpha") == 1 and "alpha" in things and list(things) == ["alpha"]
    with pytest.raises(ValueError, match="duplicate widget 'alpha'"):
        things.register("alpha", 2)
    with pytest.raises(ValueError, match=r"unknown widget 'alpah' \(did you mean 'alpha'\?\)"):
        things.get("alpah")
    with pytest.raises(ValueError, match=r"unknown widget 'zzz' \(known: alpha\)"):
        things.get("zzz")


def test_third_party_entry_points_register_on_first_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata

    point = importlib.metadata.EntryPoint(
        name="shout", value="builtins:str.upper", group="llmops.test-scorers"
    )

    def entry_points(*, group: str) -> list[importlib.metadata.EntryPoint]:
        return [point] if group == "llmops.test-scorers" else []

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    things: Registry[object] = Registry("scorer", group="llmops.test-scorers")
    things.register("builtin", len)
    assert things.names() == ("builtin", "shout") and things.get("shout") is str.upper


def test_a_third_party_scorer_runs_in_a_suite(monkeypatch: pytest.MonkeyPatch) -> None:
    from llmops.evals.scorers import SCORERS, ScoreContext, ScoreResult, run_scorer
    from llmops.evals.suite import Assertion

    def shouting(output: str, value: object, ctx: ScoreContext) -> ScoreResult:
        return ScoreResult(output.isupper(), float(output.isupper()))

    monkeypatch.setitem(SCORERS._items, "shouting", shouting)
    assert Assertion(type="not-shouting").type == "not-shouting"
    assert run_scorer("shouting", "HEY", None, ScoreContext()).passed is True
    assert run_scorer("not-shouting", "HEY", None, ScoreContext()).passed is False


def test_the_literals_match_their_registries() -> None:
    from llmops.artifacts.manifest import Kind
    from llmops.artifacts.store import KINDS
    from llmops.data.formats import FORMATS
    from llmops.evals.export import EXPORT_FORMATS, export_run
    from llmops.train.recipe import DatasetSpec

    assert set(typing.get_args(Kind)) == set(KINDS)
    fmt = DatasetSpec.model_fields["format"].annotation
    assert set(typing.get_args(fmt)) == set(FORMATS)
    import inspect

    annotation = inspect.signature(export_run).parameters["fmt"].annotation
    literal = eval(annotation, {"Literal": typing.Literal})
    assert set(typing.get_args(literal)) == set(EXPORT_FORMATS)


def test_every_provider_kind_is_known_to_suites() -> None:
    from llmops.evals.providers import PROVIDERS
    from llmops.evals.suite import ModelSpec

    for name in PROVIDERS:
        extra = {"api_base": "http://127.0.0.1:1/v1"} if name == "openai" else {}
        assert ModelSpec(provider=name, name="m", **extra).provider == name
    with pytest.raises(ValueError, match=r"unknown provider 'openia' \(did you mean 'openai'\?\)"):
        ModelSpec(provider="openia", name="m")
