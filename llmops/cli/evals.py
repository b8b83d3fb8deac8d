"""``llmops eval ...``: run suites, inspect and compare runs, gate CI, export results."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from llmops.cli._common import (
    JsonOpt,
    console,
    emit_json,
    output_path,
    print_table,
    table,
    workspace,
)

if TYPE_CHECKING:
    from llmops.evals.records import EvalRunRecord
    from llmops.evals.runner import EvalOutcome
    from llmops.workspace import Workspace

app = typer.Typer(
    help="Evaluation: suites, judged runs, comparisons and CI gates.", no_args_is_help=True
)

RunArg = Annotated[str, typer.Argument(help="Eval run id (eval-...), or latest.")]


def _printable(text: str) -> str:
    """Model text for the terminal: control characters (escape sequences that would retitle,
    clear or recolour it) shown as U+FFFD."""
    return "".join(c if c.isprintable() else "\ufffd" for c in text)


def _fmt(value: Any, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def _print_summary(record: EvalRunRecord) -> None:
    out = console()
    out.print(
        f"eval run {record.run_id}: {record.cases} cases, {record.errors} errors "
        f"({record.suite_name}, {record.status})"
    )
    summary = record.summary_model
    if summary is None:
        return
    rows = table(
        "target", "pass rate [95% CI]", "mean score [95% CI]", "errors", "cost", keep=("target",)
    )

    def ci(mean: float | None, low: float | None, high: float | None) -> str:
        return f"{_fmt(mean, '.2f')} [{_fmt(low, '.2f')}, {_fmt(high, '.2f')}]"

    for t in summary.targets:
        rows.add_row(
            t.name,
            ci(t.pass_rate, t.pass_rate_ci_low, t.pass_rate_ci_high),
            ci(t.mean_score, t.ci_low, t.ci_high),
            str(t.errors),
            f"${t.cost:.4f}",
        )
    print_table(rows)
    for c in summary.comparisons or []:
        p = c.paired()
        out.print(
            f"{p.verdict(a=c.a, b=c.b)}; {c.b} wins {c.wins}, loses {c.losses}, ties {c.ties}"
            f" against {c.a} (win rate {_fmt(p.win_rate, '.2f')})"
        )
    if summary.pairwise is not None:
        pw = summary.pairwise
        out.print(
            f"pairwise: wins {pw.wins}, ties {pw.ties}, judge errors {pw.judge_errors},"
            f" position consistency {_fmt(summary.position_consistency, '.2f')},"
            f" sign test p={pw.p_sign:.3g}"
        )
    for kind, cal in (summary.calibration or {}).items():
        out.print(
            f"calibration ({kind}): agreement {_fmt(cal['agreement'], '.2f')}, "
            f"Cohen's kappa {_fmt(cal['kappa'], '.2f')} over {cal['n']} labels"
        )


@app.command("run")
def run(
    suites: Annotated[
        list[str], typer.Argument(help="Suite YAML files (or promptfooconfig.yaml): one run each.")
    ],
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", "-j", min=1, help="Model calls in flight.")
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Call models even for requests answered before.")
    ] = False,
    case_filter: Annotated[
        str | None,
        typer.Option("--filter", help="Only cases whose id, description or vars match this regex."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", help="At most this many cases (after --filter).")
    ] = None,
    repeat: Annotated[
        int, typer.Option("--repeat", help="Run each case N times (fresh samples).")
    ] = 1,
    resume: Annotated[
        str | None,
        typer.Option("--resume", help="Continue a killed run by its id (with its own options)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Run suites: every case against every target, scored, stored, summarised; exit 1 when
    every case of a target errored in any of them."""
    from llmops.errors import InputError

    if resume and len(suites) > 1:
        raise InputError("--resume continues one run: give the one suite it ran")
    ws = workspace()
    if len(suites) > 1:  # every suite and the selection are checked before any of them runs
        _check_suites(ws, suites, case_filter, limit, repeat)
    outcomes, failed = [], []
    for suite in suites:
        outcome = ws.evaluate(
            suite, concurrency=concurrency, no_cache=no_cache, filter=case_filter, limit=limit,
            repeat=repeat, resume=resume, live=not json_out and sys.stderr.isatty(),
        )  # fmt: skip
        outcomes.append(outcome)
        if not json_out:
            _print_outcome(outcome)
        if outcome.failed_targets:
            failed.append(outcome)
            typer.echo(
                f"every case of target(s) {', '.join(outcome.failed_targets)} errored; nothing"
                f" was graded (details: llmops eval show {outcome.run.run_id})",
                err=True,
            )
    if json_out:
        data = [o.to_json() for o in outcomes]
        emit_json(
            data[0] if len(data) == 1 else {"runs": data, "failed": [o.run_id for o in failed]}
        )
    elif len(outcomes) > 1:
        out = console()
        out.print(f"\n{len(outcomes)} suites:")
        for o in outcomes:
            mark = "FAILED" if o in failed else "ok"
            rates = ", ".join(
                f"{t.name} {_fmt(t.pass_rate, '.2f')}"
                for t in (o.summary.targets if o.summary else [])
            )
            out.print(f"  {mark:<6} {o.run_id}  {o.run.suite_name}  {rates}")
    if failed:
        raise typer.Exit(1)


