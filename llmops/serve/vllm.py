"""vLLM over its OpenAI-compatible HTTP API (never imported: vLLM lives in its own
environment): the command line from the registry, adapters loaded and unloaded at run time,
and the folder layout of vLLM's filesystem resolver (what multi-node deployments use).

Served names carry content digests (``support-lora-<digest12>``): a retrained adapter never
reuses a name, so vLLM never serves it from the previous adapter's cached prefixes.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmops.errors import InputError, ServingError
from llmops.serve.backends import check_url

__all__ = [
    "LORA_RANKS",
    "adapter_rank",
    "load_adapter",
    "lora_rank",
    "resolver_layout",
    "served_name",
    "unload_adapter",
    "vllm_argv",
    "vllm_env",
]

LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The values vLLM accepts for ``--max-lora-rank``."""


def served_name(name: str, digest: str) -> str:
    """``<name>-<first 12 hex digits of the content digest>``."""
    return f"{name}-{digest.partition(':')[2][:12] or digest[:12]}"


def adapter_rank(folder: Path) -> int:
    """The LoRA rank ``r`` in an adapter's ``adapter_config.json`` (rank patterns included).

    Raises:
        InputError: The folder holds no readable LoRA config.
    """
    try:
        config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{folder} has no readable adapter_config.json ({exc})") from None
    ranks = [config.get("r") or 0, *(config.get("rank_pattern") or {}).values()]
    return max(int(r) for r in ranks)


def lora_rank(ranks: Sequence[int], *, floor: int = 16) -> int:
    """The smallest ``--max-lora-rank`` vLLM accepts that fits every rank, and at least
    ``floor`` (vLLM's own default, 16): adapters loaded at run time must fit it too.

    Raises:
        InputError: A rank is above vLLM's largest.
    """
    top = max([*ranks, floor])
    for allowed in LORA_RANKS:
        if allowed >= top:
            return allowed
    raise InputError(f"LoRA rank {top} is above vLLM's largest ({LORA_RANKS[-1]})")


def vllm_argv(
    python: str,
    *,
    base_dir: Path,
    base_name: str,
    adapters: dict[str, Path],
    host: str,
    port: int,
    max_loras: int,
    max_lora_rank: int | None = None,
    max_model_len: int | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """The command that starts vLLM's OpenAI-compatible server for a base and its adapters.

    ``python -m vllm.entrypoints.openai.api_server`` rather than the ``vllm`` script, which
    some builds ship without the package metadata it looks up. Each adapter is passed as JSON
    (any path works, and ``base_model_name`` makes ``/v1/models`` name its parent).
    ``max_lora_rank`` leaves room for adapters loaded later (default: what the preloaded ones
    need, at least 16).
    """
    ranks = [adapter_rank(p) for p in adapters.values()]
    rank = lora_rank([*ranks, max_lora_rank or 0])
    argv = [
        python,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(base_dir),
        "--served-model-name",
        base_name,
        "--host",
        host,
        "--port",
        str(port),
        "--enable-lora",
        "--max-loras",
        str(max(1, max_loras)),
        "--max-lora-rank",
        str(rank),
    ]
    if adapters:
        modules = [json.dumps({"name": n, "path": str(p), "base_model_name": base_name})
                   for n, p in adapters.items()]  # fmt: skip
        argv += ["--lora-modules", *modules]
    if max_model_len:
        argv += ["--max-model-len", str(max_model_len)]
    return [*argv, *extra]


def vllm_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for vLLM: runtime adapter updates on (behind our control plane), and a
    KV cache size for the CPU build unless one is set."""
    env = dict(os.environ if base is None else base)
    env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    return env


def _post(url: str, body: dict[str, Any], timeout_s: float) -> str:
    request = urllib.request.Request(  # noqa: S310 - an http(s) URL from check_url
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            return str(response.read().decode("utf-8", "replace"))
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:300].decode("utf-8", "replace")
        raise ServingError(f"{url} answered {exc.code}: {detail}") from None
    except OSError as exc:
        raise ServingError(f"{url} cannot be reached: {exc}") from None


def load_adapter(url: str, name: str, path: Path, *, timeout_s: float = 120.0) -> str:
    """``POST /v1/load_lora_adapter``: serve the adapter in ``path`` as ``name`` from now on.

    Raises:
        ServingError: The server refused (vLLM needs VLLM_ALLOW_RUNTIME_LORA_UPDATING=True).
    """
    return _post(
        f"{check_url(url)}/load_lora_adapter",
        {"lora_name": name, "lora_path": str(path)},
        timeout_s,
    )


def unload_adapter(url: str, name: str, *, timeout_s: float = 60.0) -> str:
    """``POST /v1/unload_lora_adapter``.

    Raises:
        ServingError: The server refused or does not serve ``name``.
    """
    return _post(f"{check_url(url)}/unload_lora_adapter", {"lora_name": name}, timeout_s)


def resolver_layout(adapter_dir: Path, cache_dir: Path, *, name: str, base_name: str) -> Path:
    """Lay an adapter out for vLLM's filesystem resolver
    (``VLLM_PLUGINS=lora_filesystem_resolver``, ``VLLM_LORA_RESOLVER_CACHE_DIR=cache_dir``):
    ``cache_dir/<name>/`` with ``base_model_name_or_path`` set to the served base name.
    The folder appears whole or not at all; an existing one is left as it is (names carry
    digests, so it holds the same bytes).

    Raises:
        InputError: The adapter is not a LoRA adapter with safetensors weights.
    """
    config_path = adapter_dir / "adapter_config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{adapter_dir} has no readable adapter_config.json ({exc})") from None
    if config.get("peft_type") != "LORA":
        raise InputError(
            f"{adapter_dir} is a {config.get('peft_type')} adapter; vLLM's"
            " resolver serves LORA adapters only"
        )
    if not (adapter_dir / "adapter_model.safetensors").is_file():
        raise InputError(f"{adapter_dir} has no adapter_model.safetensors")
    dest = cache_dir / name
    if dest.is_dir():
        return dest
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = cache_dir / f".{name}.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for file in adapter_dir.iterdir():
        if file.is_file() and file.name != "adapter_config.json":
            shutil.copyfile(file, staging / file.name)
    config["base_model_name_or_path"] = base_name
    (staging / "adapter_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    try:
        staging.rename(dest)
    except OSError:  # another process laid it out first
        shutil.rmtree(staging, ignore_errors=True)
    return dest
