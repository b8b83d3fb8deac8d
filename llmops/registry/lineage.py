"""Lineage: one query from a model version, a training run or an eval run to everything it came
from and went to, as nodes and edges.

From a model version: its parents (base model, dataset; recursively), the training run that made
it (metrics summary, environment) and that run's recipe (hash and resolved content), the eval
runs that tested it (by digest, with their headline numbers) and the prompt versions their
targets rendered, its promotions (who promoted and who approved) and the aliases pointing at
it. From a training run: its inputs and the versions it stored. From an eval run: the model
versions it tested and their lineage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlmodel import col

from llmops.db.models import Artifact, ArtifactVersionRow, EvalRun, EvalTarget, TrainingRun
from llmops.errors import ArtifactNotFoundError, InputError, NotFoundError
from llmops.registry.evidence import tested_in

if TYPE_CHECKING:
    from llmops.artifacts.store import ArtifactVersion
    from llmops.registry.models import ModelRegistry
    from llmops.train.runs import Runs

__all__ = ["Lineage", "dot", "lineage"]

_MAX_DEPTH = 8


@dataclass(slots=True)
class Lineage:
    """The graph: ``nodes`` (``{"kind", "id", ...}``) and ``edges`` (``{"from", "to",
    "relation"}``, from the upstream thing to the downstream one)."""

    root: str
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    edges: list[dict[str, str]] = field(default_factory=list)

    def node(self, kind: str, node_id: str, **data: Any) -> str:
        if node_id not in self.nodes:
            self.nodes[node_id] = {"kind": kind, "id": node_id, **data}
        return node_id

    def edge(self, source: str, target: str, relation: str) -> None:
        item = {"from": source, "to": target, "relation": relation}
        if item not in self.edges:
            self.edges.append(item)

    def to_json(self) -> dict[str, Any]:
        """``{"root", "nodes", "edges"}``."""
        return {"root": self.root, "nodes": list(self.nodes.values()), "edges": self.edges}

    def to_dot(self) -> str:
        """The graph as Graphviz DOT (what the dashboard draws; see :func:`dot`)."""
        return dot(self.to_json())


def lineage(registry: ModelRegistry, runs: Runs, ref: str) -> Lineage:
    """The lineage of ``ref``: ``name@version`` (or an alias), ``run-...`` or ``eval-...``.

    Raises:
        NotFoundError: Nothing has that name.
    """
    if ref.startswith("eval-"):
        graph = Lineage(registry.evals.get(ref).run_id)
        _eval_run(registry, graph, graph.root, with_models=True, runs=runs)
        return graph
    if ref.startswith("run-"):
        run = runs.get(ref)
        graph = Lineage(run.run_id)
        _training_run(registry, runs, graph, run.run_id)
        for out in (run.adapter_ref, run.merged_ref):
            if out:
                _downstream(registry, graph, registry.artifacts.get(out))
        return graph
    try:
        version = registry.artifacts.get(ref)
    except (ArtifactNotFoundError, InputError):
        raise NotFoundError(
            f"nothing named {ref!r}: not a model version, training run or eval run",
            hint="give NAME@VERSION, run-... or eval-...",
        ) from None
    graph = Lineage(version.ref)
    _upstream(registry, runs, graph, version, depth=0)
    _downstream(registry, graph, version)
    return graph


def _version_node(graph: Lineage, v: ArtifactVersion) -> str:
    return graph.node(v.kind, v.ref, digest=v.digest, name=v.name, version=v.version)


def _upstream(
    registry: ModelRegistry, runs: Runs, graph: Lineage, v: ArtifactVersion, *, depth: int
) -> None:
    me = _version_node(graph, v)
    if depth > _MAX_DEPTH:
        return
    run_id = v.meta.get("run_id")
    for parent_ref in v.parents:
        try:
            parent = registry.artifacts.get(parent_ref)
        except (ArtifactNotFoundError, InputError):
            graph.node("missing", parent_ref)
            graph.edge(parent_ref, me, "parent_of")
            continue
        _upstream(registry, runs, graph, parent, depth=depth + 1)
        if not run_id:
            graph.edge(parent.ref, me, "parent_of")
    if run_id:
        try:
            _training_run(registry, runs, graph, run_id)
        except NotFoundError:
            graph.node("run", run_id, missing=True)
        graph.edge(run_id, me, "produced")


def _training_run(registry: ModelRegistry, runs: Runs, graph: Lineage, run_id: str) -> None:
    run = runs.get(run_id)
    graph.node(
        "run",
        run.run_id,
        status=run.status,
        steps=run.step,
        final_loss=run.final_loss,
        metrics=run.final_metrics,
        started_at=run.started_at.isoformat(),
        environment={
            k: run.environment.get(k)
            for k in ("libraries", "git", "hardware")
            if k in run.environment
        },
    )
    recipe = graph.node("recipe", run.recipe_hash, name=run.recipe_name, content=run.recipe)
    graph.edge(recipe, run.run_id, "configured")
    inputs = [(run.base_model, "base-model"), (run.dataset_ref, "dataset")]
    for ref, kind in inputs:
        if not ref:
            continue
        try:
            found = registry.artifacts.get(ref)
            node = _version_node(graph, found)
        except (ArtifactNotFoundError, InputError):
            node = graph.node(kind, ref, local=True)
        graph.edge(node, run.run_id, "input_to")
    if run.dataset_fingerprint and not run.dataset_ref:
        data = graph.node("dataset", run.dataset_fingerprint, fingerprint=run.dataset_fingerprint)
        graph.edge(data, run.run_id, "input_to")


def _downstream(registry: ModelRegistry, graph: Lineage, v: ArtifactVersion) -> None:
    me = _version_node(graph, v)
    for tested in tested_in(registry.db, v.digest, kind=v.kind):
        _eval_run(registry, graph, tested.run_id, with_models=False)
        graph.edge(me, tested.run_id, "evaluated_in")
    for alias in v.aliases:
        node = graph.node("alias", f"{v.name}@{alias}", alias=alias)
        graph.edge(me, node, "held_by")
    count = 0
    for e in registry.history(v.name):
        if e.get("version") != v.version or e["action"] not in _DECISIONS:
            continue
        count += 1
        node = graph.node(
            "promotion",
            f"{v.ref}:{e['action']}:{count}",
            action=e["action"],
            at=e["at"],
            actor=e["actor"],
            alias=e.get("alias"),
            request_id=e.get("request_id"),
        )
        graph.edge(me, node, "decision")
    # Versions trained or merged from this one, from the training runs (a small table):
    # adapters a base model was fine-tuned into, the merged model an adapter became.
    with registry.db.read() as session:
        made = session.execute(
            select(
                col(TrainingRun.id), col(TrainingRun.adapter_ref), col(TrainingRun.merged_ref)
            ).where(
                (col(TrainingRun.base_model) == v.ref) | (col(TrainingRun.adapter_ref) == v.ref)
            )
        ).all()
    for run_id, adapter, merged in made:
        for child in (adapter, merged):
            if child and child != v.ref:
                graph.node("artifact", child, run=run_id)
                graph.edge(me, child, "parent_of")


_DECISIONS = frozenset(
    {
        "model.promotion.requested",
        "model.promotion.approved",
        "model.promotion.rejected",
        "model.promoted",
        "model.promotion.refused",
        "model.rollback",
    }
)


def _eval_run(
    registry: ModelRegistry,
    graph: Lineage,
    run_id: str,
    *,
    with_models: bool,
    runs: Runs | None = None,
) -> None:
    record = registry.evals.get(run_id)
    summary = record.summary or {}
    headline = {
        t["name"]: {k: t.get(k) for k in ("pass_rate", "mean_score", "errors")}
        for t in summary.get("targets", [])
    }
    graph.node(
        "eval-run",
        run_id,
        suite=record.suite_name,
        status=record.status,
        suite_digest=record.suite_digest,
        targets=headline,
    )
    with registry.db.read() as session:
        environment = session.scalar(
            select(col(EvalRun.environment)).where(col(EvalRun.id) == run_id)
        )
        indexed = session.execute(
            select(col(EvalTarget.digest)).where(col(EvalTarget.run_id) == run_id)
        ).all()
    for target, prompt in ((environment or {}).get("prompts") or {}).items():
        node = graph.node("prompt", prompt, target=target)
        graph.edge(node, run_id, "rendered_in")
    if not with_models or runs is None:
        return
    for (digest,) in indexed:
        with registry.db.read() as session:
            found = session.execute(
                select(col(Artifact.name), col(ArtifactVersionRow.version))
                .join(Artifact, col(Artifact.id) == col(ArtifactVersionRow.artifact_id))
                .where(col(ArtifactVersionRow.digest) == digest)
            ).first()
        if found is None:
            continue
        version = registry.artifacts.get(f"{found[0]}@{found[1]}")
        _upstream(registry, runs, graph, version, depth=0)
        graph.edge(version.ref, run_id, "evaluated_in")


_SHAPES = {
    "adapter": "box",
    "base-model": "box",
    "merged-model": "box",
    "run": "ellipse",
    "eval-run": "note",
    "dataset": "cylinder",
    "recipe": "component",
    "prompt": "tab",
    "promotion": "cds",
    "alias": "octagon",
    "missing": "plaintext",
}


def _label(node: dict[str, Any]) -> str:
    name = str(node["id"] if node["kind"] != "recipe" else node.get("name") or node["id"])
    return f"{node['kind'].replace('_', ' ')}\\n{name[:48]}"


_REPEAT = re.compile(r":\d+$")


def _quote(text: str) -> str:
    """Text for a quoted DOT label: backslashes and quotes escaped, line breaks kept as DOT's
    own ``\\n`` (names are untrusted)."""
    parts = [" ".join(p.split()) for p in text.split("\\n")]
    return "\\n".join(p.replace("\\", "\\\\").replace('"', '\\"') for p in parts)


def dot(graph: dict[str, Any]) -> str:
    """A lineage graph (:meth:`Lineage.to_json`) as Graphviz DOT: repeated decisions merged,
    untrusted names quoted."""
    # repeated decisions of one kind (a canary asking for a promotion each tick) draw as one
    # node with a count: ``<ref>:<action>:<n>`` ids share everything but the number
    same = {n["id"]: _REPEAT.sub("", n["id"]) for n in graph["nodes"]}
    counts: dict[str, int] = {}
    for merged in same.values():
        counts[merged] = counts.get(merged, 0) + 1
    ids = {merged: f"n{i}" for i, merged in enumerate(dict.fromkeys(same.values()))}
    lines = ["digraph lineage {", "rankdir=LR;", 'node [fontname="sans-serif", fontsize=10];']
    drawn: set[str] = set()
    for n in graph["nodes"]:
        merged = same[n["id"]]
        if merged in drawn:
            continue
        drawn.add(merged)
        shape = _SHAPES.get(n["kind"], "ellipse")
        style = ', style=filled, fillcolor="#e8f0fe"' if n["id"] == graph["root"] else ""
        times = f" ×{counts[merged]}" if counts[merged] > 1 else ""
        label = _quote(_label({**n, "id": merged}) + times)
        lines.append(f'{ids[merged]} [label="{label}", shape={shape}{style}];')
    edges = dict.fromkeys(
        (same[e["from"]], same[e["to"]], e["relation"])
        for e in graph["edges"]
        if e["from"] in same and e["to"] in same
    )
    for source, target, relation in edges:
        lines.append(f'{ids[source]} -> {ids[target]} [label="{_quote(relation)}", fontsize=8];')
    lines.append("}")
    return "\n".join(lines)
