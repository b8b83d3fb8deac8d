"""The review and app commands: labels round-trip through `review export --json`, bad input is
one line with exit code 2, and `llmops app --port P` serves the dashboard on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from llmops import Workspace
from tests.cli.test_eval_cli import llmops


def test_a_pairwise_label_round_trips_through_export(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    ws = Workspace.init(root, examples=False)
    item = ws.reviews.add_pair("Which answer?", "one", "two", models=("base", "tuned"))
    ws.close()
    done = llmops("review", "label", item.item, "B", "--reviewer", "erin", "--json", cwd=root)
    assert done.returncode == 0, done.stderr
    out = llmops("review", "export", "--json", cwd=root)
    assert out.returncode == 0, out.stderr
    (row,) = json.loads(out.stdout)
    assert (row["item"], row["choice"], row["reviewer"]) == (item.item, "B", "erin")
    bad = llmops("review", "label", item.item, "maybe", "--reviewer", "erin", cwd=root)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "choice 'maybe' does not fit pairwise item" in bad.stderr
    ranking = json.loads(llmops("review", "ranking", "--json", cwd=root).stdout)
    assert [m["model"] for m in ranking["models"]] == ["tuned", "base"]


def test_model_names_cannot_drive_the_terminal(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    ws = Workspace.init(root, examples=False)
    ws.reviews.add_pair("q", "a", "b", models=("[bold red]evil[/]", "\x1b]0;pwned\x07m"))
    ws.close()
    out = llmops("review", "items", cwd=root)
    assert out.returncode == 0, out.stderr
    assert "[bold red]evil[/]" in out.stdout and "\x1b" not in out.stdout


def test_a_bad_address_is_one_line(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    Workspace.init(root, examples=False).close()
    out = llmops("app", "--address", "not an address", cwd=root)
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "--address 'not an address' is not an IP address" in out.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_llmops_app_serves_the_dashboard_on_loopback(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    Workspace.init(root, examples=False).close()
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmops", "app", "--port", str(port), "--json"], cwd=root,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        body = b""
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                body = urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/_stcore/health", timeout=1
                ).read()
                break
            except OSError:
                time.sleep(0.2)
        assert body == b"ok", proc.stderr.read() if proc.poll() is not None else "no answer"
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
        assert b"<html" in page.lower()
        proc.terminate()
        assert proc.stdout is not None
        told = json.loads(proc.stdout.read())  # --json: one document, nothing else on stdout
        assert told["url"] == f"http://127.0.0.1:{port}" and told["workspace"] == str(
            root
        )  # SIGTERM, as a service manager stops it: the server stops too
        proc.wait(timeout=20)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) != 0:
                    break
            time.sleep(0.2)
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, "the dashboard outlived llmops app"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()
