"""The prompt registry: immutable numbered versions, movable labels, history and a local cache."""

from __future__ import annotations

import builtins
import os
import time
import warnings
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session, col

from llmops._display import Listing
from llmops.db import Database
from llmops.db.audit import record_event
from llmops.db.models import Prompt, PromptLabel, PromptVersionRow
from llmops.db.pointers import move_pointer
from llmops.db.timestamps import as_utc, as_utc_column
from llmops.db.versioned import Appended, append_version, lock_owner, with_retries
from llmops.errors import DatabaseUnavailableError, InputError, PromptFileError, PromptNotFoundError
from llmops.prompts import _queries
from llmops.prompts.diff import PromptDiff, diff_specs
from llmops.prompts.files import (
    find_prompt_files,
    load_prompt_file,
    user_prompt,
    write_prompt_file,
)
from llmops.prompts.records import (
    HistoryAction,
    HistoryEntry,
    LabelMove,
    PromptSummary,
    PromptVersion,
    PushResult,
    VersionInfo,
    is_builtin,
)
from llmops.prompts.spec import PromptSpec
from llmops.refs import Ref, check_label, check_name, local_path, parse_ref

__all__ = ["PromptRegistry", "StalePromptWarning"]

_ENTITY = "prompt"
_PUSH_RETRIES = 8


def _no_such_prompt(name: str | None) -> PromptNotFoundError:
    return PromptNotFoundError(
        f"no prompt named {name!r}",
        hint="see `llmops prompts list`, or push it with `llmops prompts push`",
    )


class StalePromptWarning(UserWarning):
    """``get()`` served a cached version because the registry database could not be reached."""


_SPEC_CACHE: dict[tuple[str, str], PromptSpec] = {}
_SPEC_CACHE_MAX = 4096


def _spec_of(name: str, digest: str, data: dict[str, Any]) -> PromptSpec:
    # Content is immutable per digest, so one parsed spec serves every lookup of it.
    key = (name, digest)
    spec = _SPEC_CACHE.get(key)
    if spec is None:
        spec = PromptSpec.model_validate({**data, "name": name})
        if len(_SPEC_CACHE) >= _SPEC_CACHE_MAX:
            _SPEC_CACHE.clear()
        _SPEC_CACHE[key] = spec
    return spec


def _ref_of(ref: str | Ref, version: int | None, label: str | None) -> Ref:
    parsed = parse_ref(ref) if isinstance(ref, str) else ref
    if version is not None and label is not None:
        raise ValueError("give version or label, not both")
    if parsed.kind == "digest":
        return parsed
    if (version is not None or label is not None) and parsed.kind != "latest":
        raise ValueError(f"{ref!r} already selects a version; do not also pass version/label")
    if version is not None:
        return Ref(name=parsed.name, version=version)
    if label is not None:
        return Ref(name=parsed.name, label=label)
    return parsed


