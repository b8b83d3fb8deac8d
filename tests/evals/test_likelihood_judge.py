"""Likelihood judges (``judge.method: likelihood``): the verdict is the judge's probability of
each verdict word, not a reply it writes, so a small local model that cannot write a verdict
still gives one."""

from __future__ import annotations

import asyncio
import math
import shutil
from pathlib import Path
from typing import Any

import pytest

from llmops import Workspace
from llmops.errors import SuiteError
from llmops.evals.judge import likelihood_verdict
from llmops.evals.providers import LocalProvider, Request
from llmops.evals.suite import ModelSpec
from llmops.evals.testing import MockServer
from tests.evals.conftest import is_judge, user_text, write_suite
from tests.evals.test_judge import pair_targets


def test_probabilities_are_normalized_over_the_verdict_words() -> None:
    scored = likelihood_verdict(("A", "B", "TIE"), (math.log(0.2), math.log(0.6), -math.inf))
    assert scored is not None
    probs, mass = scored
    assert probs == pytest.approx({"A": 0.25, "B": 0.75, "TIE": 0.0})
    assert mass == pytest.approx(0.8)
    # No verdict word had any probability: no verdict (a judge error), not a coin flip.
    assert likelihood_verdict(("PASS", "FAIL"), (-math.inf, -math.inf)) is None
    # Very unlikely words everywhere still normalize (no underflow to 0/0).
    low = likelihood_verdict(("PASS", "FAIL"), (-2000.0, -2001.0))
    assert low is not None and low[0]["PASS"] == pytest.approx(1 / (1 + math.exp(-1)))


def _reply(top: list[tuple[object, object]]) -> dict[str, object]:
    entries = [{"token": t, "logprob": lp} for t, lp in top]
    return {"choices": [{"logprobs": {"content": [{"top_logprobs": entries}]}}]}


def test_first_token_matching_ignores_case_spaces_and_trailing_punctuation() -> None:
    from llmops.evals.providers import _first_token_scores

    scores = _first_token_scores(_reply([(" Pass", -0.05), ("FAIL.", -3.0)]), ("PASS", "FAIL"), "u")
    assert scores == pytest.approx((-0.05, -3.0))
    pair = _first_token_scores(
        _reply([("A:", -0.1), (" b", -2.0), ("T", -4)]), ("A", "B", "TIE"), "u"
    )
    assert pair == pytest.approx((-0.1, -2.0, -4.0))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 5.0, True, "-0.1", None], ids=repr)
def test_malformed_logprobs_are_judge_errors_not_verdicts(bad: object) -> None:
    from llmops.evals.providers import ProviderError, _first_token_scores

    with pytest.raises(ProviderError, match="malformed top_logprobs entry"):
        _first_token_scores(_reply([("PASS", bad), ("FAIL", -3.0)]), ("PASS", "FAIL"), "u")


def test_a_judge_whose_likely_replies_are_not_verdict_words_gives_judge_errors(
    ws: Workspace, tmp_path: Path
) -> None:
    def respond(body: dict[str, Any]) -> str:
        return "Maybe" if is_judge(body) else "Paris"

    with MockServer(respond) as server:
        suite = write_suite(
            tmp_path,
            server.url,
            cases="""
  - vars: {country: France}
    assert: [{type: llm-rubric, value: names the capital}]
""",
            extra=_likelihood_judge(server.url, mode="single"),
        )
        run = ws.evaluate(suite).run
    result = next(ws.evals.results(run.run_id))
    assert result["passed"] is None
    assert "no likely reply starts with PASS/FAIL" in str(result["assertions"][0]["reason"])


def _likelihood_judge(url: str, mode: str = "pairwise") -> str:
    return (
        f"judge: {{mode: {mode}, method: likelihood,"
        f' model: {{provider: openai, name: j, api_base: "{url}"}}}}\n'
    )


