"""``ws.serving``: backends, traffic policies, API keys, the gateway and its numbers, from one
place (the CLI's ``serve``, ``traffic`` and ``gateway`` groups call these)."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from sqlalchemy import func, select
from sqlmodel import col

from llmops.db.models import ShadowPair
from llmops.errors import InputError, NotFoundError
from llmops.serve.backends import Backends
from llmops.serve.keys import ApiKeys
from llmops.serve.records import Backend, TrafficStatus
from llmops.serve.rollup import arm_stats
from llmops.serve.traffic import Traffic

if TYPE_CHECKING:
    import subprocess

    from llmops.artifacts.resolver import ModelResolver
    from llmops.artifacts.store import ArtifactVersion
    from llmops.prompts import PromptRegistry
    from llmops.registry import ModelRegistry
    from llmops.serve.backends import BackendKind
    from llmops.serve.gateway import Gateway, GatewayConfig
    from llmops.serve.launch import Launched, LaunchPlan

__all__ = ["Serving"]


class Serving:
    """Serving for one registry: ``backends``, ``traffic``, ``keys``, ``start``, ``gateway``."""

    def __init__(
        self,
        models: ModelRegistry,
        *,
        actor: str,
        artifact_dir: Callable[[ArtifactVersion], Path],
        state_dir: Path,
        prompts: Callable[[], PromptRegistry] | None = None,
        resolver: Callable[[], ModelResolver] | None = None,
    ) -> None:
        self.models = models
        self.prompts = prompts
        """The prompt registry (judge prompts live there), made on first use."""
        self.resolver = resolver
        """Model files for a local (``transformers``) judge, made on first use."""
        self.db = models.db
        self.actor = actor
        self.artifact_dir = artifact_dir
        self.state_dir = state_dir
        self.backends = Backends(self.db, models, actor=actor)
        self.traffic = Traffic(self.db, models, actor=actor)
        self.keys = ApiKeys(self.db, actor=actor)
        from llmops.serve.canary import Canaries

        self.canaries = Canaries(self)

    def __repr__(self) -> str:
        return "Serving(.start(base, adapters), .backends, .traffic, .keys, .gateway(), .show())"

    # -- backends --------------------------------------------------------------------------

    def plan(self, base: str, adapters: Sequence[str] = (), **options: Any) -> LaunchPlan:
        """The command :meth:`start` would run; ``options`` are
        :class:`~llmops.serve.launch.ServerOptions` (``kind``, ``port``, ``python`` ...).
        The base and adapters are pulled to local folders now."""
        from llmops.serve.launch import ServerOptions, plan_launch

        return plan_launch(
            self.models,
            self.artifact_dir,
            base=base,
            adapters=adapters,
            options=ServerOptions(**options),
            log_dir=self.state_dir / "serve",
        )

    def start(
        self, base: str, adapters: Sequence[str] = (), *, timeout_s: float = 600.0, **options: Any
    ) -> tuple[Launched, subprocess.Popen[bytes]]:
        """Start a backend server for ``base`` with ``adapters`` and register it; returns the
        ready server and its process (stop it with :meth:`stop`). ``options`` as :meth:`plan`.

        Raises:
            NotFoundError: A reference names no model version.
            InputError: An adapter does not fit the base, or vLLM is not installed.
            ServingError: The server exited or was not ready within ``timeout_s``.
        """
        from llmops.serve.launch import launch

        return launch(self.plan(base, adapters, **options), self.backends, timeout_s=timeout_s)

    def stop(self, backend_id: str) -> builtins.list[Backend]:
        """Stop the server behind a backend that ``start`` launched, and mark every backend it
        served down (an attached backend is only marked down).

        Raises:
            NotFoundError: No such backend.
        """
        from llmops.serve.launch import stop_process

        backend = self.backends.get(backend_id)
        if backend.kind == "external" or not backend.pid:  # someone else's server: only this row
            return [self.backends.mark(backend.id, "down")]
        same = [
            b
            for b in self.backends.list()
            if b.url == backend.url and b.pid == backend.pid and b.kind == backend.kind
        ]
        stop_process(backend.pid)
        return [self.backends.mark(b.id, "down") for b in same or [backend]]

    def stop_all(self) -> builtins.list[Backend]:
        """Stop every server :meth:`start` launched on this machine (by process id), and mark
        their backends down."""
        launched = [b for b in self.backends.list() if b.kind != "external" and b.pid]
        stopped: builtins.list[Backend] = []
        for pid in sorted({b.pid for b in launched if b.pid}):
            first = next(b for b in launched if b.pid == pid)
            stopped += self.stop(first.id)
        return stopped

    def load_adapter(self, ref: str, *, backend_id: str) -> Backend:
        """Load adapter ``ref`` into a running server at run time (vLLM's
        ``/v1/load_lora_adapter``, or the local server's) under its digest name, and register
        it there.

        Raises:
            InputError: ``ref`` is not an adapter, or the backend does not serve its base.
            ServingError: The server refused.
        """
        from llmops.serve.vllm import load_adapter, served_name

        adapter = self.models.get(ref)
        if adapter.kind != "adapter":
            raise InputError(f"{adapter.ref} is a {adapter.kind}, not an adapter")
        host = self.backends.get(backend_id)
        base = host.base or host.ref
        name = served_name(adapter.name, adapter.digest)
        load_adapter(host.url, name, self.artifact_dir(adapter))
        kind = cast("BackendKind", host.kind)
        return self.backends.attach(
            adapter.ref, url=host.url, served_name=name, kind=kind, base=base, pid=host.pid
        )

    def layout(self, ref: str, cache_dir: Path, *, base: str | None = None) -> Path:
        """Lay adapter ``ref`` out for vLLM's filesystem resolver in ``cache_dir`` (what
        multi-node deployments share): ``cache_dir/<digest name>/`` with its
        ``base_model_name_or_path`` set to the base's served name. vLLM then loads it on first
        request with ``VLLM_PLUGINS=lora_filesystem_resolver`` and
        ``VLLM_LORA_RESOLVER_CACHE_DIR=cache_dir``.

        Raises:
            InputError: ``ref`` is not a LoRA adapter, or records no base (pass ``base``).
        """
        from llmops.serve.vllm import resolver_layout, served_name

        adapter = self.models.get(ref)
        if adapter.kind != "adapter":
            raise InputError(f"{adapter.ref} is a {adapter.kind}, not an adapter")
        base_version = self.models.get(base or self._base_of(adapter))
        return resolver_layout(
            self.artifact_dir(adapter),
            cache_dir,
            name=served_name(adapter.name, adapter.digest),
            base_name=served_name(base_version.name, base_version.digest),
        )

    def unload_adapter(self, backend_id: str) -> Backend:
        """Unload an adapter a server loaded at run time, and mark its backend down."""
        from llmops.serve.vllm import unload_adapter

        backend = self.backends.get(backend_id)
        if backend.base is None:
            raise InputError(
                f"{backend_id} serves the base model {backend.ref}, not an adapter",
                hint="stop the server with `llmops serve stop`",
            )
        unload_adapter(backend.url, backend.served_name)
        return self.backends.mark(backend.id, "down")

    # -- traffic ---------------------------------------------------------------------------

    def show(self, logical: str, *, since: datetime | None = None) -> TrafficStatus:
        """A policy with its resolved versions and per-arm numbers (``since``: from then on)."""
        policy = self.traffic.get(logical)
        with self.db.read() as session:
            pairs = session.scalar(
                select(func.count())
                .select_from(ShadowPair)
                .where(col(ShadowPair.logical) == logical)
            )
        return TrafficStatus(
            logical=policy.logical,
            stable=policy.stable,
            candidate=policy.candidate,
            weight=policy.weight,
            sticky=policy.sticky,
            shadow=policy.shadow,
            killed=policy.killed,
            revision=policy.revision,
            resolved={
                "stable": self.traffic.resolve(policy.stable),
                "candidate": self.traffic.resolve(policy.candidate),
            },
            arms=arm_stats(self.db, logical, since=since),
            shadow_pairs=int(pairs or 0),
            cohorts=policy.cohorts,
            candidates=policy.candidates,
            updated_by=policy.updated_by,
            updated_at=policy.updated_at,
        )

    def shadow_pairs(self, logical: str, *, limit: int = 100) -> builtins.list[dict[str, Any]]:
        """The newest mirrored pairs of ``logical`` (messages, both answers), newest first."""
        with self.db.read() as session:
            rows = session.scalars(
                select(ShadowPair)
                .where(col(ShadowPair.logical) == logical)
                .order_by(col(ShadowPair.id).desc())
                .limit(limit)
            ).all()
        return [r.model_dump(mode="json") for r in rows]

    def export(
        self,
        logical: str,
        *,
        format: Literal["llm-d", "kserve"],
        pool: str | None = None,
        namespace: str | None = None,
        uri: str = "pvc://llmops-models/{served_name}",
    ) -> str:
        """The policy as a Kubernetes manifest (YAML): ``llm-d`` (``InferenceModelRewrite``)
        or ``kserve`` (``LLMInferenceService``). ``uri`` is where the engine finds each model's
        files (``{served_name}`` and ``{model}`` are filled in).

        Raises:
            InputError: Unknown format, or an arm names no model version.
        """
        from llmops.serve.export import (
            ExportArm,
            _k8s_name,
            check_k8s_name,
            kserve_manifest,
            llmd_manifest,
            to_yaml,
        )
        from llmops.serve.vllm import served_name

        for what, value in (("--namespace", namespace), ("--pool", pool)):
            if value is not None:
                check_k8s_name(value, what=what)
        _fill(uri, served_name="x", model="x")  # a bad template fails before anything is read

        policy = self.traffic.get(logical)
        candidate_weight = 0.0 if policy.killed else policy.weight
        arms: list[ExportArm] = []
        split: list[tuple[str, str | None, float]] = [
            ("stable", policy.stable, 100 - candidate_weight)
        ]
        if policy.candidates:  # a bandit: each candidate at its share of the candidate weight
            split += [("candidate", c["ref"], candidate_weight * c["share"])
                      for c in policy.candidates]  # fmt: skip
        else:
            split.append(("candidate", policy.candidate, candidate_weight))
        if policy.cohorts and format == "llm-d":
            raise InputError(
                f"{logical!r} sends header cohorts to its candidate, which an"
                " InferenceModelRewrite cannot express",
                hint="keep the llmops gateway in front for cohorts, or remove them"
                f" (llmops traffic set {logical} --cohort none)",
            )
        for arm, ref, weight in split:
            if ref is None:
                continue
            version = self.models.get(ref)
            name = served_name(version.name, version.digest)
            arms.append(
                ExportArm(
                    arm=arm,
                    model=version.ref,
                    served_name=name,
                    uri=_fill(uri, served_name=name, model=version.name),
                    weight=weight,
                )
            )
        if format == "llm-d":
            return to_yaml(
                llmd_manifest(
                    logical,
                    arms,
                    pool=pool or f"{_k8s_name(logical)[:58]}-pool",
                    namespace=namespace,
                )
            )
        if format == "kserve":
            adapters = [a for a in arms if self.models.get(a.model).kind == "adapter"]
            base_ref = self._base_of(self.models.get(arms[0].model))
            base = self.models.get(base_ref)
            name = served_name(base.name, base.digest)
            base_arm = ExportArm(
                arm="stable",
                model=base.ref,
                served_name=name,
                uri=_fill(uri, served_name=name, model=base.name),
                weight=100,
            )
            from llmops.serve.vllm import adapter_rank, lora_rank

            ranks = [adapter_rank(self.artifact_dir(self.models.get(a.model))) for a in adapters]
            manifest = kserve_manifest(
                logical, base_arm, adapters, namespace=namespace, max_rank=lora_rank(ranks)
            )
            return to_yaml(manifest)
        raise InputError(f"unknown export format {format!r}", hint="use llm-d or kserve")

    def _base_of(self, version: ArtifactVersion) -> str:
        if version.kind != "adapter":
            return version.ref
        for parent in version.parents:
            if self.models.artifacts.get(parent).kind == "base-model":
                return parent
        raise NotFoundError(
            f"{version.ref} records no base model",
            hint="KServe needs the base model's URI: push the adapter with --parent BASE",
        )

    # -- gateway ---------------------------------------------------------------------------

    def gateway(self, config: GatewayConfig | None = None, **options: Any) -> Gateway:
        """A gateway replica over this registry (``.run()`` in the foreground, or
        ``with ws.serving.gateway(port=0) as gw:`` in the background)."""
        from llmops.serve.gateway import Gateway, GatewayConfig

        if config is None:
            config = GatewayConfig(**options)
        elif options:
            raise TypeError("pass either config or options, not both")
        return Gateway(self.models, config, serving=self)


_FIELDS = ("{served_name}", "{model}")


def _fill(template: str, *, served_name: str, model: str) -> str:
    """``template`` with ``{served_name}`` and ``{model}`` filled in (nothing else is
    interpreted: no attribute access, no other fields).

    Raises:
        InputError: The template has another ``{...}`` field.
    """
    rest = template
    for field in _FIELDS:
        rest = rest.replace(field, "")
    if "{" in rest or "}" in rest:
        raise InputError(
            f"--uri {template!r} has a field other than {{served_name}} and {{model}}",
            hint="e.g. --uri 's3://models/{served_name}'",
        )
    return template.replace("{served_name}", served_name).replace("{model}", model)
