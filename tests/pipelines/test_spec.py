"""Pipeline files: the run order, and every problem at once with its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops.pipelines import PipelineError, load_pipeline, parse_pipeline


def parse(tmp_path: Path, text: str) -> object:
    (tmp_path / "mysteps.py").write_text("def f(ctx):\n    return {}\n", encoding="utf-8")
    return parse_pipeline(text, path=tmp_path / "pipeline.yaml")


def test_order_follows_needs_then_the_file(tmp_path: Path) -> None:
    p = parse(tmp_path, """\
steps:
  - {name: c, python: "mysteps:f", needs: [b]}
  - {name: a, python: "mysteps:f"}
  - {name: b, python: "mysteps:f", needs: [a]}
  - {name: d, python: "mysteps:f"}
""")  # fmt: skip
    assert p.order == ("a", "b", "c", "d")  # type: ignore[attr-defined]
    assert p.downstream("a") == {"a", "b", "c"}  # type: ignore[attr-defined]
    assert p.upstream("c") == {"a", "b"}  # type: ignore[attr-defined]


def test_every_problem_is_listed_with_its_line(tmp_path: Path) -> None:
    with pytest.raises(PipelineError) as caught:
        parse(
            tmp_path,
            """\
name: bad
steps:
  - {name: a, python: "mysteps:f", needs: [c]}
  - {name: b, step: trian, params: {recipe: r.yaml}}
  - {name: c, python: "mysteps:f", needs: [a, zz], params: {x: "${b.out}"}}
  - {name: d, step: train}
  - {name: e, step: eval, params: {suite: missing.yaml}}
  - {name: f, python: "not a ref"}
  - {name: g, python: "nosuchmodule:f"}
  - {name: h, step: data, params: {path: d.jsonl, bogus: 1}}
""",
        )
    err = caught.value
    text = str(err)
    assert err.line == 3  # the first problem: the cycle, at a's needs
    for expected in (
        "the steps form a cycle: a -> c -> a",
        "line 4: unknown step kind 'trian' (did you mean 'train'?",
        "line 5: step 'c' needs 'zz', which is no step",
        "line 5: step 'c' uses ${b...} but does not list 'b' in needs",
        "line 6: step 'd' params: recipe: Field required",
        "line 7: step 'e': 'missing.yaml' does not exist",
        "line 8: steps.5.python: 'not a ref' is not module:function",
        "line 9: step 'g': no module 'nosuchmodule' to import",
        "line 10: step 'h' params: unknown field 'bogus'",
    ):
        assert expected in text, (expected, text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("steps: [{name: a\n", "malformed YAML"),
        ("- a\n- b\n", "expected a mapping with 'steps'"),
        ("steps: []\n", "steps: List should have at least 1 item"),
        ("steps:\n  - {name: a}\n", "needs exactly one of 'step:' (a built-in kind) or 'python:'"),
        ("steps:\n  - {name: a, python: 'mysteps:f', step: data}\n", "exactly one of"),
        ("steps:\n  - {name: 'a b', python: 'mysteps:f'}\n", "must be letters, digits"),
        ("steps:\n  - {python: 'mysteps:f'}\n  - {python: 'mysteps:f'}\n", "'f' is used twice"),
        ("stepz: []\n", "unknown field 'stepz' (did you mean 'steps'?)"),
        ("steps:\n  - {name: a, python: 'mysteps:f', needs: [a]}\n", "step 'a' needs itself"),
        ("steps:\n  - {python: 'mysteps:f', inputs: [gone.txt]}\n", "input 'gone.txt' does not"),
        ("steps:\n  - {python: 'mysteps:f'}\ntrigger: {steps: [zz]}\n", "trigger names 'zz'"),
    ],
)
def test_bad_pipelines(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(PipelineError) as caught:
        parse(tmp_path, text)
    assert message in str(caught.value)


def test_files_that_are_not_pipelines(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="no such pipeline file"):
        load_pipeline(tmp_path / "nope.yaml")
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(PipelineError, match="is a directory"):
        load_pipeline(tmp_path / "dir.yaml")
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe")
    with pytest.raises(PipelineError, match="not valid UTF-8"):
        load_pipeline(tmp_path / "bin.yaml")


def test_the_digest_is_the_content_not_the_layout(tmp_path: Path) -> None:
    a = parse(tmp_path, "steps:\n  - {name: a, python: 'mysteps:f', params: {x: 1, y: 2}}\n")
    b = parse(tmp_path, "steps:\n- name: a\n  python: mysteps:f\n  params:\n    y: 2\n    x: 1\n")
    c = parse(tmp_path, "steps:\n  - {name: a, python: 'mysteps:f', params: {x: 2, y: 2}}\n")
    assert a.digest == b.digest != c.digest  # type: ignore[attr-defined]


def test_the_shipped_pipeline_is_valid() -> None:
    shipped = Path(__file__).resolve().parents[2] / "pipeline.yaml"
    p = load_pipeline(shipped)
    assert p.order == (  # type: ignore[attr-defined]
        "prompts", "base-model", "data", "train", "eval", "promote", "candidate", "serve", "canary"
    )  # fmt: skip
    assert p.step("promote").params == {"model": "${train.adapter}", "alias": "staging"}  # type: ignore[attr-defined]
