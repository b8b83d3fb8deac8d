"""The dashboard in headless Chromium: `llmops app` on 127.0.0.1, the compare page from a deep
link and the review queue, checked for what they show and saved as screenshots (under
$LLMOPS_TEST_ARTIFACTS when set, as CI does). A label picked with its keyboard shortcut lands
in the registry.

Skipped without Playwright or a system Chromium (scripts/chromium.sh installs Debian's), except
where LLMOPS_REQUIRE_BROWSER=1 (as in CI), where it fails instead."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.app.browser import browser, chromium_path, dashboard, open_page, settle
from tests.app.conftest import FIXED, REGRESSED

pytestmark = pytest.mark.slow


@pytest.fixture
def chromium() -> str:
    required = os.environ.get("LLMOPS_REQUIRE_BROWSER") == "1"
    path = chromium_path()
    try:
        import playwright  # noqa: F401
    except ImportError:
        path = None
    if path is None:
        if required:
            pytest.fail("LLMOPS_REQUIRE_BROWSER=1 but Playwright or Chromium is missing")
        pytest.skip("needs Playwright and a system Chromium (bash scripts/chromium.sh)")
    return path


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("LLMOPS_TEST_ARTIFACTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_compare_and_review_in_chromium(
    full_ws: dict[str, Any], chromium: str, artifacts: Path
) -> None:
    ws, a, b = full_ws["ws"], full_ws["a"], full_ws["b"]
    with dashboard(full_ws["root"]) as url, browser(chromium) as chrome:
        page, _ = open_page(chrome, f"{url}/?page=compare&a={a}&b={b}", "Compare eval runs")
        body = page.inner_text("body")
        assert a in body and b in body
        assert "-0.075" in body and "2 / 33 / 5" in body
        assert f"{len(REGRESSED)} / {len(FIXED)}" in body  # the flips metric
        assert "exact McNemar p = 0.453" in body
        assert "40 case(s) match; page 1 of 2" in body
        page.screenshot(path=str(artifacts / "compare.png"), full_page=True)
        # the URL the page settled on opens the same comparison for a colleague
        assert f"a={a}" in page.url and f"b={b}" in page.url

        page, _ = open_page(chrome, f"{url}/?page=review", "Human review")
        body = page.inner_text("body")
        assert "Answer 1" in body and "Answer 2" in body and "0 label(s) so far" in body
        page.screenshot(path=str(artifacts / "review.png"), full_page=True)
        first = ws.reviews.queue("tester", limit=1)[0]
        page.mouse.click(5, 5)  # focus the page, not an input
        page.keyboard.press("3")  # tie
        page.get_by_text(f"Saved tie for {first.item}").wait_for(timeout=30_000)
        settle(page, "Human review")
    labels = list(ws.reviews.labels(item=first.item))
    assert [(x.choice, x.reviewer) for x in labels] == [("tie", "tester")]
    assert (artifacts / "compare.png").stat().st_size > 10_000
