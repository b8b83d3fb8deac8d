"""The artifact store on local disk and on a real S3-compatible server (``store`` runs each test
on both)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from llmops.artifacts import ArtifactNotFoundError, ArtifactStore, StoreError, UnsafeFileError
from llmops.artifacts.manifest import Manifest

from .conftest import ModelMaker, files_equal


def test_push_then_pull_gives_back_identical_files(
    store: ArtifactStore, make_model: ModelMaker, tmp_path: Path
) -> None:
    model = make_model()
    (model / "sub").mkdir()
    (model / "sub" / "tokenizer.json").write_text('{"vocab": {}}' * 1000)
    result = store.push(model, name="base", kind="base-model")
    assert result.created and result.version.version == 1
    assert result.stats.bytes_new == result.stats.bytes_total == result.version.bytes_total
    files = store.pull("base@1", tmp_path / "out")
    assert len(files) == 3
    assert files_equal(model, tmp_path / "out")


def test_identical_repush_adds_nothing(store: ArtifactStore, make_model: ModelMaker) -> None:
    model = make_model()
    first = store.push(model, name="base", kind="base-model")
    again = store.push(model, name="base", kind="base-model")
    assert not again.created and again.version.version == 1
    assert again.stats.bytes_new == 0 and again.stats.bytes_stored == 0
    other = store.push(model, name="copy", kind="base-model")
    assert other.created and other.stats.bytes_new == 0
    assert other.version.digest == first.version.digest


def test_changed_tensors_store_only_their_bytes(
    store: ArtifactStore, make_model: ModelMaker
) -> None:
    base = store.push(make_model("v1", layers=20), name="m", kind="checkpoint")
    changed = store.push(
        make_model("v2", layers=20, changed=(3, 11)), name="m", kind="checkpoint", parents=["m@1"]
    )
    weight = 256 * 256 * 4
    assert changed.version.version == 2 and changed.version.parents == ["m@1"]
    assert changed.stats.bytes_new == 2 * weight
    assert changed.stats.bytes_new <= 0.11 * base.stats.bytes_total


def test_open_tensor_reads_one_tensor(store: ArtifactStore, make_model: ModelMaker) -> None:
    model = make_model()
    store.push(model, name="m")
    expected = load_file(str(model / "model.safetensors"))
    got = store.open_tensor("m", "layers.4.weight")
    assert np.array_equal(got, expected["layers.4.weight"])
    blob, dtype, shape = store.open_tensor("m", "layers.4.bias", raw=True)
    assert (dtype, shape) == ("F32", (256,)) and blob == expected["layers.4.bias"].tobytes()
    with pytest.raises(KeyError, match="nope"):
        store.open_tensor("m", "nope")


def test_refs_aliases_and_listing(store: ArtifactStore, make_model: ModelMaker) -> None:
    store.push(make_model("a"), name="m")
    store.push(make_model("b", seed=1), name="m")
    store.alias("m@1", "production")
    assert store.get("m@production").version == 1
    assert store.get("m").version == 2
    assert store.get(store.get("m@2").digest).version == 2
    assert [(v.ref, v.aliases) for v in store.ls()] == [("m@1", ["production"]), ("m@2", [])]
    with pytest.raises(ArtifactNotFoundError, match="no artifact version matches m@7"):
        store.get("m@7")


def test_pickle_weights_are_refused_unless_allowed(
    store: ArtifactStore, make_model: ModelMaker
) -> None:
    model = make_model()
    (model / "pytorch_model.bin").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(UnsafeFileError, match=r"refusing pickle-based weight file\(s\) pytorch"):
        store.push(model, name="m")
    assert store.ls() == []
    assert store.push(model, name="m", allow_pickle=True).created


def test_bad_safetensors_header_is_refused_before_anything_is_stored(
    store: ArtifactStore, make_model: ModelMaker
) -> None:
    model = make_model()
    blob = (model / "model.safetensors").read_bytes()
    (model / "model.safetensors").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(UnsafeFileError, match=r"model\.safetensors: invalid safetensors header"):
        store.push(model, name="m")
    assert store.ls() == []


def test_links_and_special_files_are_refused(
    store: ArtifactStore, make_model: ModelMaker, tmp_path: Path
) -> None:
    model = make_model()
    (model / "escape").symlink_to("/etc/passwd")
    with pytest.raises(UnsafeFileError, match="is a symbolic link"):
        store.push(model, name="m")
    (model / "escape").unlink()
    os.mkfifo(model / "fifo")
    with pytest.raises(UnsafeFileError, match="not a regular file"):
        store.push(model, name="m")


@pytest.mark.parametrize("bad", ["../evil", "/etc/passwd", "a/../../b", "a\\b", ".llmops-pull-x/y"])
def test_manifest_paths_cannot_escape_the_destination(
    store: ArtifactStore, make_model: ModelMaker, tmp_path: Path, bad: str
) -> None:
    from llmops.artifacts.pull import pull_files

    store.push(make_model(), name="m")
    manifest = store.manifest("m")
    evil = Manifest(files=[manifest.files[0].model_copy(update={"path": bad})])
    with pytest.raises(UnsafeFileError, match="unsafe path"):
        pull_files(evil, tmp_path / "dest", backend=store.backend, index=store.index)
    assert not (tmp_path / "evil").exists()


def _first_pack(store: ArtifactStore) -> str:
    return store.index.packs()[0][1]


def _corrupt(store: ArtifactStore, key: str) -> None:
    data = bytearray(store.backend.get_bytes(key))
    data[len(data) // 2] ^= 0xFF
    store.backend.put_bytes(key, bytes(data))


def test_verify_and_pull_report_a_corrupted_pack(
    store: ArtifactStore, make_model: ModelMaker, tmp_path: Path
) -> None:
    store.push(make_model(), name="m")
    assert store.verify().ok
    _corrupt(store, _first_pack(store))
    report = store.verify("m@1")
    assert not report.ok
    problem = report.problems[0]
    assert problem["file"] == "model.safetensors" and problem["end"] > problem["start"]
    assert "is corrupt" in problem["problem"]
    with pytest.raises(
        StoreError, match=r"model\.safetensors bytes \[\d+, \d+\): chunk .* corrupt"
    ):
        store.pull("m@1", tmp_path / "out")
    assert not (tmp_path / "out" / "model.safetensors").exists()  # nothing half-written


def test_verify_reports_a_deleted_pack(store: ArtifactStore, make_model: ModelMaker) -> None:
    store.push(make_model(), name="m")
    store.backend.delete(_first_pack(store))
    report = store.verify()
    assert not report.ok
    assert all("cannot be read" in p["problem"] for p in report.problems)
    assert {p["file"] for p in report.problems} == {"config.json", "model.safetensors"}


def test_gc_spares_referenced_and_recent_data(store: ArtifactStore, make_model: ModelMaker) -> None:
    store.push(make_model(), name="m")
    report = store.gc(grace=timedelta(0))
    assert report.packs_deleted == 0 and report.orphans_deleted == 0
    assert store.verify().ok


def test_gc_removes_what_an_abandoned_push_left(
    store: ArtifactStore, make_model: ModelMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmops.artifacts import store as store_module

    def die(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt("killed before commit")

    monkeypatch.setattr(store_module.ArtifactStore, "_commit", die)
    with pytest.raises(KeyboardInterrupt):
        store.push(make_model(), name="m")
    monkeypatch.undo()
    assert store.ls() == []
    assert store.gc(grace=timedelta(hours=1)).packs_deleted == 0  # still within grace
    report = store.gc(grace=timedelta(0))
    assert report.packs_deleted >= 1 and report.bytes_freed > 0
    assert store.index.packs() == []


def test_store_full_leaves_nothing_visible(
    store: ArtifactStore, make_model: ModelMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from llmops.artifacts import StoreFullError

    if store.backend.url.startswith("s3://"):
        pytest.skip("disk-full is a local-disk condition")

    original = Path.replace

    def full(self: Path, target: Path) -> Path:  # type: ignore[override]
        if "packs" in str(target):
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, target)

    monkeypatch.setattr(Path, "replace", full)
    with pytest.raises(StoreFullError, match="is full"):
        store.push(make_model(), name="m")
    monkeypatch.undo()
    assert store.ls() == []
    assert store.push(make_model(), name="m").created


def test_a_full_staging_disk_is_store_full_and_leaves_no_staging_file(
    store: ArtifactStore, make_model: ModelMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks go to a pack in the staging folder first (on every backend): ENOSPC there is
    the same one-line "is full" error, not a raw OSError traceback."""
    import errno

    from llmops.artifacts import StoreFullError, transfer

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    # Raw chunks are copied into the pack by the kernel, compressed ones written: both fill up.
    monkeypatch.setattr(transfer, "copy_range", full)
    monkeypatch.setattr(transfer, "write_at", full)
    with pytest.raises(StoreFullError, match=r"staging folder .* is full"):
        store.push(make_model(), name="m")
    monkeypatch.undo()
    assert store.ls() == []
    assert list(store.backend.staging_dir().glob("pack-*")) == []
    assert store.push(make_model(), name="m").created


