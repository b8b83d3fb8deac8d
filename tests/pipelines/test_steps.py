"""The built-in step kinds through a pipeline: prompts (pushed and labelled), the data gate,
an eval run against the library's scripted server with a pass-rate floor, and a promotion
through the model's policy; each keyed on what it reads. Training runs in tests/train and the
main job (its step calls ``ws.train`` with the recipe)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmops import Workspace
from llmops.evals.testing import MockServer
from tests.evals.conftest import default_responder, write_suite
from tests.registry.conftest import model_folder
from tests.train.conftest import chat_rows, write_jsonl


@pytest.fixture
def server() -> Iterator[MockServer]:
    with MockServer(default_responder) as s:
        yield s


def test_prompts_and_data_steps(ws_root: Path) -> None:
    write_jsonl(ws_root / "data" / "chat.jsonl", chat_rows(30))
    bad = [*chat_rows(5), {"messages": []}, {"text": "no messages"}]
    write_jsonl(ws_root / "data" / "bad.jsonl", bad)
    (ws_root / "pipeline.yaml").write_text("""\
steps:
  - {step: prompts, params: {labels: {summarize: production}}}
  - {step: data, params: {path: data/chat.jsonl, format: chat}}
  - {name: bad-data, step: data, params: {path: data/bad.jsonl}}
""", encoding="utf-8")  # fmt: skip
    ws = Workspace.open(ws_root)
    run = ws.run_pipeline()
    assert run.status == "failed"
    prompts = run.step("prompts")
    assert prompts.status == "ran" and prompts.outputs["versions"]["summarize"] == "summarize@1"
    assert ws.prompts.get("summarize", label="production").version == 1
    data = run.step("data")
    assert data.status == "ran" and data.outputs["rows"] == 30
    assert data.outputs["fingerprint"].startswith("blake3:")
    failed = run.step("bad-data")
    assert failed.status == "failed" and "the data gate failed: schema" in str(failed.error)
    # a new prompt version: only the prompts step runs again
    path = ws_root / "prompts" / "summarize.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("never add facts.", "be brief."),
                    encoding="utf-8")  # fmt: skip
    again = ws.run_pipeline()
    assert again.step("prompts").status == "ran" and again.step("data").status == "cached"
    assert again.step("prompts").outputs["versions"]["summarize"] == "summarize@2"
    assert ws.prompts.get("summarize", label="production").version == 2
    ws.close()


def test_eval_and_promote_steps(ws_root: Path, tmp_path: Path, server: MockServer) -> None:
    suite = write_suite(ws_root, server.url)  # 3 of 4 cases pass
    ws = Workspace.open(ws_root)
    ws.artifacts.push(model_folder(tmp_path / "a", 1), name="tuned", kind="adapter")
    (ws_root / "pipeline.yaml").write_text(f"""\
steps:
  - {{name: eval, step: eval, params: {{suite: {suite.name}, min_pass_rate: {{model: 0.5}}}}}}
  - {{name: strict, step: eval, params: {{suite: {suite.name}, min_pass_rate: {{model: 0.9}}}}}}
  - name: promote
    step: promote
    needs: [eval]
    params: {{model: tuned@1, alias: staging}}
""", encoding="utf-8")  # fmt: skip
    run = ws.run_pipeline()
    ev = run.step("eval")
    assert ev.status == "ran" and ev.outputs["pass_rate"] == {"model": 0.75}
    assert ws.eval_runs.get(ev.outputs["run_id"]).status == "completed"
    strict = run.step("strict")
    assert strict.status == "failed" and "model 75% < 90%" in str(strict.error)
    promote = run.step("promote")
    assert promote.status == "ran" and promote.outputs["promoted"] is True
    assert ws.models.get("tuned@staging").version == 1
    # nothing it reads changed: both reused
    second = ws.run_pipeline()
    assert second.step("eval").status == "cached" and second.step("promote").status == "cached"
    # a suite edit (a new case) reruns the eval and, on its new evidence, the promotion
    suite.write_text(suite.read_text(encoding="utf-8") + "  - vars: {country: Chile}\n",
                     encoding="utf-8")  # fmt: skip
    third = ws.run_pipeline()
    assert third.step("eval").status == "ran" and third.step("promote").status == "ran"
    assert json.dumps(third.to_json())  # the record is plain JSON
    ws.close()


def test_a_refused_promotion_fails_unless_optional(ws_root: Path, tmp_path: Path) -> None:
    ws = Workspace.open(ws_root)
    ws.artifacts.push(model_folder(tmp_path / "a", 1), name="tuned", kind="adapter")
    (ws_root / "policies").mkdir()
    (ws_root / "policies" / "tuned.yaml").write_text(
        "guards: [production]\napprovals: {count: 1, allow_self: false}\n", encoding="utf-8"
    )
    (ws_root / "pipeline.yaml").write_text("""\
