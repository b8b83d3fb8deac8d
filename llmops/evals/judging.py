"""Judging inside an eval run: model-graded assertions and pairwise comparison, through the
run's engine, with the graded text cut to size and fenced (see :mod:`llmops.evals.judge` for
the prompts, the fences and the verdict parsing)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING, Any, NamedTuple

from llmops.evals.engine import Engine, make_request
from llmops.evals.judge import (
    CHOICES,
    aggregate,
    combine_orders,
    delimit,
    ensure_judge_prompts,
    likelihood_verdict,
    parse_pairwise,
    parse_single,
)
from llmops.evals.providers import Provider, ProviderError
from llmops.evals.scorers import JudgeHook, ScoreResult
from llmops.evals.suite import Case, JudgeSpec, ModelSpec, NumberedCase

if TYPE_CHECKING:
    from llmops.prompts import PromptRegistry, PromptSpec

__all__ = ["MAX_JUDGE_CHARS", "Judges", "for_judge", "inline_spec", "model_key", "question_of"]

Row = dict[str, Any]


def inline_spec(label: str, prompt: list[Any]) -> PromptSpec:
    """A prompt spec for messages written into the suite (a target's or the judge's)."""
    from llmops.prompts import PromptSpec

    messages = [{"role": m.role, "content": m.content} for m in prompt]
    name = "inline-" + "".join(c if c.isalnum() or c in "._-" else "-" for c in label)
    inferred = PromptSpec.model_validate({"name": name[:128], "messages": messages})
    # Case variables come from YAML, JSONL and CSV as any JSON type; an inline prompt takes them
    # as they are (a registry prompt's declared types still apply).
    variables = {v: {"type": "any"} for v in inferred.variables}
    return PromptSpec.model_validate(
        {"name": name[:128], "messages": messages, "variables": variables}
    )


def question_of(messages: list[dict[str, str]]) -> str:
    users = [m["content"] for m in messages if m["role"] == "user"]
    return users[-1] if users else messages[-1]["content"] if messages else ""


class Judges:
    """Model-graded assertions and pairwise judging."""

    def __init__(
        self,
        prompts: PromptRegistry,
        judge: JudgeSpec | None,
        engine: Engine,
        providers: dict[str, Provider],
    ) -> None:
        self.judge = judge
        self.engine = engine
        self.providers = providers
        self.prompts: dict[str, PromptSpec] = {}
        if self.judge is not None and self.judge.judges:
            if isinstance(self.judge.prompt, str):
                custom = prompts.get(self.judge.prompt).spec
                self.prompts = dict.fromkeys(("rubric", "reference", "pairwise"), custom)
            elif self.judge.prompt:
                inline = inline_spec("judge", self.judge.prompt)
                self.prompts = dict.fromkeys(("rubric", "reference", "pairwise"), inline)
            else:
                built = ensure_judge_prompts(prompts)
                suffix = "-likelihood" if self.judge.method == "likelihood" else ""
                self.prompts = {
                    kind: built[f"llmops-judge-{kind}{suffix}"].spec
                    for kind in ("rubric", "reference", "pairwise")
                }

    async def _verdicts(self, kind: str, values: dict[str, str]) -> list[_Reply]:
        """Every judge x epoch reply (a likelihood judge's text describes its probabilities)."""
        assert self.judge is not None
        spec = self.prompts[kind]
        known = {k: v for k, v in values.items() if k in spec.variables}
        messages = spec.render(known).messages
        choices = CHOICES[kind] if self.judge.method == "likelihood" else ()
        calls = []
        for model in self.judge.judges:
            provider = self.providers[model_key(model)]
            request = make_request(messages, model)
            if choices:
                request = dataclasses.replace(request, choices=choices, max_tokens=1)
            calls += [
                self.engine.call(provider, model, request, epoch)
                for epoch in range(self.judge.epochs)
            ]
        replies = await asyncio.gather(*calls, return_exceptions=True)
        out: list[_Reply] = []
        for reply in replies:
            if isinstance(reply, ProviderError):
                out.append(_Reply("", f"judge call failed: {reply}"))
            elif isinstance(reply, BaseException):
                raise reply
            elif choices and len(reply.choice_logprobs) != len(choices):
                out.append(_Reply("", "judge error: the provider scored no verdict words"))
            elif choices:
                scored = likelihood_verdict(choices, reply.choice_logprobs)
                if scored is None:
                    words = "/".join(choices)
                    out.append(_Reply("", f"judge error: no likely reply starts with {words}"))
                    continue
                probs, mass = scored
                text = "likelihood: " + ", ".join(f"P({c})={p:.3f}" for c, p in probs.items())
                text += f" (the verdict words held {mass:.1%} of the judge's probability)"
                out.append(_Reply(text, None, probs))
            else:
                out.append(_Reply(reply.text, None))
        return out

    def hook(self, messages: list[dict[str, str]], case: Case) -> JudgeHook:
        """The judge as model-graded scorers of one answer see it (see :class:`JudgeHook`)."""

        async def judge(
            kind: str, value: Any, output: str, *, threshold: float | None
        ) -> ScoreResult:
            return await self._grade(kind, value, output, messages, case, threshold)

        return judge

    async def _grade(
        self,
        kind: str,
        value: Any,
        output: str,
        messages: list[dict[str, str]],
        case: Case,
        own_threshold: float | None,
    ) -> ScoreResult:
        assert self.judge is not None
        threshold = own_threshold if own_threshold is not None else self.judge.threshold
        shown = [
            for_judge(output),
            for_judge(question_of(messages)),
            for_judge(str(case.expected or value or "")),
        ]
        values = {
            "rubric": for_judge(str(value or self.judge.rubric)),
            "output": delimit(shown[0], "answer"),
            "question": delimit(shown[1], "question"),
            "expected": delimit(shown[2], "reference"),
        }
        if kind == "reference":
            values["rubric"] = self.judge.rubric
        replies = await self._verdicts(kind, values)
        results = [
            ScoreResult(None, 0.0, reply.error)
            if reply.error
            else _single_likelihood(reply.probs, threshold, reply.text)
            if reply.probs
            else parse_single(
                reply.text,
                field=self.judge.field,
                pattern=self.judge.pattern,
                threshold=threshold,
                untrusted=shown,
            )
            for reply in replies
        ]
        verdict = aggregate(results, self.judge.aggregate, threshold)
        if verdict.passed is not None and self.judge.aggregate == "mean":
            verdict = ScoreResult(verdict.score >= threshold, verdict.score, verdict.reason)
        details: dict[str, Any] = {
            "judge_samples": [r.score for r in results if r.passed is not None],
            "judge_replies": [r.text[-2000:] for r in replies],
        }
        if len(output) > MAX_JUDGE_CHARS:
            details["judge_saw_chars"] = MAX_JUDGE_CHARS
        return ScoreResult(verdict.passed, verdict.score, verdict.reason, details)

    @staticmethod
    def failed_pair(case: NumberedCase, error: str) -> Row:
        """A pairwise row with no verdict: ``error`` says why."""
        return _pair_row(case, None, None, {"orders": [], "replies": [], "errors": [error[:4000]]})

    async def pairwise(self, case: NumberedCase, question: str, a: str, b: str) -> Row:
        verdict, consistent, details = await self.compare(question, a, b)
        return _pair_row(case, verdict, consistent, details)

    async def compare(
        self, question: str, a: str, b: str
    ) -> tuple[str | None, bool | None, dict[str, Any]]:
        """``(verdict, consistent, details)`` of answers ``a`` and ``b`` to ``question``, judged
        in both orders: the verdict (``A``, ``B``, ``TIE``, None with no verdict) is from
        ``a``'s point of view; ``consistent`` says whether most judges agreed across orders."""
        assert self.judge is not None
        question, a, b = for_judge(question), for_judge(a), for_judge(b)
        q = delimit(question, "question")
        shown = [question, a, b]
        first = await self._verdicts(
            "pairwise",
            {
                "question": q,
                "answer_a": delimit(a),
                "answer_b": delimit(b),
                "rubric": self.judge.rubric,
            },
        )
        second = await self._verdicts(
            "pairwise",
            {
                "question": q,
                "answer_a": delimit(b),
                "answer_b": delimit(a),
                "rubric": self.judge.rubric,
            },
        )
        judge = self.judge

        def read(reply: _Reply) -> Any:
            if reply.error:
                return None
            if reply.probs:
                probs = reply.probs
                return max(probs, key=lambda v: (probs[v], v == "TIE"))
            return parse_pairwise(
                reply.text, field=judge.field, pattern=judge.pattern, untrusted=shown
            )

        combined = [
            combine_orders(read(r1), read(r2)) for r1, r2 in zip(first, second, strict=True)
        ]
        valid = [c for c in combined if c.verdict is not None]
        verdict, consistent = None, None
        if valid:
            votes: list[str] = [str(c.verdict) for c in valid]
            verdict = max(("A", "B", "TIE"), key=lambda v: (votes.count(v), v == "TIE"))
            consistent = sum(1 for c in valid if c.consistent) * 2 > len(valid) or (
                len(valid) == 1 and bool(valid[0].consistent)
            )
        details = {
            "orders": [[c.verdict, c.consistent] for c in combined],
            "replies": [r.text[-1000:] for r in first + second],
            "errors": [r.error for r in first + second if r.error],
        }
        return verdict, consistent, details


MAX_JUDGE_CHARS = 100_000
"""Text shown to a judge is cut to this many characters (a note says how much was cut), so one
huge answer cannot overflow the judge prompt's render limit or the judge's context."""


def for_judge(text: str, limit: int = MAX_JUDGE_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[... {len(text) - limit} more characters not shown to the judge]"


def model_key(model: ModelSpec) -> str:
    return model.model_dump_json()


class _Reply(NamedTuple):
    """One judge reply: its text, or why there is none; a likelihood judge's probabilities."""

    text: str
    error: str | None
    probs: dict[str, float] | None = None


def _single_likelihood(probs: dict[str, float], threshold: float, text: str) -> ScoreResult:
    """A likelihood judge's grade: P(PASS) is the score, passing at ``threshold``."""
    score = probs["PASS"]
    return ScoreResult(score >= threshold, score, text)


def _pair_row(
    case: NumberedCase, verdict: str | None, consistent: bool | None, details: dict[str, Any]
) -> Row:
    return dict(
        kind="pair",
        run_id="",
        case_index=case.index,
        verdict=verdict,
        consistent=consistent,
        details=details,
        human=case.case.human.upper() if case.case.human else None,
    )
