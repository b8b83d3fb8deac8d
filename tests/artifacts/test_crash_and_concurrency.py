"""Crash safety and concurrency: SIGKILL mid-push, parallel pushes, gc during a push."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from llmops import Workspace
from llmops.artifacts import ArtifactStore

from .conftest import ModelMaker, files_equal

PUSHER = textwrap.dedent(
    """
    import sys
    from llmops import Workspace
    ws = Workspace.open(sys.argv[1])
    result = ws.artifacts.push(sys.argv[2], name=sys.argv[3], kind="checkpoint", workers=1)
    print(result.version.version, result.stats.bytes_new)
    """
)


def big_model(folder: Path, *, tensors: int = 40, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    save_file(
        {f"w{i}": rng.standard_normal((1024, 1024)).astype(np.float32) for i in range(tensors)},
        str(folder / "model.safetensors"),
    )
    return folder


def test_sigkill_mid_push_leaves_no_version_and_the_rerun_uploads_only_the_rest(
    tmp_path: Path,
) -> None:
    ws = Workspace.init(tmp_path / "ws", examples=False)
    model = big_model(tmp_path / "model", tensors=96)  # 384 MiB: six 64 MiB packs
    registry = sqlite3.connect(ws.state_dir / "registry.db")
    proc = subprocess.Popen([sys.executable, "-c", PUSHER, str(ws.root), str(model), "ckpt"])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        # Kill once the first pack is stored and indexed, while the rest is still in flight.
        if registry.execute("SELECT count(*) FROM store_pack").fetchone()[0] >= 1:
            break
        time.sleep(0.005)
    registry.close()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the push finished before it could be killed"
    assert ws.artifacts.ls() == []  # nothing visible
    result = ws.artifacts.push(model, name="ckpt", kind="checkpoint")
    assert result.created and result.version.version == 1
    assert 0 < result.stats.bytes_new < result.stats.bytes_total
    assert ws.artifacts.verify().ok
    ws.artifacts.pull("ckpt", tmp_path / "out")
    assert files_equal(model, tmp_path / "out")
    ws.close()


CONCURRENT = textwrap.dedent(
    """
    import sys
    from llmops import Workspace
    ws = Workspace.open(sys.argv[1])
    for path in sys.argv[3:]:
        ws.artifacts.push(path, name=sys.argv[2], kind="checkpoint")
    print("ok")
    """
)


def test_concurrent_pushes_with_overlapping_content(
    tmp_path: Path, db_url: str, make_model: ModelMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMOPS_DB_URL", db_url)
    ws = Workspace.init(tmp_path / "ws", examples=False)
    models = [str(make_model(f"m{i}", layers=12, changed=(i,))) for i in range(4)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                CONCURRENT,
                str(ws.root),
                f"art{w % 2}",
                *models[w:] + models[:w],
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(4)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    versions = ws.artifacts.ls()
    for name in ("art0", "art1"):
        numbers = [v.version for v in versions if v.name == name]
        assert numbers == list(range(1, len(numbers) + 1))
        assert len({v.digest for v in versions if v.name == name}) == len(numbers) == 4
    assert ws.artifacts.verify().ok
    ws.close()


def test_gc_during_a_push_does_not_break_it(store: ArtifactStore, tmp_path: Path) -> None:
    model = big_model(tmp_path / "model", tensors=48)
    errors: list[BaseException] = []
    results = []

    def push() -> None:
        try:
            results.append(store.push(model, name="m", workers=1))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=push)
    thread.start()
    reports = []
    while thread.is_alive():
        reports.append(store.gc(grace=timedelta(hours=1)))
        time.sleep(0.01)
    thread.join()
    assert not errors and results[0].created
    assert all(r.packs_deleted == 0 and r.orphans_deleted == 0 for r in reports)
    assert store.verify().ok


@pytest.mark.parametrize("round_", range(2))
def test_gc_with_no_grace_racing_pushes_never_leaves_a_version_over_missing_data(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch, round_: int
) -> None:
    """gc --grace-hours 0 in a loop while pushes reuse the chunks of an abandoned push and seal
    packs of their own: a push may fail (and say so), but every version that commits is whole."""
    from llmops.artifacts import open_backend, transfer
    from llmops.db import Database

    monkeypatch.setattr(transfer, "PACK_TARGET", 256 * 1024)  # many small packs: many races
    db = Database(db_url)
    store = ArtifactStore(db, open_backend("", default_root=tmp_path / "store"), actor="t")
    outcomes = {"committed": 0, "refused": 0, "gc_deleted": 0}
    try:
        _race_rounds(store, tmp_path, outcomes, seed=100 * round_)
    finally:
        db.dispose()
    assert outcomes["gc_deleted"] > 0, outcomes  # the collector really raced the pushes


def _race_rounds(
    store: ArtifactStore, tmp_path: Path, outcomes: dict[str, int], *, seed: int
) -> None:
    from llmops.artifacts import transfer
    from llmops.errors import StoreError

    for i in range(6):
        model = big_model(tmp_path / f"model{i}", tensors=4, seed=seed + i)
        # Abandoned pushes: their packs are indexed, unreferenced, and (with no grace) gc's
        # prey: one of the same content (which the push reuses) and one of pure garbage.
        transfer.push_tree(model, backend=store.backend, index=store.index, workers=1)
        garbage = big_model(tmp_path / f"garbage{i}", tensors=1, seed=10_000 + i)
        transfer.push_tree(garbage, backend=store.backend, index=store.index, workers=1)
        stop = threading.Event()

        def collect(stop: threading.Event = stop) -> None:
            while True:  # at least one pass, however fast the push is
                report = store.gc(grace=timedelta(0))
                outcomes["gc_deleted"] += report.packs_deleted + report.orphans_deleted
                if stop.is_set():
                    return

        collector = threading.Thread(target=collect)
        collector.start()
        try:
            result = store.push(model, name=f"m{i}", workers=2)
        except StoreError as exc:
            assert "run the push again" in exc.one_line()
            outcomes["refused"] += 1
            result = None
        finally:
            stop.set()
            collector.join()
        if result is not None:
            outcomes["committed"] += 1
            report = store.verify(result.version.ref)
            assert report.ok, report.problems[:3]
            store.pull(result.version.ref, tmp_path / f"out{i}")
            assert files_equal(model, tmp_path / f"out{i}")
    assert store.verify().ok


def test_gc_starting_while_a_push_commits_keeps_the_new_versions_data(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gc takes its cutoff and its list of versions while a push's commit is open (its packs
    already stamped as used, its version not yet visible): the data must survive."""
    from llmops.artifacts import open_backend
    from llmops.db import Database
    from llmops.db import versioned as store_module  # where versions are appended and audited

    db = Database(db_url)
    store = ArtifactStore(db, open_backend("", default_root=tmp_path / "store"), actor="t")
    model = big_model(tmp_path / "model", tensors=2)
    reports = []
    real_event = store_module.record_event

    def event_then_gc(*args: object, **kwargs: object) -> None:
        real_event(*args, **kwargs)  # type: ignore[arg-type]
        collector = threading.Thread(target=lambda: reports.append(store.gc(grace=timedelta(0))))
        collector.start()
        time.sleep(1.0)  # gc lists versions (not this one yet) and waits for the store lock
        threads.append(collector)

    threads: list[threading.Thread] = []
    monkeypatch.setattr(store_module, "record_event", event_then_gc)
    pushed = store.push(model, name="m")
    monkeypatch.undo()
    for thread in threads:
        thread.join()
    assert pushed.created and reports and reports[0].packs_deleted == 0
    assert store.verify().ok
    store.pull("m@1", tmp_path / "out")
    assert files_equal(model, tmp_path / "out")
    db.dispose()
