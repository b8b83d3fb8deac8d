"""Model sources: a folder and the artifact made of the same files have one identity."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops.artifacts import ArtifactStore
from llmops.artifacts.resolver import ModelResolver

from .conftest import ModelMaker, files_equal


def test_a_folder_and_its_artifact_have_the_same_identity(
    store: ArtifactStore, make_model: ModelMaker, tmp_path: Path
) -> None:
    model = make_model()
    resolver = ModelResolver(store, root=tmp_path, cache_dir=tmp_path / "cache")
    as_folder = resolver.source(str(model))
    pushed = store.push(model, name="base", kind="base-model")
    as_artifact = resolver.source("base@1")
    assert as_folder.folder == model and as_artifact.version is not None
    assert as_folder.digest == as_artifact.digest == pushed.version.digest
    changed = make_model("other", changed=(0,))
    assert resolver.source(str(changed)).digest != as_folder.digest


def test_artifacts_are_pulled_once_into_a_digest_keyed_cache(
    store: ArtifactStore, make_model: ModelMaker, tmp_path: Path
) -> None:
    model = make_model()
    store.push(model, name="base")
    store.alias("base@1", "production")
    resolver = ModelResolver(store, root=tmp_path, cache_dir=tmp_path / "cache")
    first = resolver.local_dir(resolver.source("base@production"))
    again = resolver.artifact_dir("base@1")
    assert first == again and (first / ".complete").is_file()
    (first / ".complete").unlink()
    assert files_equal(model, first)
    assert not list((tmp_path / "cache").glob(".*.lock"))


def test_relative_paths_resolve_from_the_root(store: ArtifactStore, tmp_path: Path) -> None:
    resolver = ModelResolver(store, root=tmp_path, cache_dir=tmp_path / "cache")
    assert resolver.resolve_path("models/x") == tmp_path / "models" / "x"
    assert resolver.resolve_path("/abs/x") == Path("/abs/x")


def test_a_folders_identity_is_hashed_once_per_content(
    store: ArtifactStore, make_model: ModelMaker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmops.artifacts import resolver as resolver_module

    model = make_model()
    resolver = ModelResolver(store, root=tmp_path, cache_dir=tmp_path / "cache")
    calls: list[Path] = []
    real = resolver_module.manifest_of

    def counting(folder: Path, **kwargs: object) -> object:
        calls.append(folder)
        return real(folder, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(resolver_module, "manifest_of", counting)
    first = resolver.source(str(model)).digest
    assert resolver.source(str(model)).digest == first and len(calls) == 1
    (model / "config.json").write_text('{"changed": true}')
    assert resolver.source(str(model)).digest != first and len(calls) == 2
