"""Every dashboard page under streamlit's AppTest: the right numbers for a workspace built in a
fixture, filters, pagination, deep links, saving a review label, and friendly empty states."""

from __future__ import annotations

from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from tests.app.conftest import APP, FIXED, REGRESSED

PAGES = ("compare", "runs", "review", "prompts", "registry", "training", "deployments")


def page(name: str, **params: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params["page"] = name
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [s.value for s in at.subheader] + [w.value for w in at.warning]
    return "\n".join(str(p) for p in parts)


def test_compare_headline_and_flip_table(full_ws: dict[str, Any]) -> None:
    at = page("compare", a=full_ws["a"], b=full_ws["b"])
    shown = metrics(at)
    # 40 cases: B loses 5 (regressions) and wins 2 (fixes): mean difference -3/40
    assert shown["Score difference (B − A)"] == "-0.075"
    assert shown["B wins / ties / losses"] == "2 / 33 / 5"
    assert shown["Pass rate A → B"] == "92.5% → 85.0%"
    flips = at.dataframe[0].value
    assert flips.loc["A passed", "B failed"] == len(REGRESSED)
    assert flips.loc["A failed", "B passed"] == len(FIXED)
    assert flips.loc["A failed", "B failed"] == 1 and flips.loc["A passed", "B passed"] == 32
    text = texts(at)
    assert "exact McNemar p = 0.453" in text  # 2 of 7 discordant, two-sided
    assert full_ws["a"] in text and full_ws["b"] in text
    assert at.query_params["a"] == full_ws["a"] and at.query_params["b"] == full_ws["b"]


def test_compare_filters_and_pages(full_ws: dict[str, Any]) -> None:
    at = page("compare", a=full_ws["a"], b=full_ws["b"])
    cases = at.dataframe[1].value
    assert len(cases) == 25 and "40 case(s) match; page 1 of 2" in texts(at)
    at.number_input(key="page_no").set_value(2).run()
    assert list(at.dataframe[1].value["case"])[:2] == ["case-25", "case-26"]
    assert len(at.dataframe[1].value) == 15
    at.number_input(key="page_no").set_value(1)
    at.toggle(key="regressions").set_value(True).run()
    regressed = list(at.dataframe[1].value["case"])
    assert regressed == [f"case-{i:02d}" for i in REGRESSED]
    assert set(at.dataframe[1].value["B"]) == {"fail"}
    at.toggle(key="regressions").set_value(False)
    at.text_input(key="search").set_value("country15").run()
    assert list(at.dataframe[1].value["case"]) == ["case-15"]
    at.text_input(key="search").set_value("")
    at.text_input(key="var").set_value("region=asia").run()
    assert len(at.dataframe[1].value) == 20
    at.text_input(key="var").set_value("no equals sign").run()
    assert any("must look like NAME=VALUE" in w.value for w in at.warning)
    at.text_input(key="var").set_value("")
    at.text_input(key="meta").set_value("tags=hard").run()  # a tag: one item of a list
    assert list(at.dataframe[1].value["case"]) == [f"case-{i:02d}" for i in range(0, 40, 5)]
    assert "metadata: tags=['geo', 'hard'], source=atlas" in [t.value for t in at.text]
    at.text_input(key="meta").set_value("source=elsewhere").run()
    assert "No case matches these filters." in [i.value for i in at.info]
    at.text_input(key="meta").set_value("tags").run()
    assert any("metadata filter 'tags' must look like NAME=VALUE" in w.value for w in at.warning)


def test_a_deep_link_opens_the_case_with_both_outputs_and_reasons(full_ws: dict[str, Any]) -> None:
    at = page("compare", a=full_ws["a"], b=full_ws["b"], case="case-03")
    assert "**case case-03 · regressed**" in texts(at)
    reasons = "\n".join(
        "\n".join(d.value["reason"]) for d in at.dataframe if "reason" in d.value.columns
    )
    assert "no capital named" in reasons and "names the capital" in reasons
    codes = [c.value for c in at.code]
    assert any("Capital3 (a)" in c for c in codes) and any("Unknown3 (b)" in c for c in codes)
    picker = next(s for s in at.selectbox if s.label == "Case in full")
    picker.set_value(4).run()  # the fifth case of the page is shown in full, and linked
    assert "**case case-04 · same**" in texts(at) and at.query_params["case"] == "case-04"
    picker = next(s for s in at.selectbox if s.label == "Case in full")
    picker.set_value(3).run()
    at.radio(key="mode_case-03").set_value("word diff").run()
    diff = "\n".join(h.proto.body for h in at.get("html"))
    assert "<del" in diff and "Capital3" in diff and "<ins" in diff and "Unknown3" in diff


def test_compare_two_targets_of_one_run(full_ws: dict[str, Any]) -> None:
    run = full_ws["pairs"]
    at = page("compare", a=run, b=run, ta="base", tb="tuned")
    assert metrics(at)["B wins / ties / losses"] == "0 / 6 / 0"
    assert not at.warning
    bogus = page("compare", a=run, b=run, ta="base", tb="nope")
    assert any("Run B has no target 'nope' (from the link)" in w.value for w in bogus.warning)


def test_runs_page_lists_runs_and_shows_one(full_ws: dict[str, Any]) -> None:
    at = page("runs", run=full_ws["a"])
    listing = at.dataframe[0].value
    assert set(listing["run"]) >= {full_ws["a"], full_ws["b"], full_ws["pairs"]}
    assert "92.5%" in listing.set_index("run").loc[full_ws["a"], "pass rates [95% CI]"]
    assert at.selectbox(key="run").value == full_ws["a"]
    targets = at.dataframe[1].value
    assert targets.iloc[0]["graded"] == 40
    at.selectbox(key="run").set_value(full_ws["pairs"]).run()
    text = texts(at)
    assert "Pairwise judge" in text and "position consistency 100.0%" in text


def test_saving_a_review_label_and_the_numbers_it_moves(full_ws: dict[str, Any]) -> None:
    ws = full_ws["ws"]
    at = page("review")
    assert at.text_input(key="reviewer").value == "tester"
    item = ws.reviews.queue("tester", limit=1)[0]
    assert item.item in "\n".join(s.value for s in at.subheader)
    # "Answer 1" is whichever answer the reviewer sees first: pick it, and check what is stored
    at.button(key="pick_A").click().run()
    assert not at.exception
    (label,) = ws.reviews.labels(item=item.item)
    assert label.shown == item.shown
    assert label.choice == ("A" if item.shown == "AB" else "B")
    assert metrics(at)["Labels"] == "1"
    assert any(f"Saved {label.choice} for {item.item}" in s.value for s in at.success)
    nxt = ws.reviews.queue("tester", limit=1)[0]
    assert nxt.item in "\n".join(s.value for s in at.subheader)
    ranking = [d.value for d in at.dataframe if "strength" in d.value.columns]
    assert ranking and len(ranking[0]) == 2


def test_prompts_page_shows_versions_labels_and_the_diff(full_ws: dict[str, Any]) -> None:
    at = page("prompts", prompt=full_ws["prompt"])
    assert at.selectbox(key="prompt").value == full_ws["prompt"]
    versions = at.dataframe[1].value
    assert sorted(versions["version"]) == [1, 2]
    newest = versions.set_index("version").loc[2]
    assert newest["labels"] == "production" and newest["message"] == "second"
    diff = "\n".join(c.value for c in at.code)
    assert "\n-You route support" in diff and "\n+You truly route support" in diff


def test_registry_page_shows_versions_and_lineage(full_ws: dict[str, Any]) -> None:
    at = page("registry", model="support-lora")
    shown = metrics(at)
    assert shown["Version of support-lora"] == "@2"
    graph = at.get("graphviz_chart")
    assert graph and "base@1" in graph[0].proto.spec and "support-lora@2" in graph[0].proto.spec


def test_training_page_plots_curves(full_ws: dict[str, Any]) -> None:
    at = page("training")
    listing = at.dataframe[0].value
    assert listing.iloc[0]["run"] == "run-00000000beef" and listing.iloc[0]["steps"] == "4/4"
    charts = at.get("vega_lite_chart")
    assert len(charts) == 2, "one chart each for loss and learning rate"
    assert "loss" in str(charts[0].proto) and "learning rate" in str(charts[1].proto)


def test_deployments_page_shows_the_split_and_the_canary(full_ws: dict[str, Any]) -> None:
    at = page("deployments")
    text = texts(at)
    assert "support-bot" in text and "stable **support-lora@1**" in text
    assert "**Canary** support-lora@2 vs support-lora@1" in text


@pytest.mark.parametrize("name", PAGES)
def test_an_empty_workspace_gets_a_friendly_page(empty_ws: object, name: str) -> None:
    at = page(name)
    assert at.info and at.info[0].value.startswith("No ")
    assert "`llmops" in at.info[0].value


def test_no_workspace_at_all_says_how_to_make_one(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMOPS_WORKSPACE", str(tmp_path / "nowhere"))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    assert at.error and "No llmops workspace" in at.error[0].value


def test_untrusted_text_is_never_markdown_and_odd_case_ids_do_not_clash(
    empty_ws: Any,
) -> None:
    from llmops import Workspace
    from llmops.evals.testing import record_run

    evil = "![t](http://127.0.0.1:9/track.png)\n\n# heading $x$ <b>bold</b>"
    rows = [
        {"case_index": 0, "target": "m", "case_id": "3", "output": evil, "passed": True,
         "assertions": [{"type": "x`y", "passed": False, "reason": evil}]},
        {"case_index": 3, "target": "m", "output": "b", "passed": False},
    ]  # fmt: skip
    ws = Workspace.open(empty_ws)
    a = record_run(ws.eval_runs, rows, targets=("m",)).run_id
    b = record_run(ws.eval_runs, rows, targets=("m",)).run_id
    item = ws.reviews.add_single({"messages": [{"role": "user", "content": evil}]}, evil)
    ws.close()
    at = page("compare", a=a, b=b, case="3")
    markdown = "\n".join(m.value for m in at.markdown)
    assert "](http" not in markdown and "<b>" not in markdown
    at.radio(key="mode_3").set_value("word diff").run()
    assert not at.exception
    assert all("<b>" not in h.proto.body for h in at.get("html"))  # escaped in the diff
    review = page("review")
    assert item.item in "\n".join(s.value for s in review.subheader)
    assert "](http" not in "\n".join(m.value for m in review.markdown)
    review.text_input(key="reviewer").set_value("x" * 300).run()
    assert not review.exception and "printable characters" in review.error[0].value


def test_no_page_prints_a_stray_string() -> None:
    # streamlit's magic writes any bare string expression of a page script onto the page
    import ast

    for path in [*sorted(APP.parent.glob("views/*.py")), APP]:
        body = ast.parse(path.read_text(encoding="utf-8")).body
        stray = [n.lineno for n in body[1:] if isinstance(n, ast.Expr)
                 and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)]  # fmt: skip
        assert stray == [], f"{path.name}: bare strings at lines {stray} would show on the page"
