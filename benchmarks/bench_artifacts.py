"""Artifact store benchmarks (issue: artifact store). Run: python benchmarks/bench_artifacts.py

Side by side in one run, on a temporary folder of the same disk:
  1. `llmops artifacts push` and `pull` of --gib GiB of safetensors shards (local store) as
     whole processes, against `cp -r` of the same folder, each followed by `sync`, in
     alternating pairs after a warm-up pair (cp hashes nothing);
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
from collections.abc import Callable
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


def _run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def _pairs(
    ours: list[str],
    cp: list[str],
    *,
    pairs: int,
    cleanup: list[Path],
    before_ours: Callable[[], None] = lambda: None,
) -> tuple[list[float], list[float]]:
    """Whole processes, each followed by ``sync`` inside its timing, then by removing what it
    wrote and another ``sync`` (outside). Ours and cp alternate, and which goes first alternates
    too. The first pair is a warm-up and dropped. Returns (our times, cp times)."""
    times: dict[str, list[float]] = {"ours": [], "cp": []}
    for i in range(pairs + 1):
        for side in ("cp", "ours") if i % 2 == 0 else ("ours", "cp"):
            if side == "ours":
                before_ours()
            sync()
            cmd = ours if side == "ours" else cp
            seconds = timed(lambda cmd=cmd: (_run(cmd), sync()))  # type: ignore[misc]
            if i > 0:
                times[side].append(seconds)
            for path in cleanup:
                shutil.rmtree(path, ignore_errors=True)
            sync()
    return times["ours"], times["cp"]


def _report(what: str, size: int, ours_s: list[float], cp_s: list[float]) -> float:
    ratios = [c / o for o, c in zip(ours_s, cp_s, strict=True)]
    median = statistics.median(ours_s)
    print(
        f"  {what}: {median:.2f} s ({size / median / 1e9:.2f} GB/s) vs cp -r"
        f" {statistics.median(cp_s):.2f} s; median pair ratio {statistics.median(ratios):.2f}x cp"
        f" (range {min(ratios):.2f}-{max(ratios):.2f}); ours {_fmt(ours_s)}, cp {_fmt(cp_s)}"
    )
    return median


def bench_local(root: Path, gib: float, pairs: int) -> None:
    """``llmops artifacts push DIR --name N --kind base-model`` and ``llmops artifacts pull N@1
    DEST`` as whole processes against ``cp -r`` of the same folder (see :func:`_pairs`), then
    dedup of a changed version and an identical re-push."""
    from llmops import Workspace

    llmops = str(Path(sys.executable).with_name("llmops"))
    model = make_model(root / f"model-{gib:g}", gib)
    size = du(model)
    sync()
    subprocess.run(["cat", *map(str, model.iterdir())], stdout=subprocess.DEVNULL, check=True)
    print(
        f"[local] {size / 1e9:.2f} GB of safetensors: whole processes, each + sync, {pairs}"
        " alternating pairs after a warm-up pair"
    )
    ws_dir = root / "ws"
    Workspace.init(ws_dir, examples=False).close()
    state = ws_dir / ".llmops"
    empty = root / "empty-state"
    shutil.copytree(state, empty)  # the migrated, empty registry every push starts from

    def fresh_state() -> None:
        shutil.rmtree(state, ignore_errors=True)
        shutil.copytree(empty, state)

    copy = root / "cp"
    push = [llmops, "--workspace", str(ws_dir), "artifacts", "push", str(model), "--name", "m",
            "--kind", "base-model"]  # fmt: skip
    ours, cps = _pairs(
        push, ["cp", "-r", str(model), str(copy)], pairs=pairs, cleanup=[copy],
        before_ours=fresh_state,
    )  # fmt: skip
    push_s = _report("push", size, ours, cps)

    dest = root / "pulled"  # from the store the last push filled
    pull = [llmops, "--workspace", str(ws_dir), "artifacts", "pull", "m@1", str(dest)]
    ours, cps = _pairs(pull, ["cp", "-r", str(model), str(dest)], pairs=pairs, cleanup=[dest])
    _report("pull", size, ours, cps)

    ws = Workspace.open(ws_dir)
    changed = make_model(root / "model-v2", gib, changed_fraction=0.1)
    v2 = ws.artifacts.push(changed, name="m", kind="base-model", parents=["m@1"])
    print(
        f"  10% tensors changed: {v2.stats.bytes_new / 1e9:.3f} GB new of"
        f" {v2.stats.bytes_total / 1e9:.2f} GB = {v2.stats.bytes_new / v2.stats.bytes_total:.1%}"
    )
    sync()
    again = ws.artifacts.push(model, name="m", kind="base-model")
    print(
        f"  identical re-push: {again.stats.bytes_new} bytes new, {again.seconds:.3f} s in-process"
        f" = {again.seconds / push_s:.1%} of the first push's process time"
    )
    ws.close()
    for folder in (ws_dir, empty, changed, model):
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
    parser.add_argument("--gib", default="1.1,4", help="sizes of the local pairs, GiB")
    parser.add_argument("--rss-gib", default="1,8")
    parser.add_argument("--s3-gib", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3, help="pairs after the warm-up")
    parser.add_argument("--dir", default=None, help="scratch folder (default: a temp dir)")
    args = parser.parse_args()
    os.environ.setdefault("LLMOPS_USER", "bench")
    for var in ("LLMOPS_DB_URL", "LLMOPS_STORE_URL", "LLMOPS_WORKSPACE"):
        os.environ.pop(var, None)
    print(json.dumps({"cpus": os.cpu_count(), "python": sys.version.split()[0]}))
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        for gib in [float(g) for g in args.gib.split(",") if g]:
            bench_local(root, gib, args.repeats)
        for gib in [float(g) for g in args.rss_gib.split(",") if g]:
            bench_rss(root, gib)
        if args.s3_gib > 0:
            bench_s3(root, args.s3_gib)
    print(
        f"benchmark process peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )


if __name__ == "__main__":
    main()
