"""Manifests that apply a traffic policy on Kubernetes engines, built as typed models and dumped
as YAML (never assembled from strings):

- ``llm-d``: an ``InferenceModelRewrite`` (``llm-d.ai/v1alpha2``) that splits requests for the
  logical name between the arms' served names on an InferencePool of vLLM servers;
- ``kserve``: an ``LLMInferenceService`` (``serving.kserve.io/v1alpha2``) whose model carries
  the arms' adapters.

What those engines do not do, and our gateway keeps doing in front of them: their weighted pick
is per request (not sticky), they keep no shadow pairs, and they judge nothing.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from llmops.errors import InputError

__all__ = [
    "EXPORT_FORMATS",
    "AnalysisTemplate",
    "ExportArm",
    "InferenceModelRewrite",
    "LLMInferenceService",
    "argo_analysis",
    "check_k8s_name",
    "flagger_canary",
    "kserve_manifest",
    "llmd_manifest",
    "to_yaml",
]

EXPORT_FORMATS = ("llm-d", "kserve")

_K8S_NAME_MAX = 63


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ExportArm(_Model):
    """One arm as the engines see it."""

    arm: Literal["stable", "candidate"]
    model: str
    """Model version (``name@7``)."""
    served_name: str
    uri: str
    """Where the engine pulls the weights from (``s3://...``, ``hf://...``, ``pvc://...``)."""
    weight: float


class ObjectMeta(_Model):
    name: str = Field(max_length=_K8S_NAME_MAX)
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class PoolRef(_Model):
    name: str
    group: str = "inference.networking.k8s.io"
    kind: str = "InferencePool"


class ModelMatch(_Model):
    type: Literal["Exact"] = "Exact"
    value: str


class Match(_Model):
    model: ModelMatch


class RewriteTarget(_Model):
    modelRewrite: str
    weight: int = Field(ge=1, le=1_000_000)


class RewriteRule(_Model):
    matches: list[Match]
    targets: list[RewriteTarget] = Field(min_length=1)


class RewriteSpec(_Model):
    poolRef: PoolRef
    rules: list[RewriteRule] = Field(min_length=1)


class InferenceModelRewrite(_Model):
    apiVersion: Literal["llm-d.ai/v1alpha2"] = "llm-d.ai/v1alpha2"
    kind: Literal["InferenceModelRewrite"] = "InferenceModelRewrite"
    metadata: ObjectMeta
    spec: RewriteSpec


class LoraAdapter(_Model):
    name: str
    uri: str


class Lora(_Model):
    adapters: list[LoraAdapter]
    maxRank: int | None = None


class LLMModel(_Model):
    uri: str
    name: str
    lora: Lora | None = None


class LLMSpec(_Model):
    model: LLMModel
    replicas: int = 1
    router: dict[str, Any] = Field(default_factory=lambda: {"route": {}, "gateway": {}})


class LLMInferenceService(_Model):
    apiVersion: Literal["serving.kserve.io/v1alpha2"] = "serving.kserve.io/v1alpha2"
    kind: Literal["LLMInferenceService"] = "LLMInferenceService"
    metadata: ObjectMeta
    spec: LLMSpec


_DNS1123 = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def check_k8s_name(value: str, *, what: str) -> str:
    """``value`` if it is a Kubernetes object name (RFC 1123 label), else an InputError."""
    if not _DNS1123.fullmatch(value):
        raise InputError(
            f"{what} {value!r} is not a Kubernetes name",
            hint="use 1-63 lower-case letters, digits and '-', starting and ending alphanumeric",
        )
    return value


def _k8s_name(text: str) -> str:
    name = "".join(c if c.isascii() and c.isalnum() else "-" for c in text.lower()).strip("-")
    return (name or "llmops")[:_K8S_NAME_MAX].rstrip("-")


def _note(logical: str) -> dict[str, str]:
    return {
        "llmops.dev/logical-model": logical,
        "llmops.dev/note": "weighted per request, not sticky; no shadow pairs: keep the"
        " llmops gateway in front for those",
    }


def llmd_manifest(
    logical: str, arms: list[ExportArm], *, pool: str, namespace: str | None = None
) -> InferenceModelRewrite:
    """The split as an ``InferenceModelRewrite``: integer weights >= 1 in proportion to the
    percentages (an arm at weight 0 is left out)."""
    live = [a for a in arms if a.weight > 0]
    targets = [
        RewriteTarget(modelRewrite=a.served_name, weight=max(1, round(a.weight * 100)))
        for a in live
    ]
    return InferenceModelRewrite(
        metadata=ObjectMeta(
            name=_k8s_name(logical),
            namespace=namespace,
            labels={"app.kubernetes.io/managed-by": "llmops"},
            annotations=_note(logical),
        ),
        spec=RewriteSpec(
            poolRef=PoolRef(name=pool),
            rules=[RewriteRule(matches=[Match(model=ModelMatch(value=logical))], targets=targets)],
        ),
    )


def kserve_manifest(
    logical: str,
    base: ExportArm,
    adapters: list[ExportArm],
    *,
    namespace: str | None = None,
    max_rank: int | None = None,
) -> LLMInferenceService:
    """An ``LLMInferenceService`` for the base model with the arms' adapters (``max_rank`` is
    set only above KServe's default of 16)."""
    lora = Lora(
        adapters=[LoraAdapter(name=a.served_name, uri=a.uri) for a in adapters],
        maxRank=max_rank if max_rank and max_rank > 16 else None,
    )
    return LLMInferenceService(
        metadata=ObjectMeta(
            name=_k8s_name(logical),
            namespace=namespace,
            labels={"app.kubernetes.io/managed-by": "llmops"},
            annotations=_note(logical),
        ),
        spec=LLMSpec(
            model=LLMModel(uri=base.uri, name=base.served_name, lora=lora if adapters else None)
        ),
    )


class WebHeader(_Model):
    key: str
    value: str


class WebMetric(_Model):
    url: str
    jsonPath: str
    timeoutSeconds: int = 10
    headers: list[WebHeader] | None = None


class SecretKeyRef(_Model):
    name: str
    key: str


class ValueFrom(_Model):
    secretKeyRef: SecretKeyRef


class AnalysisArg(_Model):
    name: str
    valueFrom: ValueFrom


class MetricProvider(_Model):
    web: WebMetric


class AnalysisMetric(_Model):
    name: str
    interval: str = "30s"
    count: int | None = None
    failureLimit: int = 0
    successCondition: str
    provider: MetricProvider


class AnalysisSpec(_Model):
    args: list[AnalysisArg] | None = None
    metrics: list[AnalysisMetric] = Field(min_length=1)


class AnalysisTemplate(_Model):
    apiVersion: Literal["argoproj.io/v1alpha1"] = "argoproj.io/v1alpha1"
    kind: Literal["AnalysisTemplate"] = "AnalysisTemplate"
    metadata: ObjectMeta
    spec: AnalysisSpec


def argo_analysis(
    logical: str,
    *,
    gateway_url: str,
    interval_s: int = 30,
    namespace: str | None = None,
    api_key_secret: tuple[str, str] | None = None,
) -> AnalysisTemplate:
    """An Argo Rollouts ``AnalysisTemplate`` whose ``web`` metrics read the gateway's canary
    analysis (``GET /canary/LOGICAL/analysis``): they fail when our sequential tests see a
    breach of the error rate, the latency, or any test (judged quality, feedback).
    ``api_key_secret`` (secret name, key) sends a gateway API key from a Kubernetes Secret."""
    url = f"{gateway_url.rstrip('/')}/canary/{logical}/analysis"
    headers = None
    args = None
    if api_key_secret is not None:
        headers = [WebHeader(key="Authorization", value="Bearer {{args.api-key}}")]
        ref = SecretKeyRef(name=api_key_secret[0], key=api_key_secret[1])
        args = [AnalysisArg(name="api-key", valueFrom=ValueFrom(secretKeyRef=ref))]
    metrics = [
        AnalysisMetric(
            name=name,
            interval=f"{interval_s}s",
            successCondition="result == false",
            provider=MetricProvider(web=WebMetric(url=url, jsonPath=path, headers=headers)),
        )
        for name, path in (
            ("llmops-error-rate", "{$.analysis.error_rate.breach}"),
            ("llmops-latency", "{$.analysis.latency.breach}"),
            # any test: judged quality (win rate) and feedback too
            ("llmops-analysis", "{$.analysis.breach}"),
        )
    ]
    return AnalysisTemplate(
        metadata=_meta(logical, f"{_k8s_name(logical)[:50]}-llmops", namespace),
        spec=AnalysisSpec(args=args, metrics=metrics),
    )


def _meta(logical: str, name: str, namespace: str | None) -> ObjectMeta:
    """A rollout manifest's metadata: managed by llmops, naming its logical model."""
    return ObjectMeta(
        name=name,
        namespace=namespace,
        labels={"app.kubernetes.io/managed-by": "llmops"},
        annotations={"llmops.dev/logical-model": logical},
    )


def to_yaml(manifest: BaseModel) -> str:
    """The manifest as YAML (fields that are None are left out)."""
    import yaml

    return yaml.safe_dump(manifest.model_dump(exclude_none=True, by_alias=True), sort_keys=False)


class FlaggerWebhook(_Model):
    name: str
    type: Literal["rollout"] = "rollout"
    url: str
    timeout: str = "10s"


class FlaggerAnalysis(_Model):
    interval: str = "30s"
    threshold: int = 1
    """Failed checks before Flagger rolls back (ours are already sequential: one is enough)."""
    webhooks: list[FlaggerWebhook]


class FlaggerTargetRef(_Model):
    apiVersion: str = "apps/v1"
    kind: str = "Deployment"
    name: str


class FlaggerService(_Model):
    port: int = 8000


class FlaggerSpec(_Model):
    targetRef: FlaggerTargetRef
    service: FlaggerService
    analysis: FlaggerAnalysis


class FlaggerCanary(_Model):
    apiVersion: Literal["flagger.app/v1beta1"] = "flagger.app/v1beta1"
    kind: Literal["Canary"] = "Canary"
    metadata: ObjectMeta
    spec: FlaggerSpec


def flagger_canary(
    logical: str,
    *,
    gateway_url: str,
    interval_s: int = 30,
    namespace: str | None = None,
    deployment: str | None = None,
    port: int = 8000,
) -> FlaggerCanary:
    """A Flagger ``Canary`` whose analysis is one ``rollout`` webhook calling the gateway's
    check (``/canary/LOGICAL/check``: 200 while the canary holds up, 412 on a breach or a
    rollback). Flagger webhooks send no headers: with gateway API keys on, reach the check
    through a route that adds the key."""
    name = _k8s_name(logical)[:50]
    return FlaggerCanary(
        metadata=_meta(logical, name, namespace),
        spec=FlaggerSpec(
            targetRef=FlaggerTargetRef(name=deployment or name),
            service=FlaggerService(port=port),
            analysis=FlaggerAnalysis(
                interval=f"{interval_s}s",
                webhooks=[
                    FlaggerWebhook(
                        name="llmops-analysis",
                        url=f"{gateway_url.rstrip('/')}/canary/{logical}/check",
                    )
                ],
            ),
        ),
    )
