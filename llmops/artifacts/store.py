"""The artifact store: immutable, content-addressed versions of models, adapters and datasets.

Reach it as ``Workspace.artifacts``. Bytes live in a backend (local disk or S3) as packs of
deduplicated chunks; names, versions, aliases and the chunk index live in the registry database.
A version becomes visible in one database transaction, after every byte it needs is stored, so a
push killed at any moment leaves no visible version, and running it again uploads only what is
missing.
"""

from __future__ import annotations

import builtins
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from llmops._display import Display, Listing
from llmops._plugins import Registry
from llmops._record import Record, plain
from llmops.artifacts._hashcache import HashCache
from llmops.artifacts._index import ChunkIndex
from llmops.artifacts.backends import Backend, StoreError
from llmops.artifacts.chunking import Compression
from llmops.artifacts.integrity import GcReport, VerifyReport
from llmops.artifacts.manifest import Kind, Manifest
from llmops.artifacts.pull import ChunkProblem, pull_files, read_chunk
from llmops.artifacts.tensors import decode_tensor
from llmops.artifacts.transfer import (
    MISSING_CHUNK,
    Progress,
    PushStats,
    push_tree,
)
from llmops.db import Database
from llmops.db.models import (
    Artifact,
    ArtifactAlias,
    ArtifactVersionRow,
)
from llmops.db.outbox import MODEL_KINDS, emit
from llmops.db.pointers import move_pointer
from llmops.db.timestamps import as_utc
from llmops.db.versioned import Appended, append_version, lock_owner, with_retries
from llmops.errors import ArtifactNotFoundError, InputError
from llmops.refs import Ref, check_label, check_name, parse_ref

__all__ = [
    "KINDS",
    "ArtifactNotFoundError",
    "ArtifactStore",
    "ArtifactVersion",
    "GcReport",
    "PushResult",
    "VerifyReport",
]

KINDS: Registry[str] = Registry("artifact kind")
"""Artifact kinds and what each holds (the ``Kind`` literal is checked against these)."""
for _kind, _what in {
    "base-model": "a model to fine-tune or serve",
    "adapter": "LoRA/DoRA weights for a base model",
    "checkpoint": "a training checkpoint",
    "merged-model": "an adapter merged into its base",
    "dataset": "training or eval data",
    "eval-log": "eval outputs",
    "other": "anything else",
}.items():
    KINDS.register(_kind, _what)
_ENTITY = "artifact"
_RETRIES = 8


