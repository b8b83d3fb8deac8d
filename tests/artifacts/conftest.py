"""Artifact fixtures: small safetensors models, and stores on local disk and on a real
S3-compatible server (moto's standalone server, started on 127.0.0.1 for the session)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from llmops.artifacts import ArtifactStore, open_backend
from llmops.db import Database

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on loopback for the whole test session."""
    pytest.importorskip("moto")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("moto server did not start")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket; the environment points boto3 and llmops at the test server."""
    import boto3

    for key, value in S3_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("LLMOPS_S3_ENDPOINT_URL", s3_endpoint)
    bucket = f"llmops-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArtifactStore]:
    """An artifact store on each backend, with a SQLite registry."""
    url = "" if request.param == "local" else f"s3://{request.getfixturevalue('s3_bucket')}/store"
    db = Database(f"sqlite:///{tmp_path / 'registry.db'}")
    backend = open_backend(url, default_root=tmp_path / "store")
    yield ArtifactStore(db, backend, actor="tester")
    db.dispose()


ModelMaker = Callable[..., Path]


@pytest.fixture
def make_model(tmp_path: Path) -> ModelMaker:
    """Write a small model folder: safetensors weights plus config.json."""

    def make(
        name: str = "model",
        *,
        layers: int = 10,
        width: int = 256,
        seed: int = 0,
        changed: tuple[int, ...] = (),
        dtype: str = "float32",
    ) -> Path:
        folder = tmp_path / name
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)
        tensors = {}
        for i in range(layers):
            weight = rng.standard_normal((width, width)).astype(dtype)
            if i in changed:
                weight = weight + 1
            tensors[f"layers.{i}.weight"] = weight
            tensors[f"layers.{i}.bias"] = np.full(width, i, dtype=dtype)
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
        (folder / "config.json").write_text(f'{{"model_type": "llama", "hidden_size": {width}}}')
        return folder

    return make


def files_equal(a: Path, b: Path) -> bool:
    left = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    right = sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    return left == right and all((a / p).read_bytes() == (b / p).read_bytes() for p in left)


__all__ = ["S3_ENV", "ModelMaker", "files_equal", "free_port"]
os.environ.setdefault("LLMOPS_USER", "tester")
