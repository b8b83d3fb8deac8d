"""Two eval runs side by side: per target, paired statistics over the cases both ran (matched
by case id, else by variables), the cases whose verdict changed, and warnings when the runs are
not like for like (another suite, other cases, another judge, or a target that ran another
model), since a difference then need not come from what the user changed."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from llmops.evals.stats import mcnemar, paired

if TYPE_CHECKING:
    from llmops.evals.records import EvalRunRecord
    from llmops.evals.results import EvalRuns

__all__ = ["case_ident", "case_key", "compare_runs", "differences"]


def case_ident(case_id: str | None, variables: dict[str, Any]) -> str:
    """What matches a case across runs: its id, else its variables as canonical JSON."""
    return case_id or json.dumps(variables, sort_keys=True, ensure_ascii=False)


def case_key(result: dict[str, Any]) -> tuple[str, str]:
    """``(case identity, target)`` of a result (see :func:`case_ident`)."""
    return case_ident(result["case_id"], result["vars"]), result["target"]


def compare_runs(runs: EvalRuns, a: str, b: str) -> dict[str, Any]:
    """Run ``b`` against run ``a``: ``{"a", "b", "warnings", "targets", "changed"}``."""
    ra, rb = runs.get(a), runs.get(b)
    keyed_a = {case_key(r): r for r in runs.results(a)}
    keyed_b = {case_key(r): r for r in runs.results(b)}
    out: dict[str, Any] = {
        "a": ra.run_id,
        "b": rb.run_id,
        "warnings": differences(
            ra, rb, runs.suite_of(a), runs.suite_of(b), set(keyed_a), set(keyed_b)
        ),
        "targets": [],
        "changed": [],
    }
    for target in [t for t in rb.targets if t in ra.targets]:
        keys = sorted(
            k
            for k in keyed_a.keys() & keyed_b.keys()
            if k[1] == target
            and keyed_a[k]["passed"] is not None
            and keyed_b[k]["passed"] is not None
        )
        stats = paired(
            [float(keyed_a[k]["score"] or 0) for k in keys],
            [float(keyed_b[k]["score"] or 0) for k in keys],
        )
        pass_to_fail = sum(1 for k in keys if keyed_a[k]["passed"] and not keyed_b[k]["passed"])
        fail_to_pass = sum(1 for k in keys if keyed_b[k]["passed"] and not keyed_a[k]["passed"])
        out["targets"].append({
            "name": target, **stats.to_json(), "verdict": stats.verdict(),
            "pass_to_fail": pass_to_fail, "fail_to_pass": fail_to_pass,
            "p_mcnemar": mcnemar(pass_to_fail, fail_to_pass),
        })  # fmt: skip
        for k in keys:
            if keyed_a[k]["passed"] != keyed_b[k]["passed"]:
                out["changed"].append(
                    {
                        "target": target,
                        "case": keyed_b[k]["case_id"] or keyed_b[k]["case_index"],
                        "vars": keyed_b[k]["vars"],
                        "a_passed": keyed_a[k]["passed"],
                        "b_passed": keyed_b[k]["passed"],
                        "a_output": keyed_a[k]["output"][:500],
                        "b_output": keyed_b[k]["output"][:500],
                    }
                )
    return out


def differences(
    a: EvalRunRecord,
    b: EvalRunRecord,
    suite_a: dict[str, Any],
    suite_b: dict[str, Any],
    cases_a: set[tuple[str, str]],
    cases_b: set[tuple[str, str]],
    *,
    targets: bool = True,
) -> list[str]:
    """Why two runs may not be like for like, one sentence each (empty when they are);
    ``targets=False`` leaves out the targets' differences (for comparing two named targets)."""
    found: list[str] = []
    if a.suite_digest != b.suite_digest:
        same_name = "" if a.suite_name == b.suite_name else f" ({a.suite_name} vs {b.suite_name})"
        found.append(
            f"the runs used different suites or cases files{same_name}: "
            f"{a.suite_digest[:19]} vs {b.suite_digest[:19]}"
        )
    only_a = {k[0] for k in cases_a - cases_b}
    only_b = {k[0] for k in cases_b - cases_a}
    if only_a or only_b:
        found.append(
            f"{len(only_a)} case(s) ran only in {a.run_id} and {len(only_b)} only in {b.run_id}"
            " (the statistics use the cases both ran)"
        )
    if suite_a.get("judge") != suite_b.get("judge"):
        found.append("the judge differs (model, prompt or settings): verdicts may not compare")
    for target in sorted(set(a.targets) ^ set(b.targets)) if targets else []:
        where = a.run_id if target in a.targets else b.run_id
        found.append(f"target {target!r} ran only in {where}")
    for target in [t for t in b.targets if t in a.targets] if targets else []:
        ma, mb = a.models.get(target), b.models.get(target)
        if ma and mb and ma != mb:
            found.append(f"target {target!r} ran another model: {_model(ma)} vs {_model(mb)}")
    options_a, options_b = _selection(a), _selection(b)
    if options_a != options_b:
        found.append(f"the runs selected cases differently: {options_a} vs {options_b}")
    return found


def _model(identity: dict[str, Any]) -> str:
    name = identity.get("ref") or identity.get("name") or "?"
    digest = identity.get("digest")
    adapter = identity.get("adapter_ref") or identity.get("adapter")
    text = f"{name} ({digest[:19]})" if digest else str(name)
    if adapter:
        adapter_digest = identity.get("adapter_digest")
        text += f" + {adapter}" + (f" ({adapter_digest[:19]})" if adapter_digest else "")
    if identity.get("api_base"):
        text += f" at {identity['api_base']}"
    return text


def _selection(run: EvalRunRecord) -> dict[str, Any]:
    return {k: run.options.get(k) for k in ("filter", "limit", "repeat") if run.options.get(k)}