def test_versions_of_another_store_say_where_they_live(
    store: ArtifactStore, make_model: ModelMaker, tmp_path: Path
) -> None:
    from llmops.artifacts import open_backend

    store.push(make_model(), name="m")
    other = ArtifactStore(store.db, open_backend("", default_root=tmp_path / "other"), actor="t")
    with pytest.raises(StoreError, match=r"m@1 is stored in .*, not in file://"):
        other.pull("m@1", tmp_path / "out")
    assert other.verify().ok  # nothing of this store to check
    assert other.verify().chunks_checked == 0


def test_pull_refuses_a_conflicting_destination_before_writing(
    store: ArtifactStore, make_model: ModelMaker, tmp_path: Path
) -> None:
    from llmops.errors import InputError

    model = make_model()
    (model / "sub").mkdir()
    (model / "sub" / "x.json").write_text("{}")
    store.push(model, name="m")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "sub").write_text("a file where a folder must go")
    with pytest.raises(InputError, match="sub is a file there"):
        store.pull("m", dest)
    assert sorted(p.name for p in dest.iterdir()) == ["sub"]  # nothing else written
    (dest / "sub").unlink()
    (dest / "model.safetensors").symlink_to("/etc/hostname")  # a planted link out of dest
    with pytest.raises(UnsafeFileError, match="would be written outside"):
        store.pull("m", dest)
    assert Path("/etc/hostname").read_text() != ""  # untouched


