"""Artifact store benchmarks (issue: artifact store). Run: python benchmarks/bench_artifacts.py

Side by side in one run, on a temporary folder of the same disk:
  1. push and pull of --gib GiB of safetensors shards into the local store, against
     `cp -r` + `sync` of the same files (cp hashes nothing);
  2. peak RSS of push and pull for each size in --rss-gib (separate processes);
  3. dedup: a second version with 10% of its tensors changed, and a re-push of identical content;
  4. the S3 backend against a local moto server, against boto3's own transfer manager
     uploading the same files to the same server (--s3-gib; 0 skips it).
The weights are bf16-like (float32 normals truncated to 16 bits), which zstd shrinks ~20%.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TENSOR_BYTES = 64 * 1024 * 1024
POOL_BYTES = 512 * 1024 * 1024


def make_model(folder: Path, gib: float, *, seed: int = 0, changed_fraction: float = 0.0) -> Path:
    """``gib`` GiB of 1 GiB shards of 64 MiB bf16 tensors, each a distinct window of a pool;
    ``changed_fraction`` of the tensors (chosen at random) get every element changed."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pool = (rng.standard_normal(POOL_BYTES // 2, dtype=np.float32).view(np.uint32) >> 16).astype(
        np.uint16
    )
    offsets = np.random.default_rng(1234).integers(0, pool.size - TENSOR_BYTES // 2, 10**6)
    n_tensors = int(gib * 1024**3) // TENSOR_BYTES
    n_changed = round(n_tensors * changed_fraction)
    changed = set(np.random.default_rng(99).permutation(n_tensors)[:n_changed].tolist())
    per_shard = 16
    shards = (n_tensors + per_shard - 1) // per_shard
    index = 0
    for s in range(shards):
        tensors = {}
        for _ in range(min(per_shard, n_tensors - index)):
            start = int(offsets[index])
            data = pool[start : start + TENSOR_BYTES // 2].copy()
            if index in changed:
                data ^= 1  # a changed tensor: every element differs
            tensors[f"model.layers.{index}.weight"] = data.reshape(4096, -1)
            index += 1
        save_file(tensors, str(folder / f"model-{s + 1:05d}-of-{shards:05d}.safetensors"))
    (folder / "config.json").write_text('{"model_type": "llama"}')
    return folder


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def sync() -> None:
    subprocess.run(["sync"], check=True)


def bench_local(root: Path, gib: float, repeats: int) -> None:
    """Each measurement starts after a `sync` (so no earlier writeback competes with it) and
    ends with one (so every byte is on disk); cp and llmops alternate, and the median is kept."""
    from llmops import Workspace

    model = make_model(root / "model", gib)
    size = du(model)
    sync()
    time.sleep(5)  # let the disk settle after writing the model
    subprocess.run(["cat", *map(str, model.iterdir())], stdout=subprocess.DEVNULL, check=True)
    times: dict[str, list[float]] = {"cp": [], "push": [], "pull": []}
    # Nothing is deleted until the end: freeing blocks on this disk (mounted with `discard`)
    # slows the writes that follow, which would tax whichever side ran next.
    for i in range(repeats):
        ws = Workspace.init(root / f"ws{i}", examples=False)
        ws.artifacts  # noqa: B018 - create and migrate the registry outside the timing
        sync()
        times["cp"].append(
            timed(
                lambda: (
                    subprocess.run(["cp", "-r", str(model), str(root / f"cp{i}")], check=True),
                    sync(),
                )
            )
        )
        sync()
        times["push"].append(timed(lambda: (ws.artifacts.push(model, name="m"), sync())))
        sync()
        times["pull"].append(timed(lambda: (ws.artifacts.pull("m", root / f"pulled{i}"), sync())))
        if i < repeats - 1:
            ws.close()
    cp_s, push_s, pull_s = (statistics.median(times[k]) for k in ("cp", "push", "pull"))
    stored = du(ws.state_dir / "store" / "packs")  # the last run's store
    print(
        f"[local] {size / 1e9:.2f} GB of safetensors, stored as {stored / 1e9:.2f} GB;"
        f" median of {repeats} runs, each synced before and after"
    )
    print(
        f"  cp -r + sync      : {cp_s:6.2f} s  {size / cp_s / 1e9:.2f} GB/s  runs {_fmt(times['cp'])}"
    )
    print(
        f"  push + sync       : {push_s:6.2f} s  {size / push_s / 1e9:.2f} GB/s  = {cp_s / push_s:.2f}x cp"
        f"  runs {_fmt(times['push'])}"
    )
    print(
        f"  pull + sync       : {pull_s:6.2f} s  {size / pull_s / 1e9:.2f} GB/s  = {cp_s / pull_s:.2f}x cp"
        f"  runs {_fmt(times['pull'])}"
    )

    changed = make_model(root / "model-v2", gib, changed_fraction=0.1)
    v2 = ws.artifacts.push(changed, name="m", kind="base-model", parents=["m@1"])
    print(
        f"  10% tensors changed: {v2.stats.bytes_new / 1e9:.3f} GB new of"
        f" {v2.stats.bytes_total / 1e9:.2f} GB = {v2.stats.bytes_new / v2.stats.bytes_total:.1%}"
    )
    sync()
    again = ws.artifacts.push(model, name="m2", kind="base-model")
    print(
        f"  identical re-push : {again.stats.bytes_new} bytes new, {again.seconds:.2f} s ="
        f" {again.seconds / push_s:.1%} of the first push"
    )
    ws.close()
    for folder in root.iterdir():
        shutil.rmtree(folder, ignore_errors=True)


def _fmt(values: list[float]) -> str:
    return "/".join(f"{v:.2f}" for v in values)


# Peak RSS from VmHWM: ru_maxrss would carry over the forking parent's peak across exec.
RSS_CHILD = """
import sys
from llmops import Workspace
ws = Workspace.open(sys.argv[1])
if sys.argv[2] == "push":
    ws.artifacts.push(sys.argv[3], name="m", kind="base-model")
else:
    ws.artifacts.pull("m", sys.argv[3])
with open("/proc/self/status") as fh:
    print(next(line.split()[1] for line in fh if line.startswith("VmHWM:")))
"""


def bench_rss(root: Path, gib: float) -> None:
    from llmops import Workspace

    model = make_model(root / f"rss-{gib}", gib, seed=int(gib * 10))
    ws = Workspace.init(root / f"rss-ws-{gib}", examples=False)
    ws.close()
    peaks = {}
    for verb, arg in (("push", model), ("pull", root / f"rss-out-{gib}")):
        out = subprocess.run(
            [sys.executable, "-c", RSS_CHILD, str(ws.root), verb, str(arg)],
            capture_output=True,
            text=True,
            check=True,
        )
        peaks[verb] = int(out.stdout.strip()) / 1024
    print(f"[rss] {gib:g} GiB: peak RSS push {peaks['push']:.0f} MiB, pull {peaks['pull']:.0f} MiB")
    for folder in (model, root / f"rss-out-{gib}", ws.root):
        shutil.rmtree(folder, ignore_errors=True)


def bench_s3(root: Path, gib: float) -> None:
    import boto3
    from boto3.s3.transfer import TransferConfig

    from llmops.artifacts import ArtifactStore, S3Backend
    from llmops.db import Database

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
    os.environ.update(env)
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket="baseline")
        client.create_bucket(Bucket="llmops")
        model = make_model(root / "s3-model", gib, seed=7)
        size = du(model)
        config = TransferConfig(
            multipart_threshold=16 * 1024**2, multipart_chunksize=16 * 1024**2, max_concurrency=10
        )
        files = sorted(model.iterdir())
        base_s = timed(
            lambda: [client.upload_file(str(f), "baseline", f.name, Config=config) for f in files]
        )
        store = ArtifactStore(
            Database(f"sqlite:///{root / 's3.db'}"),
            S3Backend("llmops", "store", endpoint_url=endpoint),
            actor="bench",
        )
        push_s = timed(lambda: store.push(model, name="m", kind="base-model"))
        dl_s = timed(
            lambda: [
                client.download_file("baseline", f.name, str(root / f"dl-{f.name}")) for f in files
            ]
        )
        pull_s = timed(lambda: store.pull("m", root / "s3-pulled"))
        print(f"[s3] {size / 1e9:.2f} GB against moto on 127.0.0.1")
        print(
            f"  boto3 upload_file : {base_s:6.2f} s   llmops push: {push_s:6.2f} s = {base_s / push_s:.2f}x"
        )
        print(
            f"  boto3 download    : {dl_s:6.2f} s   llmops pull: {pull_s:6.2f} s = {dl_s / pull_s:.2f}x"
        )
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=4.0)
    parser.add_argument("--rss-gib", default="1,8")
    parser.add_argument("--s3-gib", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default=None, help="scratch folder (default: a temp dir)")
    args = parser.parse_args()
    os.environ.setdefault("LLMOPS_USER", "bench")
    for var in ("LLMOPS_DB_URL", "LLMOPS_STORE_URL", "LLMOPS_WORKSPACE"):
        os.environ.pop(var, None)
    print(json.dumps({"cpus": os.cpu_count(), "python": sys.version.split()[0]}))
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        if args.gib > 0:
            bench_local(root, args.gib, args.repeats)
        for gib in [float(g) for g in args.rss_gib.split(",") if g]:
            bench_rss(root, gib)
        if args.s3_gib > 0:
            bench_s3(root, args.s3_gib)
    print(
        f"benchmark process peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )


if __name__ == "__main__":
    main()
