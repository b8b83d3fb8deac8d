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
        self._digests: dict[Path, tuple[int, str]] = {}

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
            return ModelSource(folder=local, version=None, digest=self._folder_digest(local))
        version = self.store.get(ref)
        return ModelSource(folder=None, version=version, digest=version.digest)

    def _folder_digest(self, folder: Path) -> str:
        """A folder's manifest digest, computed once per content: a run asks for the same
        model's identity several times (its record, its provider's cache key), and hashing a
        base model reads every byte. Any file added, removed or rewritten changes the key."""
        key = folder.resolve()
        files = sorted(
            (str(p.relative_to(key)), p.stat().st_size, p.stat().st_mtime_ns)
            for p in key.rglob("*")
            if p.is_file()
        )
        signature = hash(tuple(files))
        known = self._digests.get(key)
        if known is not None and known[0] == signature:
            return known[1]
        digest = manifest_of(key, cache=self.store.hash_cache).digest()
        self._digests[key] = (signature, digest)
        return digest

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
