"""Where artifact bytes live: the local filesystem or an S3-compatible object store.

Backends only store immutable objects by key (``packs/…``, ``manifests/…``). Every write is
atomic: an object is visible whole or not at all (a temporary name and a rename on disk; S3 makes
an object visible only when its upload completes). Backends register by URL scheme in
:data:`BACKENDS`.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlparse

from llmops.errors import ConfigError, StoreError, StoreFullError

__all__ = [
    "BACKENDS",
    "Backend",
    "LocalBackend",
    "ObjectInfo",
    "S3Backend",
    "StoreError",
    "StoreFullError",
    "open_backend",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """An object in a backend listing."""

    key: str
    size: int
    modified: float
    """Seconds since the epoch."""


class Backend(Protocol):
    """What the artifact store needs from a place that keeps bytes."""

    url: str
    """Canonical URL of the store (recorded with every version and chunk)."""

    compress_by_default: bool
    """Whether compression pays here: off for local disks (CPU-bound), on for object stores
    (network-bound). See :mod:`llmops.artifacts.chunking`."""

    def staging_dir(self) -> Path:
        """A local folder for assembling pack files before they are stored."""
        ...

    def put_file(self, key: str, path: Path) -> None:
        """Store the local file ``path`` as ``key``, atomically; ``path`` may be consumed."""
        ...

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` as ``key``, atomically."""
        ...

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        """``length`` bytes of ``key`` from ``offset``."""
        ...

    def get_bytes(self, key: str) -> bytes:
        """All of ``key``."""
        ...

    def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""
        ...

    def local_file(self, key: str) -> Path | None:
        """The file on this machine that holds ``key`` when the backend is a local folder (pulls
        then copy its bytes in the kernel), else None."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key`` (no error when it is already gone)."""
        ...

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``."""
        ...


def _check_key(key: str) -> str:
    parts = key.split("/")
    if key.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in key:
        raise ValueError(f"invalid object key {key!r}")
    return key


class LocalBackend:
    """Objects as files under a root folder (the default: ``<workspace>/.llmops/store``)."""

    compress_by_default = False

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.url = self.root.as_uri()
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalBackend({str(self.root)!r})"

    def staging_dir(self) -> Path:
        # Inside the root, so that sealing a pack is a rename on the same filesystem.
        return self.root / "tmp"

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def put_file(self, key: str, path: Path) -> None:
        target = self._path(key)
        with disk_errors(f"store {self.url}"):
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.parent.resolve() == self.staging_dir():
                _fsync(path)
                path.replace(target)
            else:
                tmp = self._temp_copy(path)
                tmp.replace(target)
            _fsync(target.parent)

    def _temp_copy(self, source: Path) -> Path:
        fd, name = tempfile.mkstemp(dir=self.staging_dir(), prefix="put-")
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as out, source.open("rb") as src:
                shutil.copyfileobj(src, out, 8 * 1024 * 1024)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    def put_bytes(self, key: str, data: bytes) -> None:
        target = self._path(key)
        with disk_errors(f"store {self.url}"):
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=self.staging_dir(), prefix="put-")
            tmp = Path(name)
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
                tmp.replace(target)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            _fsync(target.parent)

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        try:
            fd = os.open(self._path(key), os.O_RDONLY)
        except FileNotFoundError:
            raise StoreError(f"object {key} is missing from store {self.url}") from None
        try:
            data = os.pread(fd, length, offset)
        finally:
            os.close(fd)
        if len(data) != length:
            raise StoreError(
                f"object {key} in store {self.url} is truncated: wanted bytes"
                f" [{offset}, {offset + length}), got {len(data)}"
            )
        return data

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise StoreError(f"object {key} is missing from store {self.url}") from None
        except OSError as exc:  # a folder where the object should be, unreadable ...
            raise StoreError(f"object {key} in store {self.url} cannot be read ({exc})") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def local_file(self, key: str) -> Path | None:
        return self._path(key)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        # Only walk the folder the prefix names (never tmp/), and tolerate files that a
        # concurrent push or gc renames or deletes while we look.
        top = prefix.split("/", 1)[0]
        start = self.root / top if top else self.root
        if not start.is_dir():
            return
        for path in sorted(start.rglob("*")):
            key = path.relative_to(self.root).as_posix()
            if not key.startswith(prefix) or key.startswith("tmp/"):
                continue
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):
                yield ObjectInfo(key=key, size=st.st_size, modified=st.st_mtime)


def _fsync(path: Path) -> None:
    """fsync a file, or a folder (which makes a rename inside it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def disk_errors(where: str) -> Iterator[None]:
    """Turn "disk full" while writing ``where`` (e.g. ``store file:///...``) into
    :class:`StoreFullError`."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StoreFullError(
                f"{where} is full ({exc.strerror})",
                hint="free space or run `llmops artifacts gc`; nothing of this push became visible",
            ) from exc
        raise


class S3Backend:
    """Objects in an S3-compatible bucket (AWS S3, MinIO, GCS's S3 API).

    Configuration comes from the usual AWS environment (``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``) plus ``LLMOPS_S3_ENDPOINT_URL`` (or
    ``AWS_ENDPOINT_URL``) for servers other than AWS. Uploads above 16 MiB are multipart with
    parallel parts; transient failures (5xx, throttling, dropped connections) are retried with
    exponential backoff and jitter, then reported as one clear error.
    """

    PART_SIZE = 16 * 1024 * 1024
    compress_by_default = True

    def __init__(
        self,
        bucket: str,
        prefix: str,
        *,
        endpoint_url: str | None = None,
        retries: int = 6,
        backoff_s: float = 0.2,
    ) -> None:
        from llmops._extras import require

        require("boto3", "botocore", feature="the S3 artifact store")
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        if retries < 1 or backoff_s < 0:
            raise ValueError("retries must be >= 1 and backoff_s >= 0")
        self.retries = retries
        self.backoff_s = backoff_s
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url or os.environ.get("LLMOPS_S3_ENDPOINT_URL") or None
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        # Retries happen in _retry (one policy for every call, short-read checks included), so
        # botocore's own retries are off: stacked retry layers multiply waiting times.
        config = Config(
            retries={"max_attempts": 1, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
            max_pool_connections=32,
        )
        self.client: Any = boto3.client("s3", endpoint_url=self.endpoint_url, config=config)
        self.transfer = TransferConfig(
            multipart_threshold=self.PART_SIZE,
            multipart_chunksize=self.PART_SIZE,
            max_concurrency=8,
            use_threads=True,
        )
        self._staging = Path(tempfile.gettempdir()) / "llmops-s3-staging"
        self._staging.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"S3Backend({self.url!r}, endpoint={self.endpoint_url!r})"

    def _key(self, key: str) -> str:
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def staging_dir(self) -> Path:
        return self._staging

    def _retry(self, what: str, fn: Callable[[], T]) -> T:
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        delay = self.backoff_s
        last: Exception | None = None
        for attempt in range(self.retries):
            try:
                return fn()
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                if code in ("NoSuchKey", "404", "NotFound"):
                    raise StoreError(f"object {what} is missing from store {self.url}") from None
                if status < 500 and code not in ("SlowDown", "RequestTimeout", "Throttling"):
                    raise StoreError(f"store {self.url} refused {what}: {code} {exc}") from None
                last = exc
            except (BotoCoreError, Boto3Error, OSError) as exc:
                last = exc  # connection dropped, timeout, failed multipart upload ...
            if attempt < self.retries - 1:
                time.sleep(delay * (1 + random.random()))  # noqa: S311 - jitter, not crypto
                delay = min(delay * 2, 5.0)
        raise StoreError(
            f"store {self.url} kept failing on {what} after {self.retries} attempts: {last}",
            hint="check the S3 endpoint and credentials, then retry; nothing partial is visible",
        )

    def put_file(self, key: str, path: Path) -> None:
        full = self._key(key)

        def upload() -> None:
            self.client.upload_file(str(path), self.bucket, full, Config=self.transfer)

        self._retry(key, upload)
        path.unlink(missing_ok=True)

    def put_bytes(self, key: str, data: bytes) -> None:
        full = self._key(key)
        self._retry(key, lambda: self.client.put_object(Bucket=self.bucket, Key=full, Body=data))

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        full = self._key(key)

        def fetch() -> bytes:
            resp = self.client.get_object(
                Bucket=self.bucket, Key=full, Range=f"bytes={offset}-{offset + length - 1}"
            )
            data: bytes = resp["Body"].read()
            if len(data) != length:  # a dropped connection can end the body early
                raise OSError(f"short read: {len(data)} of {length} bytes")
            return data

        return self._retry(f"{key} [{offset}, {offset + length})", fetch)

    def get_bytes(self, key: str) -> bytes:
        full = self._key(key)

        def fetch() -> bytes:
            data: bytes = self.client.get_object(Bucket=self.bucket, Key=full)["Body"].read()
            return data

        return self._retry(key, fetch)

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        full = self._key(key)

        def head() -> bool:
            try:
                self.client.head_object(Bucket=self.bucket, Key=full)
            except ClientError as exc:
                if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                    return False
                raise
            return True

        return self._retry(f"HEAD {key}", head)

    def local_file(self, key: str) -> Path | None:
        return None

    def delete(self, key: str) -> None:
        full = self._key(key)
        self._retry(key, lambda: self.client.delete_object(Bucket=self.bucket, Key=full))

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        full = (
            self._key(prefix.rstrip("/")) + "/"
            if prefix
            else (self.prefix + "/" if self.prefix else "")
        )
        paginator = self.client.get_paginator("list_objects_v2")
        strip = len(self.prefix) + 1 if self.prefix else 0
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
            for obj in page.get("Contents", []):
                yield ObjectInfo(
                    key=obj["Key"][strip:],
                    size=int(obj["Size"]),
                    modified=obj["LastModified"].timestamp(),
                )


def _local(url: str, default_root: Path) -> Backend:
    parsed = urlparse(url)
    return LocalBackend(Path(parsed.path) if parsed.scheme == "file" else default_root)


def _s3(url: str, default_root: Path) -> Backend:
    parsed = urlparse(url)
    if not parsed.netloc:
        raise ConfigError(f"store URL {url!r} names no bucket", hint="use s3://bucket/prefix")
    return S3Backend(parsed.netloc, parsed.path)


BACKENDS: dict[str, Callable[[str, Path], Backend]] = {"": _local, "file": _local, "s3": _s3}
"""Backends by URL scheme."""


def open_backend(url: str, *, default_root: Path) -> Backend:
    """The backend for a store URL: empty (``default_root`` on disk), ``file://…``, ``s3://…``.

    Raises:
        ConfigError: Unknown scheme or malformed URL.
    """
    if url and "://" not in url:
        return LocalBackend(Path(url))
    scheme = urlparse(url).scheme if url else ""
    factory = BACKENDS.get(scheme)
    if factory is None:
        raise ConfigError(
            f"unknown store URL scheme {scheme!r} in {url!r}",
            hint=f"use one of: {', '.join(s or '(empty)' for s in BACKENDS)}",
        )
    return factory(url, default_root)
