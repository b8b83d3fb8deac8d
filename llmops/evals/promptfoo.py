"""Running promptfoo configs: ``promptfooconfig.yaml`` to an llmops suite.

:func:`llmops.evals.suite.load_suite` recognises a promptfoo config (``providers``/``tests``
and no ``targets``) and validates the converted suite like any other.

Supported: ``prompts`` (strings, or ``file://`` paths; a JSON list of chat messages is a chat
prompt, anything else one user message), ``providers`` (``openai:chat:<model>`` strings or objects
with ``id``, ``label`` and ``config`` holding ``apiBaseUrl``, ``temperature``, ``max_tokens``),
``tests`` (a list, or a ``file://`` JSONL/CSV path) with ``vars``, ``assert``, ``description`` and
``metadata``, and ``defaultTest`` (``assert``, ``vars``, ``metadata``, ``options.provider`` as the
judge). Assertion types map
one to one (see :mod:`llmops.evals.scorers`). Every prompt x provider becomes a target; promptfoo's
``{{ var }}`` templates render in llmops' sandbox.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from llmops.errors import SuiteError

__all__ = ["convert_promptfoo"]

_OPENAI_BASE = "https://api.openai.com/v1"


def _file(value: str, folder: Path) -> Path:
    path = Path(value.removeprefix("file://"))
    return path if path.is_absolute() else folder / path


def _prompts(raw: Any, folder: Path) -> list[tuple[str, Any]]:
    items = raw if isinstance(raw, list) else [raw]
    out: list[tuple[str, Any]] = []
    for i, item in enumerate(items):
        label = f"prompt{i + 1}"
        if isinstance(item, dict):
            label = str(item.get("label") or item.get("id") or label)
            text = str(item.get("raw") or item.get("id") or "")
        else:
            text = str(item)
        if text.startswith("file://"):
            text = _file(text, folder).read_text(encoding="utf-8")
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, list) and all(isinstance(m, dict) and "role" in m for m in parsed):
            out.append(
                (label, [{"role": m["role"], "content": m.get("content", "")} for m in parsed])
            )
        else:
            out.append((label, [{"role": "user", "content": text}]))
    return out


def _model(provider: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(provider, str):
        provider = {"id": provider}
    if not isinstance(provider, dict) or "id" not in provider:
        raise SuiteError(
            f"unsupported provider entry {provider!r}",
            hint="use 'openai:chat:<model>' with config.apiBaseUrl",
        )
    ident = str(provider["id"])
    kind, _, name = ident.partition(":chat:")
    if kind != "openai" or not name:
        raise SuiteError(
            f"unsupported provider {ident!r}",
            hint="only openai:chat:<model> providers are supported",
        )
    config = provider.get("config") or {}
    if config.get("apiKey"):
        raise SuiteError(
            f"provider {ident!r} has config.apiKey: configs must not hold keys",
            hint="put the key in an environment variable and name it in config.apiKeyEnvar",
        )
    model: dict[str, Any] = {
        "provider": "openai",
        "name": name,
        "api_base": config.get("apiBaseUrl")
        or config.get("apiHost")
        or os.environ.get("OPENAI_BASE_URL", _OPENAI_BASE),
        "api_key_env": config.get("apiKeyEnvar") or "OPENAI_API_KEY",
    }
    if "temperature" in config:
        model["temperature"] = config["temperature"]
    if "max_tokens" in config:
        model["max_tokens"] = config["max_tokens"]
    return str(provider.get("label") or ident), model


def _tests(raw: Any, folder: Path) -> tuple[list[dict[str, Any]], str | None]:
    if isinstance(raw, str):
        return [], str(_file(raw, folder))
    cases = []
    for test in raw or []:
        case: dict[str, Any] = {"vars": test.get("vars") or {}}
        if test.get("assert"):
            case["assert"] = [_assertion(a) for a in test["assert"]]
        if test.get("description"):
            case["description"] = str(test["description"])
        if test.get("metadata"):
            case["metadata"] = test["metadata"]
        cases.append(case)
    return cases, None


def _assertion(raw: dict[str, Any]) -> dict[str, Any]:
    out = {"type": raw.get("type"), "value": raw.get("value")}
    if "weight" in raw:
        out["weight"] = raw["weight"]
    if "threshold" in raw:
        out["threshold"] = raw["threshold"]
    return out


def convert_promptfoo(data: dict[str, Any], *, folder: Path) -> dict[str, Any]:
    """A promptfoo config as llmops suite data."""
    prompts = _prompts(data.get("prompts", []), folder)
    providers = [_model(p) for p in (data.get("providers") or [])]
    if not prompts or not providers:
        raise SuiteError("a promptfoo config needs 'prompts' and 'providers'")
    targets = [
        {
            "name": label if len(prompts) == 1 else f"{prompt_label}:{label}",
            "prompt": messages,
            "model": model,
        }
        for prompt_label, messages in prompts
        for label, model in providers
    ]
    cases, cases_file = _tests(data.get("tests"), folder)
    default = data.get("defaultTest") or {}
    if default.get("vars"):
        cases = [{**c, "vars": {**default["vars"], **c["vars"]}} for c in cases]
    if default.get("metadata"):
        meta = default["metadata"]
        cases = [{**c, "metadata": {**meta, **c.get("metadata", {})}} for c in cases]
    suite: dict[str, Any] = {
        "description": str(data.get("description", "")),
        "targets": targets,
        "cases": cases,
        "default_assert": [_assertion(a) for a in default.get("assert") or []],
    }
    if cases_file:
        suite["cases_file"] = cases_file
    judge = (default.get("options") or {}).get("provider")
    if judge:
        suite["judge"] = {"model": _model(judge)[1]}
    return suite