class PromptRegistry:
    """Versioned prompts in the registry database.

    Reach it as ``Workspace.prompts``. Versions are numbered per prompt from 1 and never change;
    labels such as ``production`` are movable pointers; every change is audited.

    Args:
        db: The registry database.
        actor: Name recorded as author of pushes and label moves.
        cache_ttl_s: How long ``get()`` may reuse a lookup (0 turns the cache off).
        prompts_dir: Where ``push()`` and ``pull()`` look for prompt files by default.
        root: Relative paths not found from the current folder are taken from here (the
            workspace root; default: the folder holding ``prompts_dir``).
    """

    def __init__(
        self,
        db: Database,
        *,
        actor: str,
        cache_ttl_s: float = 30.0,
        prompts_dir: Path | None = None,
        root: Path | None = None,
    ) -> None:
        self.db = db
        self.actor = actor
        self.cache_ttl_s = cache_ttl_s
        self.prompts_dir = prompts_dir
        self.root = root if root is not None else prompts_dir.parent if prompts_dir else None
        self._cache: dict[Ref, tuple[float, PromptVersion]] = {}

    def __repr__(self) -> str:
        return f"PromptRegistry({self.db.display_url!r})"

    # -- reading ---------------------------------------------------------------------------

    def get(
        self,
        ref: str | Ref,
        *,
        version: int | None = None,
        label: str | None = None,
        cache: bool = True,
    ) -> PromptVersion:
        """Fetch a prompt version by reference: ``name``, ``name@3``, ``name@production``.

        Lookups are cached for ``cache_ttl_s`` seconds. When the database cannot be reached, the
        last version seen for the same reference is returned with a :class:`StalePromptWarning`.

        Raises:
            PromptNotFoundError: No such prompt, version or label.
            DatabaseUnavailableError: The database is unreachable and nothing is cached.
        """
        key = _ref_of(ref, version, label)
        now = time.monotonic()
        hit = self._cache.get(key) if cache else None
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            found = self._lookup(key)
        except DatabaseUnavailableError as exc:
            stale = self._cache.get(key)
            if stale is None:
                raise
            warnings.warn(
                f"serving cached {stale[1].ref} for {key}: {exc.message}",
                StalePromptWarning,
                stacklevel=2,
            )
            return stale[1]
        if self.cache_ttl_s > 0:
            self._cache[key] = (now + self.cache_ttl_s, found)
        return found

    def _lookup(self, ref: Ref) -> PromptVersion:
        params: dict[str, Any] = {"name": ref.name}
        if ref.kind == "digest":
            params = {"digest": ref.digest}
        elif ref.kind == "version":
            params["version"] = ref.version
        elif ref.kind == "label":
            params["label"] = ref.label
        with self.db.connect() as conn:
            row = conn.execute(_queries.lookup(ref.kind), params).first()
            if row is None:
                raise self._not_found(conn, ref)
            labels = tuple(
                conn.execute(
                    _queries.labels_of_version(),
                    {"prompt_id": row.prompt_id, "version": row.version},
                ).scalars()
            )
        return PromptVersion(
            name=row.name,
            version=row.version,
            digest=row.digest,
            message=row.message,
            author=row.author,
            created_at=as_utc(row.created_at),
            archived=row.archived,
            labels=labels,
            spec=_spec_of(row.name, row.digest, row.spec),
        )

    def _not_found(self, conn: Any, ref: Ref) -> PromptNotFoundError:
        if ref.kind == "digest":
            return PromptNotFoundError(f"no prompt version has digest {ref.digest}")
        exists = conn.execute(_queries.prompt_id(), {"name": ref.name}).first()
        if exists is None:
            return _no_such_prompt(ref.name)
        if ref.kind == "label":
            return PromptNotFoundError(
                f"prompt {ref.name!r} has no label {ref.label!r}",
                hint=f"set it with `llmops prompts label {ref.name}@VERSION {ref.label}`",
            )
        if ref.kind == "version":
            return PromptNotFoundError(
                f"prompt {ref.name!r} has no version {ref.version}",
                hint=f"see `llmops prompts list {ref.name}`",
            )
        return PromptNotFoundError(
            f"every version of prompt {ref.name!r} is archived",
            hint="ask for a version explicitly (name@N) or unarchive one",
        )

    def list(self, *, include_builtin: bool = False) -> Listing[PromptSummary]:
        """Every prompt with its latest version number and labels, by name; the built-in ones
        (``llmops-*``, such as the judge prompts) only with ``include_builtin``."""
        with self.db.connect() as conn:
            prompts = conn.execute(
                select(
                    col(Prompt.id),
                    col(Prompt.name),
                    col(Prompt.latest_version),
                    col(Prompt.created_at),
                ).order_by(col(Prompt.name))
            ).all()
            labels: dict[int, dict[str, int]] = {}
            for pid, label, version in conn.execute(
                select(
                    col(PromptLabel.prompt_id), col(PromptLabel.label), col(PromptLabel.version)
                ).order_by(col(PromptLabel.label))
            ):
                labels.setdefault(pid, {})[label] = version
        return Listing(
            PromptSummary(
                name=row.name,
                latest_version=row.latest_version,
                labels=labels.get(row.id, {}),
                created_at=as_utc(row.created_at),
            )
            for row in prompts
            if include_builtin or not is_builtin(row.name)
        )

    def versions(self, name: str, *, include_archived: bool = True) -> builtins.list[VersionInfo]:
        """Every version of prompt ``name``, oldest first, without content.

        Raises:
            PromptNotFoundError: No prompt has that name.
        """
        check_name(name, what="prompt name")
        # Thousands of small objects: pausing the cyclic GC saves ~40% (none of them are cycles).
        with _queries.gc_paused(), self.db.connect() as conn:
            pid = self._prompt_id(conn, name)
            labels: dict[int, builtins.list[str]] = {}
            for label, version in conn.execute(_queries.labels_of_prompt(), {"prompt_id": pid}):
                labels.setdefault(version, []).append(label)
            rows = conn.execute(_queries.version_rows(include_archived), {"prompt_id": pid}).all()
            stamps = as_utc_column([row[4] for row in rows])
            return [
                VersionInfo(
                    name=name,
                    version=version,
                    digest=digest,
                    message=message,
                    author=author,
                    created_at=stamp,
                    archived=bool(archived),
                    labels=labels.get(version, []),
                )
                for (version, digest, message, author, _, archived), stamp in zip(
                    rows, stamps, strict=True
                )
            ]

    def history(self, name: str) -> builtins.list[HistoryEntry]:
        """Everything that happened to prompt ``name``, oldest first, from the audit log.

        Raises:
            PromptNotFoundError: No prompt has that name.
        """
        check_name(name, what="prompt name")
        with _queries.gc_paused(), self.db.connect() as conn:
            self._prompt_id(conn, name)
            rows = conn.execute(_queries.history_rows(), {"name": name}).all()
            stamps = as_utc_column([row[0] for row in rows])
            befores = _queries.decode_json_column([row[3] for row in rows])
            afters = _queries.decode_json_column([row[4] for row in rows])
            return [
                _history_entry(stamp, row[1], row[2], before, after)
                for row, stamp, before, after in zip(rows, stamps, befores, afters, strict=True)
            ]

    def diff(self, a: str | Ref, b: str | Ref) -> PromptDiff:
        """What changed from version ``a`` to version ``b`` (messages, variables, parameters)."""
        left, right = self.get(a, cache=False), self.get(b, cache=False)
        return diff_specs(left.spec, right.spec, a=left.ref, b=right.ref)

    @staticmethod
    def _prompt_id(conn: Any, name: str) -> int:
        row = conn.execute(_queries.prompt_id(), {"name": name}).first()
        if row is None:
            raise _no_such_prompt(name)
        return int(row[0])

    # -- writing ---------------------------------------------------------------------------

    def push(
        self,
        source: PromptSpec | str | os.PathLike[str],
        *,
        message: str = "",
        author: str | None = None,
    ) -> PushResult:
        """Store ``source`` (a spec or a prompt file) as a new version unless identical content
        already exists, in which case nothing is written and ``created`` is False.

        Safe under concurrency: parallel pushes of the same prompt get consecutive numbers.
        """
        path: str | None = None
        if not isinstance(source, PromptSpec):
            found = self._local(source)
            path = str(found)
            source = user_prompt(load_prompt_file(found), found)
        return self._push_spec(source, message=message, author=author or self.actor, path=path)

    def _local(self, source: str | os.PathLike[str]) -> Path:
        """A relative path from the current folder, else from the workspace root (the folder
        that holds ``prompts_dir``), as a notebook in a sub-folder expects."""
        return local_path(source, self.root)

    def push_files(
        self, paths: Sequence[str | os.PathLike[str]] | None = None, *, message: str = ""
    ) -> builtins.list[PushResult]:
        """Validate every prompt file under ``paths`` (default: the workspace's ``prompts/``)
        first, then push each. A bad file stops the push before anything is written.

        Raises:
            PromptFileError: A file is invalid, or two files declare the same prompt name.
        """
        if not paths:
            if self.prompts_dir is None:
                raise InputError("no paths given and no workspace prompts directory to default to")
            paths = [self.prompts_dir]
        files = find_prompt_files(paths)
        specs: builtins.list[tuple[Path, PromptSpec]] = []
        seen: dict[str, Path] = {}
        for file in files:
            spec = user_prompt(load_prompt_file(file), file)
            if spec.name in seen:
                raise PromptFileError(
                    f"prompt name {spec.name!r} is also declared in {seen[spec.name]}",
                    path=str(file),
                    hint="give each prompt file its own name",
                )
            seen[spec.name] = file
            specs.append((file, spec))
        return [
            self._push_spec(spec, message=message, author=self.actor, path=str(file))
            for file, spec in specs
        ]

    def _push_spec(
        self, spec: PromptSpec, *, message: str, author: str, path: str | None
    ) -> PushResult:
        digest = spec.digest()
        canonical = spec.canonical()

        def write() -> Appended:
            with self.db.write() as session:
                prompt = self._lock_prompt(session, spec.name, create_as=author)
                return append_version(
                    session, prompt, versions=PromptVersionRow, owner_column="prompt_id",
                    digest=digest, actor=author, entity_type=_ENTITY,
                    audit={"message": message},
                    build=lambda owner_id, number: PromptVersionRow(
                        prompt_id=owner_id, version=number, digest=digest, spec=canonical,
                        message=message, author=author,
                    ),
                )  # fmt: skip

        appended = with_retries(write)
        if appended.created:
            self._forget(spec.name)
        return PushResult(
            name=spec.name, version=appended.number, digest=digest, created=appended.created,
            path=path,
        )  # fmt: skip

    @staticmethod
    def _lock_prompt(session: Session, name: str, *, create_as: str | None = None) -> Prompt:
        return lock_owner(session, Prompt, name, create_as=create_as, not_found=_no_such_prompt)

    def label(self, ref: str | Ref, label: str) -> LabelMove:
        """Point ``label`` at the version ``ref`` names, atomically and audited.

        Raises:
            PromptNotFoundError: The version does not exist.
            InvalidNameError: The label is not allowed (all digits, ``latest``, bad characters).
        """
        check_label(label)
        parsed = parse_ref(ref) if isinstance(ref, str) else ref
        if parsed.kind == "digest":
            raise InputError("label a prompt by name and version (NAME@N), not by digest")
        assert parsed.name is not None
        with self.db.write() as session:
            prompt = self._lock_prompt(session, parsed.name)
            target = self._resolve_locked(session, prompt, parsed)
            previous = move_pointer(
                session,
                PromptLabel,
                owner_id=prompt.id or 0,
                name=label,
                version=target,
                actor=self.actor,
                entity_type=_ENTITY,
                entity_key=parsed.name,
            )
        self._forget(parsed.name)
        return LabelMove(name=parsed.name, label=label, previous_version=previous, version=target)

    def unlabel(self, name: str, label: str) -> LabelMove:
        """Remove ``label`` from prompt ``name`` (audited).

        Raises:
            PromptNotFoundError: The prompt or the label does not exist.
        """
        check_name(name, what="prompt name")
        with self.db.write() as session:
            prompt = self._lock_prompt(session, name)
            row = session.get(PromptLabel, (prompt.id, label))
            if row is None:
                raise PromptNotFoundError(f"prompt {name!r} has no label {label!r}")
            previous = row.version
            session.delete(row)
            record_event(
                session,
                actor=self.actor,
                action="prompt.label.delete",
                entity_type=_ENTITY,
                entity_key=name,
                before={"label": label, "version": previous},
                after=None,
            )
        self._forget(name)
        return LabelMove(name=name, label=label, previous_version=previous, version=None)

    def archive(self, ref: str | Ref, *, archived: bool = True) -> VersionInfo:
        """Archive (or unarchive) a version: it stays readable by number but leaves ``latest``."""
        parsed = parse_ref(ref) if isinstance(ref, str) else ref
        if parsed.kind == "digest" or parsed.name is None:
            raise InputError("archive a prompt version by name and version (NAME@N)")
        with self.db.write() as session:
            prompt = self._lock_prompt(session, parsed.name)
            number = self._resolve_locked(session, prompt, parsed)
            row = session.execute(
                select(PromptVersionRow)
                .where(col(PromptVersionRow.prompt_id) == prompt.id)
                .where(col(PromptVersionRow.version) == number)
            ).scalar_one()
            if row.archived != archived:
                row.archived = archived
                session.add(row)
                record_event(
                    session,
                    actor=self.actor,
                    action="prompt.version.archive" if archived else "prompt.version.unarchive",
                    entity_type=_ENTITY,
                    entity_key=parsed.name,
                    before={"version": number, "archived": not archived},
                    after={"version": number, "archived": archived},
                )
        self._forget(parsed.name)
        return next(v for v in self.versions(parsed.name) if v.version == number)

    def _resolve_locked(self, session: Session, prompt: Prompt, ref: Ref) -> int:
        pv = PromptVersionRow
        query = select(func.max(col(pv.version))).where(col(pv.prompt_id) == prompt.id)
        if ref.kind == "version":
            query = query.where(col(pv.version) == ref.version)
        elif ref.kind == "label":
            row = session.get(PromptLabel, (prompt.id, ref.label))
            if row is None:
                raise PromptNotFoundError(f"prompt {prompt.name!r} has no label {ref.label!r}")
            return row.version
        else:
            query = query.where(col(pv.archived).is_(False))
        number = session.execute(query).scalar()
        if number is None:
            raise PromptNotFoundError(
                f"prompt {prompt.name!r} has no version {ref.version}"
                if ref.kind == "version"
                else f"prompt {prompt.name!r} has no unarchived version",
                hint=f"see `llmops prompts list {prompt.name}`",
            )
        return int(number)

    def _forget(self, name: str) -> None:
        for key in [k for k in self._cache if k.name == name or k.kind == "digest"]:
            del self._cache[key]

    def clear_cache(self) -> None:
        """Drop every cached lookup."""
        self._cache.clear()

    # -- files -----------------------------------------------------------------------------

    def pull(
        self,
        refs: Iterable[str] | None = None,
        *,
        directory: str | os.PathLike[str] | None = None,
        include_builtin: bool = False,
    ) -> builtins.list[PushResult]:
        """Write registry versions back to prompt files (default: the latest of every prompt,
        the built-in ``llmops-*`` ones only with ``include_builtin``).

        A prompt already kept in a file under ``directory`` is written to that file; others go
        to ``<directory>/<name>.yaml``. Writes are atomic. ``created`` in the result says
        whether the file changed.
        """
        target = Path(directory) if directory is not None else self.prompts_dir
        if target is None:
            raise InputError("no directory given and no workspace prompts directory")
        existing: dict[str, Path] = {}
        if target.is_dir():
            for file in find_prompt_files([target]):
                try:
                    existing[load_prompt_file(file).name] = file
                except InputError:
                    continue  # a broken file is left alone; its prompt goes to <name>.yaml
        wanted = (
            builtins.list(refs)
            if refs
            else [s.name for s in self.list(include_builtin=include_builtin)]
        )
        results = []
        for ref in wanted:
            found = self.get(ref, cache=False)
            path = existing.get(found.name, target / f"{found.name}.yaml")
            before = None
            if path.is_file():
                try:
                    before = load_prompt_file(path).digest()
                except InputError:
                    before = None
            changed = before != found.digest
            if changed:
                write_prompt_file(found.spec, path)
            results.append(
                PushResult(
                    name=found.name,
                    version=found.version,
                    digest=found.digest,
                    created=changed,
                    path=str(path),
                )
            )
        return results


_ACTIONS: dict[str, HistoryAction] = {
    "prompt.version.create": "create",
    "prompt.label.set": "label",
    "prompt.label.delete": "unlabel",
    "prompt.version.archive": "archive",
    "prompt.version.unarchive": "unarchive",
}


def _history_entry(
    at: datetime,
    actor: str,
    action: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> HistoryEntry:
    before, after = before or {}, after or {}
    kind = _ACTIONS[action]
    return HistoryEntry(
        at=at,
        actor=actor,
        action=kind,
        version=after.get("version") if kind != "unlabel" else None,
        label=before.get("label") or after.get("label"),
        previous_version=before.get("version") if kind in ("label", "unlabel") else None,
        message=after.get("message", "") if kind == "create" else "",
    )
