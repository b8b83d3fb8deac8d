"""The hardened YAML reader every document goes through (prompts, recipes, suites)."""

from __future__ import annotations

import time

import pytest

from llmops._yamldoc import MAX_DEPTH, YamlSyntaxError, load_yaml, parse_yaml
from llmops.errors import InputError

BILLION_LAUGHS = """name: bomb
template: hi
metadata:
  a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
  b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
  c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
  d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
  e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
  f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
  g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
  h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
"""


def test_plain_documents_parse_with_their_nodes() -> None:
    data, root = parse_yaml("a: 1\nb: [x, {c: true}]\n")
    assert data == {"a": 1, "b": ["x", {"c": True}]}
    assert root is not None and root.start_mark.line == 0


def test_aliases_are_refused_at_their_line() -> None:
    started = time.perf_counter()
    with pytest.raises(YamlSyntaxError) as caught:
        parse_yaml(BILLION_LAUGHS)
    assert time.perf_counter() - started < 1
    assert caught.value.problem.line == 5 and "aliases (*a) are not allowed" in str(caught.value)


def test_merge_keys_use_aliases_and_are_refused_too() -> None:
    with pytest.raises(YamlSyntaxError, match="aliases"):
        parse_yaml("base: &b {x: 1}\nother:\n  <<: *b\n")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[" * 100_000 + "]" * 100_000, f"nested more than {MAX_DEPTH} levels"),
        ("x: " + "1" * 100_000, "integer of 100000 digits is too large"),
        ('x: "a \\ud800 b"', "lone surrogate"),
        ("a: 1\na: 2\n", "duplicate key 'a'"),
        ("? [1, 2]\n: x\n? [1, 2]\n: y\n", "unhashable|malformed"),
    ],
)
def test_hostile_documents_are_one_clear_error(text: str, match: str) -> None:
    with pytest.raises(YamlSyntaxError, match=match):
        parse_yaml(text)


def test_load_yaml_names_what_it_read() -> None:
    assert load_yaml("{a: 1}", what="--vars-file v.yaml") == {"a": 1}
    with pytest.raises(InputError, match=r"--vars-file v.yaml at line 2: .*aliases"):
        load_yaml("a: &x 1\nb: *x\n", what="--vars-file v.yaml")
