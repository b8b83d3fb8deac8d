from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save

from llmops.artifacts import chunking
from llmops.artifacts.chunking import (
    TENSOR_PIECE,
    compress,
    decompress,
    hash_chunk,
    plan_cdc,
    plan_safetensors,
)
from llmops.artifacts.tensors import read_header


def spans_for(tensors: dict[str, np.ndarray]) -> tuple[bytes, list[tuple[int, int]]]:
    blob = save(tensors)
    header = read_header(io.BytesIO(blob), path="x", file_size=len(blob))
    return blob, [(s.offset, s.length) for s in plan_safetensors(header, len(blob))]


def covers_exactly(spans: list[tuple[int, int]], size: int) -> bool:
    cursor = 0
    for offset, length in spans:
        if offset != cursor or length <= 0:
            return False
        cursor += length
    return cursor == size


def test_safetensors_spans_cover_the_file_and_follow_tensor_boundaries() -> None:
    tensors = {f"w{i}": np.zeros((600, 600), np.float32) for i in range(3)}  # 1.44 MB each
    blob, spans = spans_for(tensors)
    assert covers_exactly(spans, len(blob))
    header = read_header(io.BytesIO(blob), path="x", file_size=len(blob))
    starts = {offset for offset, _ in spans}
    assert all(t.start in starts for t in header.tensors)


def test_large_tensors_are_split_into_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chunking, "TENSOR_PIECE", 1024 * 1024)
    blob, spans = spans_for({"big": np.zeros((1000, 1000), np.float32)})  # 4 MB
    assert covers_exactly(spans, len(blob))
    assert [length for _, length in spans[1:]] == [1024 * 1024] * 3 + [4_000_000 - 3 * 1048576]


def test_small_tensors_are_grouped() -> None:
    tensors = {f"b{i:03d}": np.zeros(100, np.float32) for i in range(300)}
    blob, spans = spans_for(tensors)
    assert covers_exactly(spans, len(blob))
    assert len(spans) == 2  # the header, then one group of 300 tiny tensors


def test_cdc_boundaries_survive_an_insertion(tmp_path: Path) -> None:
    data = os.urandom(8 * 1024 * 1024)
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(data)
    b.write_bytes(data[:1000] + b"INSERTED" + data[1000:])
    hashes_a = {hash_chunk(data[s.offset : s.offset + s.length]) for s in plan_cdc(a, len(data))}
    bdata = b.read_bytes()
    spans_b = plan_cdc(b, len(bdata))
    assert covers_exactly([(s.offset, s.length) for s in spans_b], len(bdata))
    hashes_b = [hash_chunk(bdata[s.offset : s.offset + s.length]) for s in spans_b]
    shared = sum(h in hashes_a for h in hashes_b)
    assert shared >= len(hashes_b) - 2  # only the chunk(s) around the insertion differ


def test_compression_only_when_it_pays() -> None:
    noise = os.urandom(1 << 20)
    stored, codec = compress(noise)
    assert codec == "raw" and stored == noise
    zeros = bytes(1 << 20)
    stored, codec = compress(zeros)
    assert codec == "zstd" and len(stored) < 10_000
    assert decompress(bytes(stored), codec, len(zeros)) == zeros


def test_decompress_rejects_garbage_and_wrong_length() -> None:
    packed, _ = compress(bytes(1 << 16))
    with pytest.raises(ValueError, match="expected 10"):
        decompress(bytes(packed), "zstd", 10)
    with pytest.raises(ValueError, match="does not decompress"):
        decompress(b"garbage-garbage", "zstd", 100)
    with pytest.raises(ValueError, match="unknown codec"):
        decompress(b"x", "lz4", 1)


def test_tensor_piece_is_the_documented_16_mib() -> None:
    assert TENSOR_PIECE == 16 * 1024 * 1024
