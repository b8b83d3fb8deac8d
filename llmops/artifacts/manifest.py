"""Manifests: what an artifact version holds, file by file and chunk by chunk.

A manifest names every file (relative POSIX path, size, mode), the chunks that make it up (BLAKE3
digests of their raw bytes, in order) and, for safetensors files, the tensor index. Its own digest
(BLAKE3 of its canonical JSON) identifies the version's content: the same bytes pushed twice, under
any name, give the same digest. Names, versions, kinds and lineage live in the registry database.
"""

from __future__ import annotations

import json
from typing import Literal

import blake3
from pydantic import BaseModel, ConfigDict, Field

from llmops._version import __version__

__all__ = ["FORMAT_VERSION", "ChunkRef", "FileEntry", "Kind", "Manifest", "TensorEntry"]

FORMAT_VERSION = 1
"""Version of the manifest format."""

Kind = Literal[
    "base-model", "adapter", "checkpoint", "merged-model", "dataset", "eval-log", "other"
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ChunkRef(_Model):
    """One chunk of a file."""

    digest: str
    """BLAKE3 of the chunk's raw bytes (hex)."""
    offset: int
    """Where the chunk starts in the file."""
    length: int
    """Raw length in bytes."""


class TensorEntry(_Model):
    """One tensor of a safetensors file."""

    name: str
    """Tensor name, e.g. ``model.layers.0.self_attn.q_proj.weight``."""
    dtype: str
    """safetensors dtype, e.g. ``BF16``."""
    shape: list[int]
    """Dimensions."""
    start: int
    """Absolute offset of the first byte in the file."""
    end: int
    """Absolute offset one past the last byte."""


class FileEntry(_Model):
    """One file of an artifact version."""

    path: str
    """Relative POSIX path inside the artifact."""
    size: int
    """Size in bytes."""
    mode: int = 0o644
    """Permission bits (only 0o644 and 0o755 are kept)."""
    digest: str
    """BLAKE3 over the file size and its ordered chunk digests (a hash tree of the content)."""
    chunks: list[ChunkRef]
    """The chunks, in file order, covering the file exactly."""
    tensors: list[TensorEntry] | None = None
    """For safetensors files, the validated tensor index."""
    safetensors_metadata: dict[str, str] | None = None
    """For safetensors files, the header's ``__metadata__``."""


class Manifest(_Model):
    """The content of an artifact version."""

    format_version: int = FORMAT_VERSION
    """Version of this format."""
    llmops_version: str = __version__
    """llmops version that wrote it."""
    files: list[FileEntry] = Field(default_factory=list)
    """Files, sorted by path."""

    @property
    def bytes_total(self) -> int:
        """Sum of file sizes."""
        return sum(f.size for f in self.files)

    def canonical_json(self) -> bytes:
        """The bytes the digest covers (the llmops version that wrote it is left out)."""
        body = self.model_dump(mode="json", exclude={"llmops_version"})
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    def digest(self) -> str:
        """``blake3:<hex>`` of :meth:`canonical_json`."""
        return "blake3:" + blake3.blake3(self.canonical_json()).hexdigest()

    def file(self, path: str) -> FileEntry:
        """The entry for ``path``.

        Raises:
            KeyError: No such file in the manifest.
        """
        for entry in self.files:
            if entry.path == path:
                return entry
        raise KeyError(path)


def file_digest(size: int, chunk_digests: list[str]) -> str:
    """The file digest: BLAKE3 over the size and the ordered chunk digests."""
    h = blake3.blake3(str(size).encode() + b"\n")
    for digest in chunk_digests:
        h.update(bytes.fromhex(digest))
    return "blake3:" + h.hexdigest()
