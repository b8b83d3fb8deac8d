"""The artifacts CLI contract."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from llmops import Workspace


def llmops(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("LLMOPS_")}
    base["LLMOPS_USER"] = "tester"
    return subprocess.run(
        [sys.executable, "-m", "llmops", *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    Workspace.init(tmp_path / "proj", examples=False).close()
    model = tmp_path / "proj" / "model"
    model.mkdir()
    rng = np.random.default_rng(0)
    save_file(
        {f"w{i}": rng.standard_normal((256, 256)).astype(np.float32) for i in range(8)},
        str(model / "model.safetensors"),
    )
    (model / "config.json").write_text("{}")
    return tmp_path / "proj"


def test_push_pull_ls_show_verify_contract(project: Path) -> None:
    pushed = llmops(
        "artifacts",
        "push",
        "model",
        "--name",
        "base",
        "--kind",
        "base-model",
        "--json",
        cwd=project,
    )
    assert pushed.returncode == 0, pushed.stderr
    body = json.loads(pushed.stdout)
    for key in ("name", "version", "digest", "bytes_total", "bytes_new"):
        assert key in body
    assert body["bytes_new"] == body["bytes_total"] > 0
    again = json.loads(
        llmops("artifacts", "push", "model", "--name", "base", "--json", cwd=project).stdout
    )
    assert again["bytes_new"] == 0 and again["version"] == 1

    assert llmops("artifacts", "pull", "base@1", "out", cwd=project).returncode == 0
    assert (project / "out" / "model.safetensors").read_bytes() == (
        project / "model" / "model.safetensors"
    ).read_bytes()

    listing = json.loads(llmops("artifacts", "ls", "--json", cwd=project).stdout)
    assert [(v["name"], v["version"], v["kind"]) for v in listing] == [("base", 1, "base-model")]
    assert all("digest" in v for v in listing)
    shown = json.loads(llmops("artifacts", "show", "base", "--json", cwd=project).stdout)
    assert {f["path"] for f in shown["files"]} == {"config.json", "model.safetensors"}

    verified = llmops("artifacts", "verify", "--json", cwd=project)
    assert verified.returncode == 0 and json.loads(verified.stdout)["ok"] is True


def test_verify_exits_1_and_names_the_file(project: Path) -> None:
    llmops("artifacts", "push", "model", "--name", "base", cwd=project)
    pack = next((project / ".llmops" / "store" / "packs").rglob("*.pack"))
    data = bytearray(pack.read_bytes())
    data[-100] ^= 0xFF
    pack.write_bytes(bytes(data))
    verified = llmops("artifacts", "verify", "base", "--json", cwd=project)
    assert verified.returncode == 1
    report = json.loads(verified.stdout)
    assert report["ok"] is False
    assert report["problems"][0]["file"] == "model.safetensors"


def test_pickle_refusal_is_one_line_exit_2(project: Path) -> None:
    (project / "model" / "pytorch_model.bin").write_bytes(b"\x80\x04.")
    result = llmops("artifacts", "push", "model", "--name", "base", cwd=project)
    assert result.returncode == 2
    assert result.stderr.startswith("error: refusing pickle-based weight file(s)")
    assert result.stderr.count("\n") == 1
    assert (
        llmops(
            "artifacts", "push", "model", "--name", "base", "--allow-pickle", cwd=project
        ).returncode
        == 0
    )


def test_progress_bar_only_without_json(project: Path) -> None:
    quiet = llmops("artifacts", "push", "model", "--name", "base", "--json", cwd=project)
    assert quiet.stderr == ""
    json.loads(quiet.stdout)


def test_store_url_override(project: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    result = llmops(
        "artifacts",
        "push",
        "model",
        "--name",
        "base",
        "--json",
        cwd=project,
        env={"LLMOPS_STORE_URL": str(elsewhere)},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["store"] == elsewhere.resolve().as_uri()
    assert any((elsewhere / "packs").rglob("*.pack"))


def test_alias_and_gc(project: Path) -> None:
    llmops("artifacts", "push", "model", "--name", "base", cwd=project)
    aliased = json.loads(
        llmops("artifacts", "alias", "base@1", "production", "--json", cwd=project).stdout
    )
    assert aliased["aliases"] == ["production"]
    gc = json.loads(llmops("artifacts", "gc", "--grace-hours", "0", "--json", cwd=project).stdout)
    assert gc["packs_deleted"] == 0


def test_pushing_the_intact_source_repairs_a_corrupt_chunk(project: Path) -> None:
    assert llmops("artifacts", "push", "model", "--name", "base", cwd=project).returncode == 0
    pack = next((project / ".llmops" / "store" / "packs").rglob("*.pack"))
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pack.write_bytes(bytes(data))
    broken = llmops("artifacts", "verify", cwd=project)
    assert broken.returncode == 1 and "is corrupt" in broken.stderr
    assert "verify --repair SOURCE" in broken.stderr
    assert llmops("artifacts", "push", "model", "--name", "base", cwd=project).returncode == 0
    assert llmops("artifacts", "verify", cwd=project).returncode == 0
    pack.write_bytes(b"")  # truncated to nothing: now --repair
    assert llmops("artifacts", "verify", cwd=project).returncode == 1
    repaired = llmops("artifacts", "verify", "--repair", "model", "--json", cwd=project)
    assert repaired.returncode == 0 and json.loads(repaired.stdout)["repaired"] >= 1


@pytest.mark.parametrize("grace", ["nan", "inf", "-1"])
def test_gc_refuses_a_nonsense_grace_period(project: Path, grace: str) -> None:
    done = llmops("artifacts", "gc", "--grace-hours", grace, cwd=project)
    assert done.returncode == 2 and "--grace-hours" in done.stderr
    assert done.stderr.count("\n") == 1
