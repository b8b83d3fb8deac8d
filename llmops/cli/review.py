"""``llmops review ...``: human review of answers: items from eval runs or shadow pairs, the
queue, labels, agreement, a ranking of models, exports (JSONL, DPO) and labels written back to
an eval run."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from llmops.cli._common import JsonOpt, emit_json, output_path, print_table, table, workspace

app = typer.Typer(
    help="Human review: pairwise and single-answer labels, agreement, rankings, exports.",
    no_args_is_help=True,
)


def _shown(text: object) -> str:
    """Text from models or reviewers, safe for a terminal: no control characters (escape
    sequences) and no rich markup."""
    import unicodedata

    from rich.markup import escape

    clean = "".join("?" if unicodedata.category(c).startswith("C") else c for c in str(text))
    return escape(clean)


ReviewerOpt = Annotated[
    str | None,
    typer.Option("--reviewer", help="Who is labelling (default: $LLMOPS_USER or your login)."),
]


@app.command("add")
def add_items(
    run: Annotated[str | None, typer.Option("--run", help="An eval run's cases.")] = None,
    shadow: Annotated[
        str | None, typer.Option("--shadow", help="A logical model's mirrored shadow pairs.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many.")] = 100,
    json_out: JsonOpt = False,
) -> None:
    """Queue items for review from an eval run (--run) or the gateway's shadow pairs (--shadow)."""
    from llmops.errors import InputError

    if (run is None) == (shadow is None):
        raise InputError("give exactly one of --run RUN_ID or --shadow LOGICAL_MODEL")
    reviews = workspace().reviews
    added = (
        reviews.from_run(run, limit=limit)
        if run
        else reviews.from_shadow(shadow or "", limit=limit)
    )
    if json_out:
        emit_json({"added": added})
        return
    typer.echo(f"queued {added} new item(s) for review")


@app.command("items")
def items(
    run: Annotated[str | None, typer.Option("--run", help="Only items of this eval run.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 100,
    json_out: JsonOpt = False,
) -> None:
    """List review items with their label counts."""
    found = workspace().reviews.items(run_id=run, limit=limit)
    if json_out:
        emit_json([i.to_json() for i in found])
        return
    t = table("item", "kind", "source", "models", "judge", "labels", keep=("item",))
    for i in found:
        models = _shown(" vs ".join(i.models))
        t.add_row(i.item, i.kind, i.source, models, _shown(i.judge or "-"), str(i.labels))
    print_table(t)


@app.command("queue")
def queue(
    reviewer: ReviewerOpt = None,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 20,
    json_out: JsonOpt = False,
) -> None:
    """Items the reviewer has not labelled yet, least labelled first."""
    ws = workspace()
    found = ws.reviews.queue(reviewer or ws.actor, limit=limit)
    if json_out:
        emit_json([i.to_json() for i in found])
        return
    for i in found:
        typer.echo(f"{i.item}  {i.kind}  {_shown(' vs '.join(i.models))}  ({i.labels} label(s))")


@app.command("label")
def label(
    item: Annotated[str, typer.Argument(help="The item id (rev-...).")],
    choice: Annotated[
        str, typer.Argument(help="A, B, tie or both_bad (pairwise); pass or fail (single).")
    ],
    reviewer: ReviewerOpt = None,
    comment: Annotated[str, typer.Option("--comment", help="Why (optional).")] = "",
    json_out: JsonOpt = False,
) -> None:
    """Label an item (A and B name its answers in stored order)."""
    ws = workspace()
    saved = ws.reviews.add(item, choice, reviewer or ws.actor, comment=comment)
    if json_out:
        emit_json(saved.to_json())
        return
    typer.echo(f"{_shown(saved.reviewer)} labelled {saved.item}: {saved.choice}")


@app.command("export")
def export(
    fmt: Annotated[
        str, typer.Option("--format", help="jsonl (labels with items) or dpo (preference rows).")
    ] = "jsonl",
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="File (else stdout).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Export labels as JSONL (or DPO rows: prompt, chosen, rejected); --json: one list."""
    from llmops.errors import InputError

    if fmt not in ("jsonl", "dpo"):
        raise InputError(f"--format {fmt!r} is not one of: jsonl, dpo")
    reviews = workspace().reviews
    rows = reviews.export() if fmt == "jsonl" else reviews.preferences()
    if json_out:
        emit_json(list(rows))
        return
    target = output_path(output) if output else None
    stream = target.open("w", encoding="utf-8") if target else sys.stdout
    try:
        for row in rows:
            stream.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    finally:
        if target:
            stream.close()


@app.command("agreement")
def agreement_cmd(
    run: Annotated[str | None, typer.Option("--run", help="Only items of this eval run.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Agreement among reviewers (Krippendorff's alpha) and of the judge with their majority."""
    found = workspace().reviews.agreement(run_id=run)
    data = found.to_json()
    if json_out:
        emit_json(data)
        return
    alpha = "n/a (no item has two labels)" if data["alpha"] is None else f"{data['alpha']:.3f}"
    typer.echo(
        f"{data['labels']} label(s) on {data['items']} item(s) by {data['reviewers']}"
        f" reviewer(s); Krippendorff's alpha {alpha}"
    )
    if data["judge"]:
        j = data["judge"]
        typer.echo(
            f"judge vs reviewers' majority: agreement {j['agreement']:.2f},"
            f" Cohen's kappa {j['kappa']:.2f} over {j['n']} item(s)"
        )


@app.command("ranking")
def ranking(json_out: JsonOpt = False) -> None:
    """Rank the compared models from pairwise labels (Bradley–Terry, bootstrap intervals)."""
    found = workspace().reviews.ranking()
    if json_out:
        emit_json(found.to_json())
        return
    if found.groups > 1:
        typer.echo(
            f"warning: the labels link the models in {found.groups} separate groups: models"
            " of different groups never met, and their order says nothing",
            err=True,
        )
    t = table("rank", "model", "strength", "95% interval", "W/L/T", keep=("model",))
    for m in found.models:
        t.add_row(
            str(m.rank),
            _shown(m.model),
            f"{m.strength:.2f}",
            f"{m.low:.2f}-{m.high:.2f}",
            f"{m.wins}/{m.losses}/{m.ties}",
        )
    print_table(t)


@app.command("apply")
def apply(
    run: Annotated[str, typer.Argument(help="The eval run whose cases get the labels.")],
    json_out: JsonOpt = False,
) -> None:
    """Write the reviewers' majority onto an eval run's cases as their human labels."""
    changed = workspace().reviews.apply(run)
    if json_out:
        emit_json({"run_id": run, "labelled": changed})
        return
    typer.echo(f"{changed} case(s) of {run} now carry the reviewers' label")
