"""Whether a pipeline has anything new to do: what a cron job or a CI job on a push asks before
``llmops pipeline run`` (``--if-changed data``, or the pipeline's ``trigger:`` block).

A step has changed when the fingerprint of what it reads (a dataset's content, the prompt
files, a suite and its cases ...) or its parameters differ from those of the pipeline's last
completed run. With ``min_new_rows``, a ``data`` step counts as changed only once its dataset
has that many more rows than then ("retrain when enough new data arrived").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmops._display import Display
from llmops._record import Record
from llmops.errors import InputError

if TYPE_CHECKING:
    from llmops.pipelines.records import PipelineRunRecord
    from llmops.pipelines.spec import Pipeline
    from llmops.workspace import Workspace

__all__ = ["TriggerCheck", "check_trigger"]


@dataclass(frozen=True, slots=True, repr=False)
class TriggerCheck(Display, Record):
    """The answer: run or not, and why."""

    changed: bool
    reason: str
    since: str | None
    """The completed run compared against (None when there is none)."""

    _repr_fields = ("changed", "reason", "since")


def _rows(path: Any) -> int:
    from llmops.data.formats import read_rows

    return sum(1 for _ in read_rows(path))


def check_trigger(
    ws: Workspace, pipeline: Pipeline, steps: tuple[str, ...] = (), *, min_new_rows: int = 0
) -> TriggerCheck:
    """Whether any of ``steps`` (default: the ``trigger:`` block's, else every step) changed
    since the pipeline's last completed run.

    Raises:
        InputError: A step named is not in the pipeline.
    """
    trigger = pipeline.spec.trigger
    names = steps or (tuple(trigger.steps) if trigger and trigger.steps else pipeline.order)
    min_rows = min_new_rows or (trigger.min_new_rows if trigger else 0)
    for name in names:
        if name not in pipeline.order:
            raise InputError(f"--if-changed {name!r}: the pipeline has no such step",
                             hint=f"its steps: {', '.join(pipeline.order)}")  # fmt: skip
    last = ws.pipelines.last_completed_run(pipeline.name)
    if last is None:
        return TriggerCheck(True, "the pipeline has not completed yet", None)
    done = {s.name: s.outputs for s in last.steps}
    for name in names:
        why = _changed(ws, pipeline, name, last, done, min_rows)
        if why is not None:
            return TriggerCheck(True, why, last.run_id)
    return TriggerCheck(False, f"nothing changed since {last.run_id}", last.run_id)


def _changed(
    ws: Workspace, pipeline: Pipeline, name: str, last: PipelineRunRecord,
    done: dict[str, dict[str, Any]], min_rows: int,
) -> str | None:  # fmt: skip
    """Why step ``name`` changed since ``last``, or None."""
    from llmops.pipelines.runner import _Plan
    from llmops.pipelines.steps import StepContext

    step = pipeline.step(name)
    before = next((s for s in last.steps if s.name == name), None)
    if before is None or not before.inputs:
        return f"{name}: not run before"
    ctx = StepContext(ws=ws, folder=pipeline.folder, name=name,
                      upstream={n: done.get(n, {}) for n in step.needs})  # fmt: skip
    try:
        plan = _Plan(step, ctx, done)
    except Exception as exc:  # its inputs cannot even be read: let the run say why
        return f"{name}: {exc}"
    if plan.inputs["params"] != before.inputs.get("params"):
        return f"{name}: its parameters changed"
    if plan.inputs["fingerprint"] == before.inputs.get("fingerprint"):
        return None
    if step.step == "data" and min_rows:
        now, then = _rows(ctx.path(plan.params.path)), int(before.outputs.get("rows") or 0)
        # changed, but held until enough new rows arrived
        return f"{name}: {now - then} new rows (>= {min_rows})" if now - then >= min_rows else None
    return f"{name}: its inputs changed"
