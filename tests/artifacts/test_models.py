from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from llmops.artifacts import ArtifactStore, UnsafeFileError
from llmops.artifacts.models import INDEX_FILE, import_model, shard_folder, shard_state_dict


def tensors(n: int = 6) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {f"layer.{i}": rng.standard_normal((100, 100)).astype(np.float32) for i in range(n)}


def test_shard_state_dict_writes_transformers_index(tmp_path: Path) -> None:
    data = tensors()
    written = shard_state_dict(data, tmp_path, max_shard_bytes=100_000)
    index = json.loads((tmp_path / INDEX_FILE).read_text())
    assert index["metadata"]["total_size"] == 6 * 40_000
    shards = sorted({*index["weight_map"].values()})
    assert shards == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    assert len(written) == 4
    for name, shard in index["weight_map"].items():
        assert np.array_equal(load_file(str(tmp_path / shard))[name], data[name])


def test_single_shard_is_model_safetensors_without_index(tmp_path: Path) -> None:
    shard_state_dict(tensors(2), tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert not (tmp_path / INDEX_FILE).exists()


def test_shard_folder_reshards_and_copies_other_files(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    data = tensors()
    save_file(data, str(src / "model.safetensors"))
    (src / "config.json").write_text("{}")
    shard_folder(src, tmp_path / "dst", max_shard_bytes=150_000)
    dst = tmp_path / "dst"
    assert (dst / "config.json").is_file()
    index = json.loads((dst / INDEX_FILE).read_text())
    assert len(set(index["weight_map"].values())) == 2
    assert set(index["weight_map"]) == set(data)


def test_import_hf_folder(store: ArtifactStore, tmp_path: Path) -> None:
    folder = tmp_path / "hf"
    shard_state_dict(tensors(), folder, max_shard_bytes=100_000)
    (folder / "config.json").write_text('{"model_type": "llama"}')
    result = import_model(store, folder, name="base")
    assert result.version.kind == "base-model" and result.version.file_count == 5
    assert result.version.meta["source"] == str(folder)


def test_import_refuses_folders_without_config_or_safetensors(
    store: ArtifactStore, tmp_path: Path
) -> None:
    (tmp_path / "a").mkdir()
    with pytest.raises(Exception, match=r"has no config\.json"):
        import_model(store, tmp_path / "a", name="x")
    (tmp_path / "a" / "config.json").write_text("{}")
    (tmp_path / "a" / "pytorch_model.bin").write_bytes(b"\x80")
    with pytest.raises(UnsafeFileError, match="no safetensors weights"):
        import_model(store, tmp_path / "a", name="x")
