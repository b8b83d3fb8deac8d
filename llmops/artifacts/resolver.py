"""Model sources: a local folder or an artifact reference, as files on disk, with one identity.

Recipes and eval suites name models either way (``models/tiny`` or ``base@production``). The
identity of a source is the digest of the manifest its files make (see
:func:`llmops.artifacts.transfer.manifest_of`): the same files have the same digest whether
they sit in a folder or in the store, so lineage and promotion gates can match them.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from llmops.artifacts.transfer import manifest_of

if TYPE_CHECKING:
    from llmops.artifacts.store import ArtifactStore, ArtifactVersion

__all__ = ["ModelResolver", "ModelSource"]


@dataclass(frozen=True, slots=True)
class ModelSource:
    """Where a model or adapter named in a recipe or suite comes from, and its identity."""

    folder: Path | None
    """A local Hugging Face folder, or None for a stored artifact."""
    version: ArtifactVersion | None
    """The artifact version, when it is one."""
    digest: str
    """``blake3:`` identity of the exact files: the manifest digest, the same for a folder and
    for the artifact its files make."""

    @property
    def label(self) -> str:
        """``name@version`` for an artifact, else the folder path."""
        return self.version.ref if self.version is not None else str(self.folder)


class ModelResolver:
    """Turns model references into files on disk.

    Args:
        store: Where artifact references are looked up (and pulled from).
        root: Relative folder paths are taken from here (the workspace root).
        cache_dir: Pulled artifacts live here, one folder per content digest.
    """

    def __init__(self, store: ArtifactStore, *, root: Path, cache_dir: Path) -> None:
        self.store = store
        self.root = root
        self.cache_dir = cache_dir

    def __repr__(self) -> str:
        return f"ModelResolver(root={str(self.root)!r}, store={self.store.backend.url!r})"

    def resolve_path(self, path: str | os.PathLike[str]) -> Path:
        """``path`` itself when absolute, else relative to :attr:`root`."""
        p = Path(path)
        return p if p.is_absolute() else self.root / p

    def source(self, ref: str) -> ModelSource:
        """A local model folder (relative to :attr:`root`) or else an artifact reference.

        Raises:
            ArtifactNotFoundError: It is neither.
        """
        local = self.resolve_path(ref)
        if local.is_dir():
            digest = manifest_of(local, cache=self.store.hash_cache).digest()
            return ModelSource(folder=local, version=None, digest=digest)
        version = self.store.get(ref)
        return ModelSource(folder=None, version=version, digest=version.digest)

    def local_dir(self, source: ModelSource) -> Path:
        """The files of a source on local disk (an artifact is pulled once, then cached)."""
        if source.folder is not None:
            return source.folder
        assert source.version is not None
        return self.artifact_dir(source.version)

    def artifact_dir(self, ref: str | ArtifactVersion) -> Path:
        """The files of an artifact version in the cache (pulled once, atomically; keyed by
        content digest, so every name and alias of the same content shares it)."""
        version = self.store.get(ref) if isinstance(ref, str) else ref
        folder = self.cache_dir / version.digest.partition(":")[2][:24]
        if (folder / ".complete").is_file():
            return folder
        staging = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        self.store.pull(version.ref, staging)
        (staging / ".complete").write_text(version.ref, encoding="utf-8")
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
        return folder
