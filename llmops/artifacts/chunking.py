"""How files are cut into chunks, and how chunks are hashed and compressed.

Measured on the project's 2-core machine (see benchmarks/README.md and shared/DESIGN.md):
BLAKE3 hashes 3-4.5 GB/s per core against 1.3 GB/s for sha256, so BLAKE3 is the chunk hash (a
strong 256-bit hash: dedup trusts it, and every read re-checks it).

Compression pays only where bytes are dearer than CPU. zstd level 1 saves ~22% on bf16 weights
and ~8% on fp32, but compresses them at 0.6 GB/s and decompresses them at only 0.55 GB/s per
core (weights are literals: there is nothing to match, only entropy to code; negative levels skip
the entropy coder and save nothing). A local disk writes 1.2 GB/s, so on local stores compression
would halve push and pull throughput to save a fifth of the space: the ``auto`` policy leaves it
off there and turns it on for object stores, where the network is the bottleneck. When on, a
chunk is compressed only when a 64 KiB sample shrinks by at least 10%.

Chunk sizes:
- safetensors files are cut along tensor boundaries, so a version in which some tensors changed
  shares every other tensor's chunks with its parent. Tensors larger than ``TENSOR_PIECE`` (16 MiB)
  are split into 16 MiB pieces: large enough that per-chunk costs (an index row, a hash call, a
  ranged GET) stay below 0.1% of transfer time, small enough that workers x piece bounds memory
  (a 100 GB model is ~6,400 pieces). Runs of tensors under 64 KiB (norms, biases) are grouped up
  to ``SMALL_GROUP`` (1 MiB) so that thousands of tiny tensors do not become thousands of tiny
  chunks; anything larger keeps a chunk of its own, so a changed weight matrix never drags its
  neighbours into the new bytes.
- Other files (tokenizers, JSON, datasets) use FastCDC with 256 KiB / 1 MiB / 4 MiB (min / average
  / max): content-defined boundaries survive insertions, and pyfastcdc cuts at ~2.2 GB/s.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import blake3
import zstandard

from llmops.artifacts.tensors import SafetensorsHeader

__all__ = [
    "CDC_AVG",
    "TENSOR_PIECE",
    "Compression",
    "Span",
    "compress",
    "decompress",
    "hash_chunk",
    "plan_cdc",
    "plan_safetensors",
]

TENSOR_PIECE = 16 * 1024 * 1024
SMALL_TENSOR = 64 * 1024
SMALL_GROUP = 1024 * 1024
CDC_MIN, CDC_AVG, CDC_MAX = 256 * 1024, 1024 * 1024, 4 * 1024 * 1024
_SAMPLE = 64 * 1024
_WORTH_IT = 0.90

Compression = Literal["auto", "zstd", "none"]
"""``auto``: the backend's default (off on local disk, on for object stores)."""


@dataclass(frozen=True, slots=True)
class Span:
    """A byte range of a file that becomes one chunk."""

    offset: int
    length: int


def plan_safetensors(header: SafetensorsHeader, file_size: int) -> list[Span]:
    """Chunk spans for a validated safetensors file: header, then tensors (see module doc)."""
    spans = [Span(0, header.data_start)]
    cursor = header.data_start
    group_start: int | None = None

    def close_group(end: int) -> None:
        nonlocal group_start
        if group_start is not None and end > group_start:
            spans.append(Span(group_start, end - group_start))
        group_start = None

    for tensor in header.tensors:
        if tensor.start > cursor and group_start is None:
            group_start = cursor  # alignment padding: keep it with what follows
        size = tensor.end - tensor.start
        if size < SMALL_TENSOR:
            if group_start is None:
                group_start = cursor if tensor.start > cursor else tensor.start
            if tensor.end - group_start >= SMALL_GROUP:
                close_group(tensor.end)
            cursor = tensor.end
            continue
        close_group(cursor)
        start = cursor
        while start < tensor.end:
            length = min(TENSOR_PIECE, tensor.end - start)
            spans.append(Span(start, length))
            start += length
        cursor = tensor.end
    close_group(cursor)
    if file_size > cursor:
        spans.append(Span(cursor, file_size - cursor))
    return [s for s in spans if s.length > 0]


def plan_cdc(path: Path, size: int) -> list[Span]:
    """Content-defined chunk spans for an ordinary file."""
    if size == 0:
        return []
    if size <= CDC_MIN:
        return [Span(0, size)]
    from pyfastcdc import FastCDC

    cutter = FastCDC(avg_size=CDC_AVG)
    return [Span(c.offset, c.length) for c in cutter.cut_file(str(path))]


_LOCAL = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    # zstd contexts are not safe to share between threads; one per worker thread.
    found: zstandard.ZstdCompressor | None = getattr(_LOCAL, "cctx", None)
    if found is None:
        found = zstandard.ZstdCompressor(level=1)
        _LOCAL.cctx = found
    return found


def hash_chunk(data: bytes | memoryview) -> str:
    """BLAKE3 hex digest of a chunk's raw bytes."""
    return blake3.blake3(data).hexdigest()


def compress(data: bytes | memoryview) -> tuple[bytes | memoryview, str]:
    """``(stored bytes, codec)``: zstd when a sample shows it pays, else the raw bytes."""
    if len(data) < 512:
        return data, "raw"
    cctx = _compressor()
    sample = data[:_SAMPLE]
    if len(cctx.compress(sample)) > _WORTH_IT * len(sample):
        return data, "raw"
    packed = cctx.compress(data)
    if len(packed) > _WORTH_IT * len(data):
        return data, "raw"
    return packed, "zstd"


def decompress(stored: bytes, codec: str, raw_length: int) -> bytes:
    """The raw bytes of a stored chunk.

    Raises:
        ValueError: Unknown codec or the stored bytes do not decompress to ``raw_length``.
    """
    if codec == "raw":
        return stored
    if codec == "zstd":
        dctx = zstandard.ZstdDecompressor()
        try:
            raw = dctx.decompress(stored, max_output_size=raw_length)
        except zstandard.ZstdError as exc:
            raise ValueError(f"zstd frame does not decompress: {exc}") from None
        if len(raw) != raw_length:
            raise ValueError(f"decompressed to {len(raw)} bytes, expected {raw_length}")
        return raw
    raise ValueError(f"unknown codec {codec!r}")