@dataclass(slots=True, kw_only=True, repr=False)
class ArtifactVersion(Display, Record):
    """One version of an artifact (a snapshot of its registry row)."""

    _repr_fields = ("ref", "kind", "digest", "bytes_total", "file_count", "aliases", "parents")

    name: str
    version: int
    digest: str
    """``blake3:`` digest of the manifest: the content's identity."""
    kind: str
    bytes_total: int
    file_count: int
    parents: list[str]
    """Lineage: the versions this one was made from (``name@version``)."""
    meta: dict[str, Any]
    message: str
    created_by: str
    created_at: datetime
    aliases: list[str]
    store: str

    @property
    def ref(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"

    _json_computed = ("ref",)


@dataclass(slots=True, kw_only=True)
class PushResult(Record):
    """Outcome of a push."""

    version: ArtifactVersion
    created: bool
    """False when the same content already was a version of this artifact."""
    stats: PushStats
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """The push contract: the version's fields, then what the push did (bytes_new, ...)."""
        return {
            **self.version.to_json(),
            "created": self.created,
            **plain(self.stats),
            "seconds": round(self.seconds, 3),
        }


_OWNER_KEY = "registry.json"
"""An object naming the registry that owns the store (the first one that wrote to it)."""


def _manifest_key(digest: str) -> str:
    hexpart = digest.partition(":")[2]
    return f"manifests/{hexpart[:2]}/{hexpart}.json"


class ArtifactStore:
    """Artifact versions in a store.

    Args:
        db: The registry database (names, versions, aliases, chunk index).
        backend: Where bytes live.
        actor: Name recorded for pushes and alias moves.
        compression: ``auto`` (the backend's default), ``zstd`` or ``none``.
        hash_cache: A local file remembering the chunk digests of files already pushed, so
            unchanged files are not read again (None: always read).
    """

    def __init__(
        self,
        db: Database,
        backend: Backend,
        *,
        actor: str,
        compression: Compression = "auto",
        hash_cache: Path | None = None,
        alias_guard: Callable[[ArtifactVersion, str], None] | None = None,
    ) -> None:
        self.db = db
        self.alias_guard = alias_guard
        """Called before a plain alias move; raises to refuse it (the model registry's guarded
        aliases move only through a promotion)."""
        self.hash_cache = HashCache(hash_cache) if hash_cache is not None else None
        self.backend = backend
        self.actor = actor
        self.compression = compression
        self.index = ChunkIndex(db, backend.url)
        self._manifests: dict[str, Manifest] = {}
        self._owner_checked = False

    def __repr__(self) -> str:
        return f"ArtifactStore({self.backend.url!r})"

    # -- push ------------------------------------------------------------------------------

    def push(
        self,
        path: str | os.PathLike[str],
        *,
        name: str,
        kind: Kind = "other",
        parents: Iterable[str] = (),
        meta: dict[str, Any] | None = None,
        message: str = "",
        allow_pickle: bool = False,
        workers: int | None = None,
        progress: Progress | None = None,
    ) -> PushResult:
        """Store a file or folder as a new version of artifact ``name``.

        Only bytes the store does not have are written. The version becomes visible atomically
        at the end; identical content to an existing version of ``name`` creates nothing.

        Raises:
            UnsafeFileError: Pickle weights (unless ``allow_pickle``), bad safetensors headers,
                links or special files.
            StoreError: The store failed or filled up; nothing became visible.
        """
        check_name(name, what="artifact name")
        self.check_owner()
        if kind not in KINDS:
            raise InputError(KINDS.unknown(kind), hint=f"use one of {', '.join(KINDS)}")
        lineage = [self.get(p).ref for p in parents]
        started = time.perf_counter()
        compress_chunks = (
            self.backend.compress_by_default
            if self.compression == "auto"
            else self.compression == "zstd"
        )
        manifest, stats = push_tree(
            Path(path),
            backend=self.backend,
            index=self.index,
            allow_pickle=allow_pickle,
            compress_chunks=compress_chunks,
            cache=self.hash_cache,
            workers=workers,
            progress=progress,
        )
        digest = manifest.digest()
        self._put_manifest(digest, manifest)
        self._manifests[digest] = manifest
        version, created = self._commit(
            name, digest, manifest, kind=kind, parents=lineage, meta=meta or {}, message=message
        )
        return PushResult(
            version=version, created=created, stats=stats, seconds=time.perf_counter() - started
        )

    def _commit(
        self,
        name: str,
        digest: str,
        manifest: Manifest,
        *,
        kind: str,
        parents: list[str],
        meta: dict[str, Any],
        message: str,
    ) -> tuple[ArtifactVersion, bool]:
        needed = sorted({c.digest for f in manifest.files for c in f.chunks})

        def before_insert(session: Any) -> None:
            self._check_chunks(session, needed)
            # Under the store lock: a gc that deleted this manifest as unused finished before
            # us (and one that starts later sees this version).
            self._put_manifest(digest, manifest)

        def write() -> Appended:
            with self.db.write() as session:
                self.index.lock(session)
                artifact = self._lock_artifact(session, name, create=True)
                appended = append_version(
                    session, artifact, versions=ArtifactVersionRow, owner_column="artifact_id",
                    digest=digest, actor=self.actor, entity_type=_ENTITY,
                    audit={"kind": kind, "parents": parents},
                    same_content=[col(ArtifactVersionRow.store) == self.backend.url],
                    before_insert=lambda: before_insert(session),
                    build=lambda owner_id, number: ArtifactVersionRow(
                        artifact_id=owner_id, version=number, digest=digest, kind=kind,
                        store=self.backend.url, bytes_total=manifest.bytes_total,
                        file_count=len(manifest.files), parents=parents, meta=meta,
                        message=message, created_by=self.actor,
                    ),
                )  # fmt: skip
                if appended.created and kind in MODEL_KINDS:
                    emit(session, type="model.version.registered", model=name,
                         payload={"version": appended.number, "ref": f"{name}@{appended.number}",
                                  "digest": digest, "kind": kind, "parents": parents,
                                  "actor": self.actor})  # fmt: skip
                return appended

        appended = with_retries(write)
        return self.get(f"{name}@{appended.number}"), appended.created

    def check_owner(self) -> None:
        """Claim the store for this registry, or raise if another registry uses it (the
        registry database knows which data is referenced; another would see it as garbage).

        Raises:
            StoreError: The store belongs to another registry.
        """
        if self._owner_checked:
            return

        def read_owner() -> tuple[str | None, str]:
            if self.backend.exists(_OWNER_KEY):
                try:
                    found = json.loads(self.backend.get_bytes(_OWNER_KEY))
                    return found.get("registry_id"), found.get("url", "?")
                except (ValueError, AttributeError):  # unreadable: as if there were none
                    return None, "?"
            return None, "?"

        def foreign_data() -> bool:
            return not self.index.packs() and any(self.backend.list("packs/"))

        owner, where = read_owner()
        for _ in range(20):  # another process may be claiming it now: look again for 2 s
            if owner is not None or not foreign_data():
                break
            time.sleep(0.1)
            owner, where = read_owner()
        if owner is None and foreign_data():  # data none of which is ours: gc would take it
            raise StoreError(
                f"store {self.backend.url} holds data but no valid owner record"
                f" ({_OWNER_KEY}), and this registry indexes none of it",
                hint="use the registry that wrote the store, or restore its registry.json",
            )
        mine = self.db.registry_id
        if owner is not None and owner != mine:
            raise StoreError(
                f"store {self.backend.url} belongs to another registry (id {str(owner)[:12]},"
                f" last seen at {where}), not to {self.db.display_url}: its gc would take"
                " that registry's data for garbage",
                hint="give each registry its own store (LLMOPS_STORE_URL), or use the"
                " registry that owns it",
            )
        if owner is None:  # a new store, or ours with its record lost: (re)claim it
            claim = {"registry_id": mine, "url": self.db.display_url}
            self.backend.put_bytes(_OWNER_KEY, json.dumps(claim).encode())
        self._owner_checked = True

    def _put_manifest(self, digest: str, manifest: Manifest) -> None:
        """Store a manifest, replacing a stored copy that is missing or damaged."""
        key = _manifest_key(digest)
        if self.backend.exists(key):
            try:
                if Manifest.model_validate_json(self.backend.get_bytes(key)).digest() == digest:
                    return
            except (ValueError, StoreError):
                pass  # damaged: rewritten below from the intact one
        self.backend.put_bytes(key, manifest.model_dump_json().encode())

    def _check_chunks(self, session: Any, needed: list[str]) -> None:
        """Under the store lock: every chunk is indexed, and its pack counts as used now."""
        have = self.index.claim(session, needed)
        if have != len(needed):
            raise StoreError(
                f"{len(needed) - have} chunk(s) of this push vanished from the store before it"
                " committed (a gc with a short grace period ran?)",
                hint="run the push again; it uploads only what is missing",
            )

    def _lock_artifact(self, session: Any, name: str, *, create: bool = False) -> Artifact:
        return lock_owner(
            session, Artifact, name, create_as=self.actor if create else None,
            not_found=lambda n: ArtifactNotFoundError(
                f"no artifact named {n!r}", hint="see `llmops artifacts ls`"
            ),
        )  # fmt: skip

    # -- read ------------------------------------------------------------------------------

    def get(self, ref: str | Ref) -> ArtifactVersion:
        """Resolve ``name``, ``name@3``, ``name@alias`` or a ``blake3:`` digest.

        Raises:
            ArtifactNotFoundError: Nothing matches.
        """
        parsed = parse_ref(ref) if isinstance(ref, str) else ref
        v, a = ArtifactVersionRow, Artifact
        query = select(v, col(a.name)).join(a, col(a.id) == col(v.artifact_id))
        if parsed.kind == "digest":
            query = query.where(col(v.digest) == parsed.digest).order_by(col(v.id)).limit(1)
        else:
            query = query.where(col(a.name) == parsed.name)
            if parsed.kind == "version":
                query = query.where(col(v.version) == parsed.version)
            elif parsed.kind == "label":
                query = query.join(
                    ArtifactAlias,
                    (col(ArtifactAlias.artifact_id) == col(v.artifact_id))
                    & (col(ArtifactAlias.version) == col(v.version)),
                ).where(col(ArtifactAlias.alias) == parsed.label)
            else:
                query = query.order_by(col(v.version).desc()).limit(1)
        with self.db.read() as session:
            row = session.execute(query).first()
            if row is None:
                raise ArtifactNotFoundError(
                    f"no artifact version matches {parsed}", hint="see `llmops artifacts ls`"
                )
            aliases = self._aliases(session, [row[0].artifact_id])
        return _version(row[0], row[1], aliases.get((row[0].artifact_id, row[0].version), []))

    @staticmethod
    def _aliases(
        session: Any, artifact_ids: builtins.list[int]
    ) -> dict[tuple[int, int], builtins.list[str]]:
        found: dict[tuple[int, int], builtins.list[str]] = {}
        rows = session.execute(
            select(
                col(ArtifactAlias.artifact_id), col(ArtifactAlias.version), col(ArtifactAlias.alias)
            )
            .where(col(ArtifactAlias.artifact_id).in_(artifact_ids))
            .order_by(col(ArtifactAlias.alias))
        )
        for aid, version, alias in rows:
            found.setdefault((aid, version), []).append(alias)
        return found

    def ls(self, name: str | None = None) -> Listing[ArtifactVersion]:
        """Every version (of every artifact, or of ``name``), by name then version
        (``.to_pandas()`` for a DataFrame; ``list`` is the same)."""
        v, a = ArtifactVersionRow, Artifact
        query = select(v, col(a.name)).join(a, col(a.id) == col(v.artifact_id))
        if name is not None:
            query = query.where(col(a.name) == name)
        query = query.order_by(col(a.name), col(v.version))
        with self.db.read() as session:
            rows = session.execute(query).all()
            aliases = self._aliases(session, sorted({r[0].artifact_id for r in rows}))
        return Listing(
            _version(r[0], r[1], aliases.get((r[0].artifact_id, r[0].version), [])) for r in rows
        )

    list = ls

    def manifest(self, ref: str | Ref | ArtifactVersion) -> Manifest:
        """The manifest of a version (cached: manifests are immutable).

        Raises:
            StoreError: The version lives in another store than this one.
        """
        version = ref if isinstance(ref, ArtifactVersion) else self.get(ref)
        if version.store != self.backend.url:
            raise StoreError(
                f"{version.ref} is stored in {version.store}, not in {self.backend.url}",
                hint=f"set LLMOPS_STORE_URL={version.store} (or [store] url) to read it",
            )
        return self.manifest_by_digest(version.digest, what=version.ref)

    def manifest_by_digest(self, digest: str, *, what: str | None = None) -> Manifest:
        """The manifest stored under ``digest`` (checked against it; cached).

        Raises:
            StoreError: It is missing, unreadable or does not match its digest.
        """
        cached = self._manifests.get(digest)
        if cached is not None:
            return cached
        label = what or digest[:19]
        repair = "push the version's files again (or `llmops artifacts verify --repair SOURCE`)"
        raw = self.backend.get_bytes(_manifest_key(digest))
        try:
            manifest = Manifest.model_validate_json(raw)
        except ValueError:  # pydantic's ValidationError: truncated or not JSON
            raise StoreError(
                f"manifest of {label} in {self.backend.url} is corrupt (not a valid manifest)",
                hint=repair,
            ) from None
        if manifest.digest() != digest:
            raise StoreError(
                f"manifest of {label} in {self.backend.url} does not match its digest",
                hint=repair,
            )
        self._manifests[digest] = manifest
        return manifest

    def pull(
        self,
        ref: str | Ref,
        dest: str | os.PathLike[str],
        *,
        workers: int | None = None,
        progress: Progress | None = None,
    ) -> builtins.list[Path]:
        """Write a version's files under ``dest`` (ready for ``from_pretrained(dest)``).

        Raises:
            StoreError: A chunk is missing or corrupt; names the file and byte range.
            UnsafeFileError: The manifest holds a path that would escape ``dest``.
        """
        manifest = self.manifest(ref)
        return pull_files(
            manifest,
            Path(dest),
            backend=self.backend,
            index=self.index,
            workers=workers,
            progress=progress,
        )

    def open_tensor(
        self, ref: str | Ref, tensor: str, *, file: str | None = None, raw: bool = False
    ) -> Any:
        """Read one tensor with ranged reads, without pulling the artifact.

        Returns a numpy array (BF16 widened to float32), or with ``raw=True`` the tuple
        ``(bytes, dtype, shape)``.

        Raises:
            KeyError: No such tensor (or file).
        """
        manifest = self.manifest(ref)
        for entry in manifest.files:
            if file is not None and entry.path != file:
                continue
            for t in entry.tensors or []:
                if t.name != tensor:
                    continue
                chunks = [
                    c for c in entry.chunks if c.offset < t.end and c.offset + c.length > t.start
                ]
                locations = self.index.locate(c.digest for c in chunks)
                parts = []
                for c in chunks:
                    location = locations.get(c.digest)
                    if location is None:
                        raise StoreError(
                            str(
                                ChunkProblem(
                                    entry.path,
                                    c.offset,
                                    c.offset + c.length,
                                    c.digest,
                                    MISSING_CHUNK,
                                )
                            )
                        )
                    data = read_chunk(self.backend, location, c.digest)
                    lo = max(t.start - c.offset, 0)
                    hi = min(t.end - c.offset, c.length)
                    parts.append(data[lo:hi])
                blob = b"".join(parts)
                shape = tuple(t.shape)
                return (blob, t.dtype, shape) if raw else decode_tensor(blob, t.dtype, shape)
        raise KeyError(f"no tensor {tensor!r} in {ref}" + (f" file {file}" if file else ""))

    # -- aliases ---------------------------------------------------------------------------

    def alias(self, ref: str | Ref, alias: str) -> ArtifactVersion:
        """Point ``alias`` (e.g. ``production``) at a version, atomically and audited.

        Raises:
            InputError: A promotion policy guards the alias (move it with ``promote``).
        """
        check_label(alias)
        target = self.get(ref)
        if self.alias_guard is not None:
            self.alias_guard(target, alias)
        with self.db.write() as session:
            artifact = self._lock_artifact(session, target.name)
            previous = move_pointer(
                session,
                ArtifactAlias,
                owner_id=artifact.id or 0,
                name=alias,
                version=target.version,
                actor=self.actor,
                entity_type=_ENTITY,
                entity_key=target.name,
            )
            if previous != target.version and target.kind in MODEL_KINDS:
                emit(session, type="model.alias.moved", model=target.name,
                     payload={"alias": alias, "version": target.version, "previous": previous,
                              "actor": self.actor, "via": "alias"})  # fmt: skip
        return self.get(f"{target.name}@{target.version}")

    # -- integrity -------------------------------------------------------------------------

    def verify(
        self,
        ref: str | Ref | None = None,
        *,
        workers: int | None = None,
        repair: str | os.PathLike[str] | None = None,
    ) -> VerifyReport:
        """Re-read and re-hash stored chunks (see :func:`llmops.artifacts.integrity.verify`)."""
        from llmops.artifacts.integrity import verify

        return verify(self, ref, workers=workers, repair=repair)

    def gc(self, *, grace: timedelta = timedelta(hours=1), dry_run: bool = False) -> GcReport:
        """Delete unreferenced data past ``grace`` (see :func:`llmops.artifacts.integrity.gc`)."""
        from llmops.artifacts.integrity import gc

        return gc(self, grace=grace, dry_run=dry_run)


def _version(row: ArtifactVersionRow, name: str, aliases: builtins.list[str]) -> ArtifactVersion:
    return ArtifactVersion(
        name=name,
        version=row.version,
        digest=row.digest,
        kind=row.kind,
        bytes_total=row.bytes_total,
        file_count=row.file_count,
        parents=list(row.parents),
        meta=dict(row.meta),
        message=row.message,
        created_by=row.created_by,
        created_at=as_utc(row.created_at),
        aliases=aliases,
        store=row.store,
    )