def _check_suites(
    ws: Workspace, suites: list[str], case_filter: str | None, limit: int | None, repeat: int
) -> None:
    from llmops.errors import SuiteError
    from llmops.evals.selection import CaseSelection
    from llmops.evals.suite import iter_cases, load_suite
    from llmops.refs import local_path

    selection = CaseSelection(case_filter, limit, repeat)
    for suite in suites:
        loaded = load_suite(local_path(suite, ws.root))
        if next(selection.apply(iter_cases(loaded)), None) is None:
            raise SuiteError(f"no case matches the selection {selection.to_json()}", path=suite)


def _print_outcome(outcome: EvalOutcome) -> None:
    _print_summary(outcome.run)
    options = {k: v for k, v in outcome.run.options.items() if v not in (None, False, 1)}
    cache = (
        "off (--no-cache)" if outcome.run.options.get("no_cache") else f"{outcome.cache_hits} hits"
    )
    console().print(
        f"{outcome.calls} model calls, cache {cache}, {outcome.retries} retries,"
        f" {outcome.seconds:.2f} s" + (f"; options {options}" if options else "")
    )
    for kind in outcome.error_kinds[:5]:
        typer.echo(f"error ({kind['count']} cases): {kind['example']}", err=True)


@app.command("show")
def show(
    run_id: RunArg,
    limit: Annotated[int, typer.Option("--limit", help="Cases to print (text mode).")] = 20,
    json_out: JsonOpt = False,
) -> None:
    """A run's summary and per-case results (vars, output, passed, score, reasons)."""
    ws = workspace()
    record = ws.eval_runs.get(run_id)
    run_id = record.run_id  # `latest` stays the run it was when the command started
    if json_out:
        emit_json(
            {
                **record.to_json(),
                "results": list(ws.eval_runs.results(run_id)),
                "pairs": ws.eval_runs.pairs(run_id),
            }
        )
        return
    _print_summary(record)
    out = console()
    for i, r in enumerate(ws.eval_runs.results(run_id)):
        if i >= limit:
            out.print(f"... (--limit {limit}; --json for all)")
            break
        mark = "ERROR" if r["passed"] is None else "pass " if r["passed"] else "FAIL "
        text = _printable(r["output"].replace("\n", " ")[:100])
        out.print(f"{mark} #{r['case_index']} {r['target']}: {text}", markup=False)
        if r["error"]:
            out.print(f"       {_printable(r['error'][:200])}", markup=False)
        elif r["passed"] is False:
            for a in r["assertions"]:
                if a.get("passed") is False:
                    reason = _printable(" ".join(str(a.get("reason") or "").split())[:200])
                    out.print(f"       {a.get('type', 'assertion')}: {reason}", markup=False)


@app.command("list")
def list_runs(
    limit: Annotated[int, typer.Option("--limit", min=1)] = 50, json_out: JsonOpt = False
) -> None:
    """Eval runs, newest first."""
    runs = workspace().eval_runs.list(limit=limit)
    if json_out:
        emit_json([r.to_json() for r in runs])
        return
    for r in runs:
        rates = ", ".join(
            f"{t['name']} {_fmt(t.get('pass_rate'), '.2f')}"
            for t in (r.summary or {}).get("targets", [])
        )
        typer.echo(f"{r.run_id}  {r.status:<9}  {r.suite_name}  {r.cases} cases  {rates}")