steps:
  - {name: prod, step: promote, params: {model: tuned@1, alias: production}}
  - {name: maybe, step: promote, params: {model: tuned@1, alias: production, required: false}}
""", encoding="utf-8")  # fmt: skip
    run = ws.run_pipeline()
    assert run.step("prod").status == "failed" and "approvals" in str(run.step("prod").error)
    maybe = run.step("maybe")
    assert maybe.status == "ran" and maybe.outputs["promoted"] is False
    assert maybe.outputs["unmet"] == ["approvals"]
    ws.close()


def test_an_eval_step_can_test_the_adapter_just_trained(ws_root: Path) -> None:
    from llmops.pipelines.steps import EvalParams, StepContext, _suite

    ws = Workspace.open(ws_root)
    ctx = StepContext(ws=ws, folder=ws_root, name="eval")
    plain = _suite(ctx, EvalParams(suite="evals/pirate-style.yaml"))
    pinned = _suite(ctx, EvalParams(suite="evals/pirate-style.yaml", adapter="pirate@7"))
    adapters = {t.name: t.model.adapter for t in pinned.suite.targets}
    assert adapters == {"base": None, "pirate-lora": "pirate@7"}  # only targets with one
    assert {t.name: t.model.adapter for t in plain.suite.targets}["pirate-lora"] == (
        "smollm2-pirate-lora"
    )
    assert pinned.digest != plain.digest and pinned.name == plain.name
    ws.close()


def test_an_eval_step_reports_its_judge_and_the_judges_agreement_with_people(
    ws_root: Path, tmp_path: Path
) -> None:
    """A judge that always names the first answer shown is position-biased: every pair is a
    tie, it agrees with no human label, and the step says it is weak (and why)."""
    from tests.evals.conftest import is_judge, user_text
    from tests.evals.test_judge import pair_targets

    def respond(body: dict[str, object]) -> str:
        return "A" if is_judge(body) else ("Paris" if "formal" in user_text(body) else "?")

    with MockServer(respond) as server:
        suite = write_suite(
            ws_root,
            server.url,
            targets=pair_targets(server.url),
            cases="\n  - {vars: {country: France}, human: B}\n"
            "  - {vars: {country: Spain}, human: B}\n",
            extra="judge: {mode: pairwise, method: likelihood,"
            f' model: {{provider: openai, name: j, api_base: "{server.url}"}}}}\n',
        )
        (ws_root / "pipeline.yaml").write_text(
            f"steps:\n  - {{name: eval, step: eval, params: {{suite: {suite.name}}}}}\n",
            encoding="utf-8",
        )
        ws = Workspace.open(ws_root)
        lines: list[str] = []
        try:
            run = ws.run_pipeline(log=lines.append)
        finally:
            ws.close()
    step = run.step("eval")
    assert step.status == "ran", step.error
    assert step.outputs["judge_wins"] == {"plain": 0, "formal": 0}
    assert step.outputs["judge_kappa_pairwise"] == 0.0
    text = "\n".join(lines)
    assert "judge (pairwise): wins plain 0, formal 0, ties 2" in text
    assert "position consistency 0.00" in text
    assert "judge vs human labels (pairwise): agrees on 0 of 2" in text
    assert "a weak judge" in text