def test_pairwise_on_a_server_with_logprobs(ws: Workspace, tmp_path: Path) -> None:
    """The judge asks for one token and its top_logprobs, both orders; its verdict follows the
    answer naming Paris whichever side it is on, and the human labels calibrate it."""
    judged: list[dict[str, Any]] = []

    def respond(body: dict[str, Any]) -> str:
        if is_judge(body):
            judged.append(body)
            a_part = user_text(body).split("Answer A:")[1].split("Answer B:")[0]
            return "A" if "Paris" in a_part else "B"
        return "Paris" if "formal" in user_text(body) else "no idea"

    with MockServer(respond) as server:
        suite = write_suite(
            tmp_path,
            server.url,
            targets=pair_targets(server.url),
            cases="""
  - {vars: {country: France}, human: B}
  - {vars: {country: Spain}, human: A}
""",
            extra=_likelihood_judge(server.url) + "default_assert: [{type: contains, value: a}]\n",
        )
        out = ws.evaluate(suite).to_json()
    assert len(judged) == 4
    assert all(b["max_tokens"] == 1 and b["logprobs"] is True for b in judged)
    assert all(b["top_logprobs"] == 20 and b["temperature"] == 0 for b in judged)
    assert "Reply A, B or TIE" in user_text(judged[0])
    assert out["wins"] == {"plain": 0, "formal": 2} and out["position_consistency"] == 1.0
    pairs = ws.evals.pairs(out["run_id"])
    assert [p["verdict"] for p in pairs] == ["B", "B"]
    assert pairs[0]["details"]["replies"][0].startswith("likelihood: P(A)=")
    # The labels are about pairs: the answers' own pass/fail is not calibrated against them.
    assert "single" not in out["calibration"]
    calibration = out["calibration"]["pairwise"]
    assert calibration["n"] == 2 and calibration["agreement"] == 0.5


def test_a_server_without_logprobs_gives_judge_errors_not_verdicts(
    ws: Workspace, tmp_path: Path
) -> None:
    def respond(body: dict[str, Any]) -> str:
        return "PASS" if is_judge(body) else "Paris"

    with MockServer(respond, logprobs=False) as server:
        suite = write_suite(
            tmp_path,
            server.url,
            cases="""
  - vars: {country: France}
    assert: [{type: llm-rubric, value: names the capital}]
""",
            extra=_likelihood_judge(server.url, mode="single"),
        )
        run = ws.evaluate(suite).run
    result = next(ws.evals.results(run.run_id))
    assert result["passed"] is None or result["error"]
    reason = str(result["assertions"][0]["reason"]) + str(result["error"])
    assert "top_logprobs" in reason and "method 'generate'" in reason


