"""Pins the public API, and checks that importing it stays light."""

from __future__ import annotations

import json
import subprocess
import sys

import llmops
import llmops.prompts


def test_top_level_exports() -> None:
    assert sorted(llmops.__all__) == ["LLMOpsError", "Ref", "Workspace", "__version__", "parse_ref"]
    for name in llmops.__all__:
        assert getattr(llmops, name) is not None


def test_prompts_exports() -> None:
    assert sorted(llmops.prompts.__all__) == sorted(
        [
            "FieldChange",
            "HistoryEntry",
            "LabelMove",
            "Message",
            "ModelParams",
            "PromptDiff",
            "PromptRegistry",
            "PromptSpec",
            "PromptSummary",
            "PromptVersion",
            "PushResult",
            "RenderLimits",
            "RenderedPrompt",
            "StalePromptWarning",
            "Variable",
            "VersionInfo",
            "dump_prompt_file",
            "load_prompt_file",
            "parse_prompt_yaml",
            "render_template",
        ]
    )


def test_train_and_data_exports() -> None:
    import llmops.data
    import llmops.train

    assert sorted(llmops.train.__all__) == [
        "Recipe", "RunRecord", "Runs", "TrainResult", "load_recipe", "parse_overrides", "train",
    ]  # fmt: skip
    assert sorted(llmops.data.__all__) == sorted([
        "FORMATS", "ROLES", "BadRow", "DataReport", "DatasetFormat", "Finding", "GateThresholds",
        "Row", "load_split", "read_rows", "split_indices", "validate_dataset",
    ])  # fmt: skip


def _heavy_modules_after(imports: str, heavy: tuple[str, ...]) -> list[str]:
    """Which of ``heavy`` a fresh interpreter has loaded after running ``imports``."""
    code = (
        f"import sys, json; {imports};"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return list(json.loads(out.stdout))


def test_importing_train_and_data_stays_light() -> None:
    heavy = ("torch", "transformers", "peft", "trl", "datasets", "bitsandbytes")
    assert _heavy_modules_after("import llmops.train, llmops.data", heavy) == []


def test_evals_exports_and_lazy_imports() -> None:
    import llmops.evals

    assert sorted(llmops.evals.__all__) == sorted(
        [
            "MODEL_GRADED",
            "PROVIDERS",
            "SCORERS",
            "Assertion",
            "Case",
            "Completion",
            "EvalOutcome",
            "EvalRunRecord",
            "EvalRuns",
            "GateReport",
            "JudgeSpec",
            "ModelSpec",
            "ProviderError",
            "Request",
            "ScoreResult",
            "Suite",
            "Target",
            "load_suite",
            "run_suite",
        ]
    )
    heavy = ("aiohttp", "litellm", "transformers", "torch")
    assert _heavy_modules_after("import llmops.evals", heavy) == []


def test_unknown_attribute_raises_attribute_error() -> None:
    try:
        llmops.nope  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "nope" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_import_llmops_loads_no_heavy_modules() -> None:
    heavy = ("torch", "transformers", "litellm", "peft", "trl", "alembic", "sqlalchemy")
    assert _heavy_modules_after("import llmops; from llmops import Workspace", heavy) == []


def test_artifacts_exports() -> None:
    import llmops.artifacts

    assert sorted(llmops.artifacts.__all__) == sorted(
        [
            "BACKENDS",
            "KINDS",
            "PICKLE_SUFFIXES",
            "ArtifactNotFoundError",
            "ArtifactStore",
            "ArtifactVersion",
            "Backend",
            "ChunkRef",
            "FileEntry",
            "GcReport",
            "Kind",
            "LocalBackend",
            "Manifest",
            "PushResult",
            "PushStats",
            "S3Backend",
            "StoreError",
            "StoreFullError",
            "TensorEntry",
            "UnsafeFileError",
            "VerifyReport",
            "open_backend",
        ]
    )
    for name in llmops.artifacts.__all__:
        assert getattr(llmops.artifacts, name) is not None


def test_registry_exports() -> None:
    import llmops.registry as registry

    assert set(registry.__all__) == {
        "ApprovalResult", "ApprovalRule", "Condition", "EvalCondition", "ModelRegistry",
        "ModelSummary", "ModelVersionInfo", "Policy", "PromotionVerdict", "RollbackResult",
        "load_policy",
    }  # fmt: skip
    for name in registry.__all__:
        assert getattr(registry, name).__module__.startswith("llmops.registry.")
