"""Artifact storage: a sharded, content-addressed store for models, adapters and datasets."""

from llmops.artifacts.backends import (
    BACKENDS,
    Backend,
    LocalBackend,
    S3Backend,
    StoreError,
    StoreFullError,
    open_backend,
)
from llmops.artifacts.manifest import ChunkRef, FileEntry, Kind, Manifest, TensorEntry
from llmops.artifacts.store import (
    KINDS,
    ArtifactNotFoundError,
    ArtifactStore,
    ArtifactVersion,
    GcReport,
    PushResult,
    VerifyReport,
)
from llmops.artifacts.tensors import UnsafeFileError
from llmops.artifacts.transfer import PICKLE_SUFFIXES, PushStats

__all__ = [
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