def test_the_local_model_scores_each_verdict_word_and_the_cache_keeps_them(
    ws: Workspace, tiny_model: Path, tmp_path: Path
) -> None:
    import torch

    shutil.copytree(tiny_model, ws.root / "models" / "tiny")
    suite = ws.root / "judged.yaml"
    suite.write_text("""
targets:
  - name: base
    prompt: [{role: user, content: "what is {{ n }} plus {{ n }}?"}]
    model: {provider: transformers, name: models/tiny, max_tokens: 4}
cases: [{vars: {n: 1}, human: pass}, {vars: {n: 2}, human: fail}]
default_assert: [{type: llm-rubric, value: the sum is right}]
judge:
  method: likelihood
  model: {provider: transformers, name: models/tiny}
""")
    first = ws.evaluate(suite)
    results = sorted(ws.evals.results(first.run.run_id), key=lambda r: r["case_index"])
    assert first.run.errors == 0, [r["error"] for r in results]
    scores = [r["score"] for r in results]
    assert all(0 < s < 1 for s in scores)
    assert all(r["passed"] == (r["score"] >= 0.5) for r in results)
    replies = results[0]["assertions"][0]["judge_replies"]
    assert replies[0].startswith("likelihood: P(PASS)=")
    assert first.run.summary["calibration"]["single"]["n"] == 2

    # The probabilities are the model's own: recompute P(PASS) for the first case by hand.
    provider = LocalProvider(ModelSpec(provider="transformers", name=str(tiny_model)), models=None)
    answer = results[0]["output"]
    spec = ws.prompts.get("llmops-judge-rubric-likelihood").spec
    assert "PASS" in spec.messages[-1].content
    request = Request(messages=(("user", "x"),), temperature=0, max_tokens=1)
    assert request.to_json().get("choices") is None  # no choices: the key of old requests
    scored = asyncio.run(
        provider.complete(
            Request(
                messages=(("user", f"Is {answer!r} right? Reply PASS or FAIL."),),
                temperature=0,
                max_tokens=1,
                choices=("PASS", "FAIL"),
            )
        )
    )
    assert len(scored.choice_logprobs) == 2 and scored.text in ("PASS", "FAIL")
    tok = provider._tokenizer
    ids = tok.apply_chat_template(
        [{"role": "user", "content": f"Is {answer!r} right? Reply PASS or FAIL."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )["input_ids"]
    word = tok("PASS", add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = provider._model(torch.cat([ids, word], dim=1)).logits[0]
    by_hand = sum(
        float(torch.log_softmax(logits[ids.shape[1] - 1 + i], -1)[word[0][i]])
        for i in range(word.shape[1])
    )
    assert scored.choice_logprobs[0] == pytest.approx(by_hand, abs=1e-4)

    again = ws.evaluate(suite)
    assert again.calls == 0  # answers and verdicts from the cache, probabilities included
    cached = sorted(ws.evals.results(again.run.run_id), key=lambda r: r["case_index"])
    assert [r["score"] for r in cached] == scores


@pytest.mark.parametrize(
    ("judge", "message"),
    [
        ("{method: likelihood, pattern: 'V: (\\w+)', model: {provider: transformers, name: m}}",
         "writes none"),
        ("{method: likelihood, pattern: '', model: {provider: transformers, name: m}}",
         "writes none"),
        ("{method: likelihood, epochs: 3, model: {provider: transformers, name: m}}",
         "same every time"),
        ("{method: likelihood, model: {provider: litellm, name: gpt-4o-mini}}",
         "provider 'litellm'"),
    ],
)  # fmt: skip
def test_likelihood_judges_refuse_what_cannot_work(
    ws: Workspace, tmp_path: Path, judge: str, message: str
) -> None:
    suite = write_suite(
        tmp_path,
        "http://127.0.0.1:9",
        cases="\n  - vars: {country: France}\n    assert: [{type: llm-rubric, value: ok}]\n",
        extra=f"judge: {judge}\n",
    )
    with pytest.raises(SuiteError, match=message):
        ws.evaluate(suite)


def test_single_calibration_is_the_judges_verdict_not_the_other_checks(
    ws: Workspace, tmp_path: Path
) -> None:
    """The judge passes both answers; a literal check fails one. People said pass to both:
    the judge agrees with them twice, whatever the literal check said. A suite with no judge
    gives no calibration at all."""

    def respond(body: dict[str, Any]) -> str:
        return "PASS" if is_judge(body) else "Paris"

    with MockServer(respond) as server:
        judged = write_suite(
            tmp_path,
            server.url,
            cases="""
  - vars: {country: France}
    human: pass
    assert: [{type: llm-rubric, value: ok}, {type: contains, value: Paris}]
  - vars: {country: Spain}
    human: pass
    assert: [{type: llm-rubric, value: ok}, {type: contains, value: Madrid}]
""",
            extra=_likelihood_judge(server.url, mode="single"),
        )
        out = ws.evaluate(judged).to_json()
        literal = write_suite(
            tmp_path,
            server.url,
            name="literal.yaml",
            cases="""
  - {vars: {country: France}, human: fail, assert: [{type: contains, value: Paris}]}
""",
        )
        plain = ws.evaluate(literal).to_json()
    assert out["calibration"]["single"]["n"] == 2
    assert out["calibration"]["single"]["agreement"] == 1.0
    assert "single" not in (plain.get("calibration") or {})


def test_canary_likelihood_judges_are_checked_when_the_canary_starts() -> None:
    from llmops.errors import InputError
    from llmops.serve.canary import parse_spec

    with pytest.raises(InputError, match="judge_method 'likelihood' needs a judge_model"):
        parse_spec({"judge_method": "likelihood"})
    with pytest.raises(InputError, match="judge_method 'likelihood' needs token log-prob"):
        parse_spec({"judge_method": "likelihood",
                    "judge_model": {"provider": "litellm", "name": "gpt-4o-mini"}})  # fmt: skip
    spec = parse_spec({"judge_method": "likelihood",
                       "judge_model": {"provider": "transformers", "name": "m"}})  # fmt: skip
    assert spec.judge_method == "likelihood"
