"""The model registry: model versions are artifact versions of kind ``base-model``, ``adapter``
or ``merged-model`` (names, numbers, digests, parents and aliases come from the artifact store);
the registry adds promotion policies with evidence and approvals, rollback, semantic versions
and the audited, evented history of all of it.

A guarded alias moves only through :meth:`ModelRegistry.promote`: the policy's conditions are
checked against the database (eval evidence by digest, approvals), then the alias moves in one
write transaction under the model's row lock, only if its holder is still the one the check saw
(two promotions racing on one alias: exactly one wins, the other gets a
:class:`~llmops.errors.ConflictError`). Every decision is audited (who, when, the policy's
digest, the evidence) and written to the event outbox in the same transaction.
"""

from __future__ import annotations

import builtins
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlmodel import col

from llmops.db.audit import record_event
from llmops.db.models import (
    Artifact,
    ArtifactAlias,
    ArtifactVersionRow,
    AuditEvent,
    ModelRequest,
    ModelSemver,
)
from llmops.db.outbox import MODEL_KINDS, emit
from llmops.db.pointers import move_pointer
from llmops.db.timestamps import as_utc, utcnow
from llmops.db.versioned import lock_owner
from llmops.errors import (
    ArtifactNotFoundError,
    ConflictError,
    InputError,
)
from llmops.registry.approvals import decide
from llmops.registry.conditions import check_conditions
from llmops.registry.evidence import tested_in
from llmops.registry.policy import Policy, load_policy
from llmops.registry.records import (
    ApprovalResult,
    Condition,
    ModelSummary,
    ModelVersionInfo,
    PromotionVerdict,
    RollbackResult,
)
from llmops.registry.rollback import rollback

if TYPE_CHECKING:
    from llmops.artifacts.store import ArtifactStore, ArtifactVersion
    from llmops.db import Database
    from llmops.evals.results import EvalRuns

__all__ = ["SEMVER", "ModelRegistry"]