@app.command("compare")
def compare(
    a: Annotated[str, typer.Argument(help="Baseline run.")],
    b: Annotated[str, typer.Argument(help="Candidate run.")],
    json_out: JsonOpt = False,
) -> None:
    """Per-case differences and paired statistics of run B against run A."""
    data = workspace().eval_runs.compare(a, b)
    if json_out:
        emit_json(data)
        return
    for warning in data["warnings"]:
        typer.echo(f"warning: {warning}", err=True)
    out = console()
    for t in data["targets"]:
        out.print(
            f"{t['name']}: {t['verdict']}; B wins {t['wins']}, loses {t['losses']}, "
            f"ties {t['ties']} over {t['n']} cases; flips pass->fail {t['pass_to_fail']}, "
            f"fail->pass {t['fail_to_pass']} (McNemar p={t['p_mcnemar']:.2g})"
        )
    for c in data["changed"][:50]:
        was = "pass" if c["a_passed"] else "fail"
        now = "pass" if c["b_passed"] else "fail"
        out.print(f"  {c['target']} case {c['case']}: {was} -> {now}  {c['b_output'][:80]!r}")


@app.command("gate")
def gate(
    run_id: RunArg,
    baseline: Annotated[
        str | None, typer.Option("--baseline", help="Run to compare against.")
    ] = None,
    max_drop: Annotated[
        float, typer.Option("--max-drop", help="Largest allowed pass-rate drop vs the baseline.")
    ] = 0.0,
    min_pass_rate: Annotated[float | None, typer.Option("--min-pass-rate")] = None,
    max_errors: Annotated[
        int,
        typer.Option(
            "--max-errors", min=0, help="Errored cases allowed per target (default: none)."
        ),
    ] = 0,
    json_out: JsonOpt = False,
) -> None:
    """Exit 1 when the run regressed against the baseline or misses a threshold."""
    report = workspace().eval_runs.gate(
        run_id,
        baseline=baseline,
        max_drop=max_drop,
        min_pass_rate=min_pass_rate,
        max_errors=max_errors,
    )
    if json_out:
        emit_json(report.to_json())
    else:
        for p in report.problems:
            typer.echo(f"regression: {p}", err=True)
        checks = f"baseline {baseline}, max drop {max_drop:g}" if baseline else "no baseline"
        if min_pass_rate is not None:
            checks += f", min pass rate {min_pass_rate:g}"
        typer.echo(
            f"gate {'passed' if report.ok else 'FAILED'} for {report.run_id}"
            f" ({checks}, at most {max_errors} errored case(s) per target)"
        )
    if not report.ok:
        raise typer.Exit(1)


@app.command("export")
def export(
    run_id: RunArg,
    fmt: Annotated[
        str, typer.Option("--format", help="jsonl, csv, parquet (needs -o) or junit.")
    ] = "jsonl",
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="File to write (default: stdout).")
    ] = None,
    json_out: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print a JSON report (with the exported text as `content` when no --output).",
        ),
    ] = False,
) -> None:
    """Write a run's results as JSONL, CSV, Parquet or JUnit XML."""
    from llmops._atomic import write_atomic
    from llmops.errors import InputError

    if fmt not in ("jsonl", "csv", "junit", "parquet"):
        raise InputError(f"unknown export format {fmt!r}", hint="use jsonl, csv, parquet or junit")
    runs = workspace().eval_runs
    run_id = runs.get(run_id).run_id  # `latest` as the run it names
    if output == "-":
        output = None
    if fmt == "parquet":
        from llmops.evals.export import write_parquet

        if output is None:
            raise InputError("--format parquet writes a file", hint="give --output FILE.parquet")
        path = write_parquet(runs, run_id, output_path(output))
    else:
        pieces = runs.export(run_id, fmt)  # type: ignore[arg-type]
        if output is None:
            if json_out:
                emit_json({"run_id": run_id, "format": fmt, "content": "".join(pieces)})
                return
            for piece in pieces:
                sys.stdout.write(piece)
            return
        path = write_atomic(output_path(output), pieces)
    if json_out:
        emit_json({"run_id": run_id, "format": fmt, "output": str(path),
                   "bytes": path.stat().st_size})  # fmt: skip
    else:
        typer.echo(f"wrote {path}", err=True)