def test_a_corrupt_chunk_is_repaired_by_pushing_the_intact_source(
    store: ArtifactStore, make_model: ModelMaker, tmp_path: Path
) -> None:
    model = make_model()
    store.push(model, name="m")
    _corrupt(store, _first_pack(store))
    report = store.verify()
    assert not report.ok and report.quarantined >= 1
    again = store.push(model, name="m")  # the same content: no new version ...
    assert not again.created and again.stats.bytes_new > 0  # ... but the bad bytes are stored anew
    assert store.verify().ok
    store.pull("m", tmp_path / "out")
    assert files_equal(model, tmp_path / "out")


def test_verify_repair_rewrites_corrupt_and_missing_chunks(
    store: ArtifactStore, make_model: ModelMaker
) -> None:
    model = make_model()
    store.push(model, name="m")
    store.backend.delete(_first_pack(store))
    report = store.verify(repair=model)
    assert report.ok and report.repaired >= 1, report.problems
    assert store.verify().ok
    untouched = store.verify(repair=model)  # nothing to repair: nothing is pushed
    assert untouched.ok and untouched.repaired == 0


def _pickle_bytes() -> bytes:
    import pickle

    return pickle.dumps({"weights": [1, 2, 3]}, protocol=4)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("model.joblib", _pickle_bytes),
        ("weights", _pickle_bytes),
        ("MODEL.PT", lambda: b"\x80\x02}q\x00."),
        ("arr.npy", "object-npy"),
        ("torch_zip.dat", "torch-zip"),
    ],
)
def test_pickles_under_any_name_are_refused(
    store: ArtifactStore, tmp_path: Path, name: str, content: object
) -> None:
    import io
    import zipfile

    folder = tmp_path / "m"
    folder.mkdir()
    if content == "object-npy":
        np.save(folder / name, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    elif content == "torch-zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("archive/data.pkl", _pickle_bytes())
        (folder / name).write_bytes(buf.getvalue())
    else:
        (folder / name).write_bytes(content())  # type: ignore[operator]
    with pytest.raises(UnsafeFileError, match="refusing pickle-based"):
        store.push(folder, name="p")
    assert store.ls() == []
    assert store.push(folder, name="p", allow_pickle=True).created


def test_plain_numpy_files_and_upper_case_safetensors(
    store: ArtifactStore, make_model: ModelMaker, tmp_path: Path
) -> None:
    model = make_model()
    np.save(model / "plain.npy", np.arange(10, dtype=np.float32))
    (model / "model.safetensors").rename(model / "MODEL.SAFETENSORS")
    pushed = store.push(model, name="m")
    entry = next(f for f in store.manifest(pushed.version).files if f.path == "MODEL.SAFETENSORS")
    assert entry.tensors  # read as safetensors: its header was validated
    (model / "MODEL.SAFETENSORS").write_bytes(b"garbage that is not a header")
    with pytest.raises(UnsafeFileError, match="invalid safetensors header"):
        store.push(model, name="m")


def test_a_non_utf8_file_name_is_refused(store: ArtifactStore, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "ok.txt").write_text("x")
    with open(os.fsencode(folder) + b"/\xff.txt", "wb") as fh:
        fh.write(b"x")
    with pytest.raises(UnsafeFileError, match=r"file name .* is not valid UTF-8"):
        store.push(folder, name="m")


def _manifest_file(store: ArtifactStore, digest: str) -> str:
    hexpart = digest.partition(":")[2]
    return f"manifests/{hexpart[:2]}/{hexpart}.json"


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_damaged_manifest_is_a_clear_error_and_a_repush_repairs_it(
    store: ArtifactStore, make_model: ModelMaker, tmp_path: Path, damage: str
) -> None:
    model = make_model()
    version = store.push(model, name="m").version
    key = _manifest_file(store, version.digest)
    raw = store.backend.get_bytes(key)
    broken = raw[:100] if damage == "truncate" else raw.replace(b'"size":', b'"size": 1', 1)
    store.backend.put_bytes(key, broken)
    fresh = ArtifactStore(store.db, store.backend, actor="t")  # no cached manifest
    report = fresh.verify()
    assert not report.ok and "manifest of m@1" in report.problems[0]["problem"]
    with pytest.raises(StoreError, match=r"manifest of m@1 .* (corrupt|does not match)"):
        fresh.pull("m@1", tmp_path / "out")
    with pytest.raises(StoreError, match="manifest of"):
        fresh.gc(grace=timedelta(0))  # never collects without knowing what is referenced
    again = fresh.push(model, name="m")
    assert not again.created
    assert ArtifactStore(store.db, store.backend, actor="t").verify().ok


def test_gc_refuses_a_store_that_another_registry_uses(
    store: ArtifactStore, make_model: ModelMaker, tmp_path: Path
) -> None:
    from llmops.db import Database

    store.push(make_model(), name="m")
    other = ArtifactStore(Database(f"sqlite:///{tmp_path / 'other.db'}"), store.backend, actor="t")
    with pytest.raises(StoreError, match="belongs to another registry"):
        other.gc(grace=timedelta(0))
    with pytest.raises(StoreError, match="belongs to another registry"):
        other.push(make_model("x"), name="x")
    assert store.verify().ok


def test_two_registries_with_the_same_url_text_do_not_share_a_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_model: ModelMaker
) -> None:
    """Relative SQLite URLs read the same in every workspace: ownership is by registry id."""
    from llmops import Workspace

    monkeypatch.setenv("LLMOPS_STORE_URL", (tmp_path / "shared").as_uri())
    monkeypatch.setenv("LLMOPS_DB_URL", "sqlite:///.llmops/registry.db")
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)  # the relative URL names ./.llmops/registry.db
        Workspace.init(".", examples=False).close()
        assert (tmp_path / name / ".llmops" / "registry.db").is_file()
    monkeypatch.chdir(tmp_path / "a")
    first = Workspace.open()
    first.artifacts.push(make_model(), name="m")
    first.close()
    monkeypatch.chdir(tmp_path / "b")
    second = Workspace.open()
    with pytest.raises(StoreError, match="belongs to another registry"):
        second.artifacts.gc(grace=timedelta(0))
    second.close()


@pytest.mark.parametrize("damage", ["empty", "null", "deleted"])
def test_a_lost_owner_record_never_lets_a_stranger_collect(
    store: ArtifactStore, make_model: ModelMaker, tmp_path: Path, damage: str
) -> None:
    from llmops.db import Database

    store.push(make_model(), name="m")
    if damage == "deleted":
        store.backend.delete("registry.json")
    else:
        store.backend.put_bytes(
            "registry.json", b"" if damage == "empty" else b'{"registry_id": null}'
        )
    stranger = ArtifactStore(Database(f"sqlite:///{tmp_path / 'x.db'}"), store.backend, actor="t")
    with pytest.raises(StoreError, match="no valid owner record"):
        stranger.gc(grace=timedelta(0))
    owner = ArtifactStore(store.db, store.backend, actor="t")  # the registry that indexes it
    owner.gc(grace=timedelta(0))  # reclaims the store
    assert owner.verify().ok
    with pytest.raises(StoreError, match="belongs to another registry"):
        stranger.gc(grace=timedelta(0))