_ID = r"(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)"
SEMVER = re.compile(
    rf"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-{_ID}(?:\.{_ID})*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)
"""Semantic Versioning 2.0.0 (``1.2.0``, ``1.3.0-rc.1``)."""
_ENTITY = "artifact"


class ModelRegistry:
    """Model versions, policies, promotions, approvals and rollbacks (``ws.models``)."""

    def __init__(
        self,
        db: Database,
        artifacts: ArtifactStore,
        evals: EvalRuns,
        *,
        actor: str,
        policies_dir: Path,
    ) -> None:
        self.db = db
        self.artifacts = artifacts
        self.evals = evals
        self.actor = actor
        self.policies_dir = policies_dir
        self._policies: dict[str, tuple[float, Policy]] = {}

    def __repr__(self) -> str:
        return f"ModelRegistry({self.policies_dir}; .list(), .show(ref), .promote(ref, alias))"

    # -- policies --------------------------------------------------------------------------

    def policy(self, name: str) -> Policy | None:
        """The policy in ``policies/<name>.yaml`` (None when there is none).

        Raises:
            PolicyError: The file is invalid (named, with lines).
        """
        path = self.policies_dir / f"{name}.yaml"
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return None
        cached = self._policies.get(name)
        if cached is None or cached[0] != mtime:
            cached = (mtime, load_policy(path))
            self._policies[name] = cached
        return cached[1]

    def _policy_names(self) -> set[str]:
        try:
            with os.scandir(self.policies_dir) as entries:
                return {e.name[:-5] for e in entries if e.name.endswith(".yaml")}
        except FileNotFoundError:
            return set()

    def guard(self, version: ArtifactVersion, alias: str) -> None:
        """Refuse a plain alias move onto an alias a policy guards (the artifact store's hook).

        Raises:
            InputError: The alias is guarded.
        """
        if version.kind not in MODEL_KINDS:
            return  # policies are for model versions; a dataset's aliases move freely
        policy = self.policy(version.name)
        if policy is not None and alias in policy.guards:
            raise InputError(
                f"alias {alias!r} of {version.name} is guarded by"
                f" {self.policies_dir / (version.name + '.yaml')}",
                hint=f"move it with `llmops models promote {version.ref} {alias}`",
            )

    # -- reading ---------------------------------------------------------------------------

    def list(self) -> builtins.list[ModelSummary]:
        """Every model (artifacts of a model kind) with its latest version and aliases."""
        v, a, al = ArtifactVersionRow, Artifact, ArtifactAlias
        # One round trip: the latest version of each model with its aliases (outer join).
        query = (
            select(col(a.id), col(a.name), col(a.latest_version), col(v.kind), col(al.alias),
                   col(al.version))
            .join(v, (col(v.artifact_id) == col(a.id)) & (col(v.version) == a.latest_version))
            .outerjoin(al, col(al.artifact_id) == col(a.id))
            .where(col(v.kind).in_(MODEL_KINDS))
            .order_by(col(a.name))
        )  # fmt: skip
        with self.db.read() as session:
            found = session.execute(query).all()
        rows: dict[int, tuple[str, int, str]] = {}
        aliases: dict[int, dict[str, int]] = {}
        for artifact_id, name, latest, kind, alias, held in found:
            rows.setdefault(artifact_id, (name, latest, kind))
            if alias is not None:
                aliases.setdefault(artifact_id, {})[alias] = held
        out = []
        with_policy = self._policy_names()  # one directory read, not a stat per model
        for artifact_id, (name, latest, kind) in rows.items():
            policy = self.policy(name) if name in with_policy else None
            out.append(
                ModelSummary(
                    name=name,
                    kind=kind,
                    latest_version=latest,
                    versions=latest,
                    aliases=dict(sorted(aliases.get(artifact_id, {}).items())),
                    guarded=list(policy.guards) if policy else [],
                )
            )
        return out

    def get(self, ref: str) -> ArtifactVersion:
        """The model version ``ref`` names (``name@3``, ``name@production``, ``name@v1.2.0``).

        Raises:
            ArtifactNotFoundError: No such version, or it is not a model.
        """
        name, _, rest = ref.partition("@")
        if rest.startswith("v") and SEMVER.fullmatch(rest[1:]):
            with self.db.read() as session:
                found = session.execute(
                    select(col(ModelSemver.version))
                    .join(Artifact, col(Artifact.id) == col(ModelSemver.artifact_id))
                    .where(col(Artifact.name) == name, col(ModelSemver.semver) == rest[1:])
                ).first()
            if found is None:
                raise ArtifactNotFoundError(
                    f"model {name!r} has no semantic version {rest[1:]}",
                    hint=f"see `llmops models show {name}`",
                )
            ref = f"{name}@{found[0]}"
        version = self.artifacts.get(ref)
        if version.kind not in MODEL_KINDS:
            raise ArtifactNotFoundError(
                f"{version.ref} is a {version.kind} artifact, not a model version",
                hint="models are artifacts of kind base-model, adapter or merged-model",
            )
        return version

    def show(self, ref: str) -> ModelVersionInfo:
        """A version with its digest, lineage, aliases, semantic version, the eval runs that
        tested it and its promotion history."""
        version = self.get(ref)
        tested = tested_in(self.db, version.digest, kind=version.kind)
        with self.db.read() as session:
            semver = session.scalar(
                select(col(ModelSemver.semver))
                .join(Artifact, col(Artifact.id) == col(ModelSemver.artifact_id))
                .where(
                    col(Artifact.name) == version.name, col(ModelSemver.version) == version.version
                )
            )
        base = next((p for p in version.parents if self._kind_of(p) == "base-model"), None)
        return ModelVersionInfo(
            name=version.name,
            version=version.version,
            digest=version.digest,
            kind=version.kind,
            semver=semver,
            base_model=base,
            run=version.meta.get("run_id"),
            parents=list(version.parents),
            aliases=list(version.aliases),
            eval_runs=list(dict.fromkeys(t.run_id for t in tested)),
            promotions=[
                e for e in self.history(version.name) if e.get("version") == version.version
            ],
            created_by=version.created_by,
            created_at=version.created_at,
        )

    def card(self, ref: str) -> str:
        """The version's model card (README.md): base model, method and hyperparameters,
        dataset fingerprint, eval results with intervals, intended use, lineage."""
        from llmops.registry.card import CardData, model_card

        info = self.show(ref)
        meta = self.get(info.ref).meta
        base = self.artifacts.get(info.base_model) if info.base_model else None
        evals = []
        for tested in tested_in(self.db, info.digest, kind=info.kind)[:20]:
            summary = self.evals.get(tested.run_id).summary_model
            if summary is not None:
                numbers = summary.target(tested.target).model_dump(exclude_none=True)
                evals.append({"run_id": tested.run_id, "suite": tested.suite,
                              "target": tested.target, **numbers})  # fmt: skip
        run = meta.get("run_id")
        return model_card(
            CardData(
                name=info.name, ref=info.ref, digest=info.digest, kind=info.kind,
                base_model=base.name if base else None, base_ref=base.ref if base else None,
                base_digest=base.digest if base else None, recipe=meta.get("recipe"),
                recipe_hash=meta.get("recipe_hash"), dataset=meta.get("dataset"),
                dataset_fingerprint=meta.get("dataset_fingerprint"), run_id=run,
                evals=evals, parents=info.parents, aliases=info.aliases,
            )
        )  # fmt: skip

    def _kind_of(self, ref: str) -> str | None:
        try:
            return self.artifacts.get(ref).kind
        except (ArtifactNotFoundError, InputError):
            return None

    def history(self, name: str) -> builtins.list[dict[str, Any]]:
        """Every registry decision and alias move of model ``name``, oldest first."""
        with self.db.read() as session:
            events = session.scalars(
                select(AuditEvent)
                .where(col(AuditEvent.entity_type) == _ENTITY, col(AuditEvent.entity_key) == name)
                .order_by(col(AuditEvent.id))
            ).all()
        out = []
        for e in events:
            after = dict(e.after or {})
            out.append(
                {
                    "at": as_utc(e.at).isoformat(),
                    "actor": e.actor,
                    "action": e.action,
                    "version": after.pop("version", None),
                    **after,
                }
            )
        return out

    # -- semantic versions -----------------------------------------------------------------

    def set_semver(self, ref: str, semver: str) -> ModelVersionInfo:
        """Give a version a semantic version (once; unique per model), resolvable as
        ``name@v<semver>``.

        Raises:
            InputError: Not a semantic version, or taken by another version of the model.
        """
        semver = semver.removeprefix("v")
        if len(semver) > 64 or SEMVER.fullmatch(semver) is None:
            raise InputError(
                f"{semver!r} is not a semantic version", hint="write MAJOR.MINOR.PATCH, e.g. 1.2.0"
            )
        version = self.get(ref)
        with self.db.write() as session:
            artifact = self.lock(session, version.name)
            taken = session.get(ModelSemver, (artifact.id, semver))
            mine = session.scalar(
                select(col(ModelSemver.semver)).where(
                    col(ModelSemver.artifact_id) == artifact.id,
                    col(ModelSemver.version) == version.version,
                )
            )
            if taken is not None and taken.version != version.version:
                raise InputError(
                    f"{version.name} v{semver} is already version {taken.version}",
                    hint="semantic versions never move; give this version another one",
                )
            if mine is not None and mine != semver:
                raise InputError(f"{version.ref} already is v{mine}", hint="it never changes")
            if taken is None:
                session.add(
                    ModelSemver(
                        artifact_id=artifact.id or 0,
                        semver=semver,
                        version=version.version,
                        created_by=self.actor,
                    )
                )
                record_event(
                    session,
                    actor=self.actor,
                    action="model.semver.set",
                    entity_type=_ENTITY,
                    entity_key=version.name,
                    after={"version": version.version, "semver": semver},
                )
        return self.show(version.ref)

    # -- promotion -------------------------------------------------------------------------

    def promote(self, ref: str, alias: str, *, dry_run: bool = False) -> PromotionVerdict:
        """Move ``alias`` to ``ref`` if the model's policy allows it; else say which conditions
        fail. With approvals as the only unmet condition, a promotion request is recorded (the
        next ``promote`` with enough approvals moves the alias).

        Raises:
            ConflictError: The alias moved while the conditions were checked.
        """
        version = self.get(ref)
        policy = self.policy(version.name)
        guarded = policy is not None and alias in policy.guards
        holder = self._holder(version.name, alias)
        conditions: builtins.list[Condition] = []
        evidence: builtins.list[dict[str, Any]] = []
        request = self.pending(version, alias)
        if guarded:
            assert policy is not None
            conditions = check_conditions(self, policy, version, holder, request, evidence)
        verdict = PromotionVerdict(
            name=version.name,
            version=version.version,
            alias=alias,
            promoted=False,
            dry_run=dry_run,
            conditions=conditions,
            previous=holder,
            policy=str(self.policies_dir / f"{version.name}.yaml") if guarded else None,
            policy_digest=policy.digest() if guarded and policy else None,
            request_id=request.id if request is not None else None,
            evidence=evidence,
        )
        if dry_run:
            return verdict
        if verdict.ok:
            self._move(version, alias, holder, verdict, request)
            verdict.promoted = True
        elif verdict.unmet == ["approvals"]:
            verdict.request_id = self._request(version, alias, verdict, request)
        else:
            self._decided(version, "model.promotion.refused", verdict)
        return verdict

    # -- approvals and rollback -----------------------------------------------------------

    def approve(self, ref: str, alias: str, *, comment: str = "") -> ApprovalResult:
        """Approve the pending promotion of ``ref`` to ``alias`` as the current user (see
        :func:`llmops.registry.approvals.decide`)."""
        return decide(self, ref, alias, "approve", comment)

    def reject(self, ref: str, alias: str, *, comment: str = "") -> ApprovalResult:
        """Reject the pending promotion of ``ref`` to ``alias`` (a new request is needed)."""
        return decide(self, ref, alias, "reject", comment)

    def rollback(self, ref: str) -> RollbackResult:
        """Move ``name@alias`` back to its previous holder (see
        :func:`llmops.registry.rollback.rollback`)."""
        return rollback(self, ref)

    # -- writes ----------------------------------------------------------------------------

    def lock(self, session: Any, name: str) -> Artifact:
        """The model's artifact row, locked for the transaction."""
        return lock_owner(
            session,
            Artifact,
            name,
            not_found=lambda n: ArtifactNotFoundError(
                f"no model named {n!r}", hint="see `llmops models list`"
            ),
        )

    def _holder(self, name: str, alias: str) -> int | None:
        with self.db.read() as session:
            return session.scalar(
                select(col(ArtifactAlias.version))
                .join(Artifact, col(Artifact.id) == col(ArtifactAlias.artifact_id))
                .where(col(Artifact.name) == name, col(ArtifactAlias.alias) == alias)
            )

    def pending(self, version: ArtifactVersion, alias: str) -> ModelRequest | None:
        """The promotion request of ``version`` to ``alias`` waiting for approvals."""
        with self.db.read() as session:
            return session.scalar(
                select(ModelRequest)
                .join(Artifact, col(Artifact.id) == col(ModelRequest.artifact_id))
                .where(
                    col(Artifact.name) == version.name,
                    col(ModelRequest.version) == version.version,
                    col(ModelRequest.alias) == alias,
                    col(ModelRequest.status) == "pending",
                )
                .order_by(col(ModelRequest.id).desc())
            )

    def _move(
        self,
        version: ArtifactVersion,
        alias: str,
        holder: int | None,
        verdict: PromotionVerdict,
        request: ModelRequest | None,
    ) -> None:
        with self.db.write() as session:
            artifact = self.lock(session, version.name)
            now = session.get(ArtifactAlias, (artifact.id, alias))
            if (now.version if now is not None else None) != holder:
                raise ConflictError(
                    f"{version.name}@{alias} moved to version {now.version if now else None}"
                    f" while this promotion was checked (it held {holder})",
                    hint="run the promotion again: its conditions are checked anew",
                )
            move_pointer(
                session,
                ArtifactAlias,
                owner_id=artifact.id or 0,
                name=alias,
                version=version.version,
                actor=self.actor,
                entity_type=_ENTITY,
                entity_key=version.name,
                note={"via": "promote"},
            )
            if request is not None:
                row = session.get(ModelRequest, request.id)
                if row is not None:
                    row.status, row.decided_at = "promoted", utcnow()
            self._record(session, version, "model.promoted", verdict)

    def _request(
        self,
        version: ArtifactVersion,
        alias: str,
        verdict: PromotionVerdict,
        existing: ModelRequest | None,
    ) -> int:
        if existing is not None:
            return existing.id or 0
        with self.db.write() as session:
            artifact = self.lock(session, version.name)
            row = ModelRequest(
                artifact_id=artifact.id or 0,
                version=version.version,
                alias=alias,
                status="pending",
                requested_by=self.actor,
                policy_digest=verdict.policy_digest or "",
            )
            session.add(row)
            session.flush()
            verdict.request_id = row.id
            self._record(session, version, "model.promotion.requested", verdict)
            return row.id or 0

    def _decided(self, version: ArtifactVersion, event: str, verdict: PromotionVerdict) -> None:
        with self.db.write() as session:
            self._record(session, version, event, verdict)

    def _record(
        self, session: Any, version: ArtifactVersion, event: str, verdict: PromotionVerdict
    ) -> None:
        details = {
            "version": version.version,
            "alias": verdict.alias,
            "previous": verdict.previous,
            "policy_digest": verdict.policy_digest,
            "request_id": verdict.request_id,
            "conditions": [c.to_json() for c in verdict.conditions],
            "evidence": verdict.evidence,
        }
        record_event(
            session,
            actor=self.actor,
            action=event,
            entity_type=_ENTITY,
            entity_key=version.name,
            after=details,
        )
        emit(
            session,
            type=event,
            model=version.name,
            payload={**details, "digest": version.digest, "actor": self.actor},
        )
