"""Gateway benchmarks (issue: serving). Run: python benchmarks/bench_gateway.py

Every server is its own process, as users run them: a fast stub backend (aiohttp, fixed answer,
optional SSE stream), ``llmops gateway`` in front of it, a lean aiohttp pass-through (the
smallest Python proxy, a floor for Python), and nginx when it is installed (the floor). The load
generator (this process, aiohttp) measures each target in alternating rounds after a warm-up:
  1. added p50 latency at concurrency 1 (target p50 minus direct p50);
  2. requests/s at concurrency 32;
  3. CPU time per request of the proxy process (from /proc, over the concurrency-32 phase);
  4. streaming: added p50 time to the first chunk at concurrency 1.
Then split accuracy through the gateway: 10,000 requests with distinct sticky keys at weight 10
(the observed share must fall inside the binomial 99% interval) and every key sent again (no key
may switch arm).
Goals (issue): +0.3 ms p50, 5,000 req/s at 32, 0.2 ms CPU/request, +0.5 ms TTFT.
Options: --rounds N, --n1 N (requests at concurrency 1), --n32 N, --skip-split.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

STUB = textwrap.dedent("""
    import sys
    from aiohttp import web
    BODY = b'{"id":"x","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}'
    CHUNK = b'data: {"choices":[{"index":0,"delta":{"content":"ok"}}]}\\n\\n'
    async def chat(request):
        body = await request.read()
        if b'"stream": true' in body or b'"stream":true' in body:
            out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await out.prepare(request)
            await out.write(CHUNK)
            await out.write(CHUNK)
            await out.write(b"data: [DONE]\\n\\n")
            await out.write_eof()
            return out
        return web.Response(body=BODY, content_type="application/json")
    async def models(request):
        return web.json_response({"object": "list", "data": [{"id": "m"}]})
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
""")

LEAN = textwrap.dedent("""
    import sys, aiohttp
    from aiohttp import web
    UPSTREAM = sys.argv[2]
    async def start(app):
        app["s"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    async def chat(request):
        body = await request.read()
        async with request.app["s"].post(UPSTREAM + "/v1/chat/completions", data=body,
                                         headers={"Content-Type": "application/json"}) as r:
            if r.content_type == "text/event-stream":
                out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
                await out.prepare(request)
                async for chunk in r.content.iter_any():
                    await out.write(chunk)
                await out.write_eof()
                return out
            return web.Response(body=await r.read(), status=r.status, content_type=r.content_type)
    async def stop(app):
        await app["s"].close()
    app = web.Application()
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_post("/v1/chat/completions", chat)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
""")

NGINX = textwrap.dedent("""
    worker_processes 1;
    master_process off;
    daemon off;
    pid {root}/nginx.pid;
    error_log {root}/error.log;
    events {{ worker_connections 1024; }}
    http {{
        access_log off;
        client_body_temp_path {root}/body; proxy_temp_path {root}/proxy;
        fastcgi_temp_path {root}/fcgi; uwsgi_temp_path {root}/uwsgi; scgi_temp_path {root}/scgi;
        upstream stub {{ server 127.0.0.1:{upstream}; keepalive 64; }}
        server {{
            listen 127.0.0.1:{port};
            location / {{
                proxy_pass http://stub;
                proxy_http_version 1.1;
                proxy_set_header Connection "";
                proxy_buffering off;
            }}
        }}
    }}
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def body(model: str, *, stream: bool = False) -> bytes:
    data: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        data["stream"] = True
    return json.dumps(data).encode()


async def latencies(url: str, model: str, n: int, *, stream: bool = False) -> list[float]:
    import aiohttp

    payload = body(model, stream=stream)
    out = []
    async with aiohttp.ClientSession() as session:
        for _ in range(n):
            t = time.perf_counter()
            async with session.post(
                url, data=payload, headers={"Content-Type": "application/json"}
            ) as r:
                if stream:
                    await r.content.readany()  # the first chunk
                    out.append(time.perf_counter() - t)
                    await r.read()
                else:
                    await r.read()
                    out.append(time.perf_counter() - t)
                assert r.status == 200, (url, r.status, await r.text())
    return out


async def throughput(
    url: str, model: str, n: int, concurrency: int, headers_for: Any = None
) -> tuple[float, list[tuple[int, str]]]:
    import aiohttp

    payload = body(model)
    queue = list(range(n))
    arms: list[tuple[int, str]] = []

    async def worker(session: aiohttp.ClientSession) -> None:
        while queue:
            i = queue.pop()
            headers = {
                "Content-Type": "application/json",
                **(headers_for(i) if headers_for else {}),
            }
            async with session.post(url, data=payload, headers=headers) as r:
                await r.read()
                assert r.status == 200, (url, r.status, await r.text())
                arms.append((i, r.headers.get("x-llmops-arm", "")))

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        t = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        return n / (time.perf_counter() - t), arms


def gateway_workspace(root: Path, stub_port: int) -> Path:
    import numpy as np
    from safetensors.numpy import save_file

    from llmops import Workspace

    ws = Workspace.init(root / "ws", examples=False)
    for i, (name, kind) in enumerate(
        (("base", "base-model"), ("lora", "adapter"), ("lora", "adapter"))
    ):
        folder = root / f"m{i}"
        folder.mkdir()
        save_file({"w": np.full((2, 2), i, dtype=np.float32)}, str(folder / "w.safetensors"))
        ws.artifacts.push(folder, name=name, kind=kind)
    url = f"http://127.0.0.1:{stub_port}/v1"
    ws.serving.backends.attach("lora@1", url=url, served_name="m1")
    ws.serving.backends.attach("lora@2", url=url, served_name="m2")
    ws.serving.traffic.set("bench", stable="lora@1")
    ws.serving.traffic.set(
        "split", stable="lora@1", candidate="lora@2", weight=10, sticky="header:x-user-id"
    )
    ws.close()
    return root / "ws"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n1", type=int, default=2000)
    parser.add_argument("--n32", type=int, default=10000)
    parser.add_argument("--skip-split", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        stub_port, gw_port, lean_port, nginx_port = (free_port() for _ in range(4))
        procs.append(subprocess.Popen([sys.executable, "-c", STUB, str(stub_port)]))
        wait_port(stub_port)
        ws = gateway_workspace(root, stub_port)
        env = {**os.environ, "LLMOPS_WORKSPACE": str(ws)}
        gateway = subprocess.Popen(
            [sys.executable, "-m", "llmops", "gateway", "--port", str(gw_port), "--quiet"], env=env
        )
        procs.append(gateway)
        lean = subprocess.Popen(
            [sys.executable, "-c", LEAN, str(lean_port), f"http://127.0.0.1:{stub_port}"]
        )
        procs.append(lean)
        targets: dict[str, tuple[int, str, int | None]] = {
            "direct": (stub_port, "m", None),
            "llmops gateway": (gw_port, "bench", gateway.pid),
            "lean aiohttp proxy": (lean_port, "m", lean.pid),
        }
        nginx_bin = shutil.which("nginx") or (
            "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
        )
        if nginx_bin:
            conf = root / "nginx.conf"
            conf.write_text(NGINX.format(root=root, upstream=stub_port, port=nginx_port))
            nginx = subprocess.Popen([nginx_bin, "-c", str(conf), "-p", str(root)])
            procs.append(nginx)
            targets["nginx"] = (nginx_port, "m", nginx.pid)
        for port, _, _ in targets.values():
            wait_port(port)
        results: dict[str, dict[str, list[float]]] = {
            k: {"p50": [], "rps": [], "cpu": [], "ttft": []} for k in targets
        }
        for port, model, _ in targets.values():  # warm-up
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            asyncio.run(latencies(url, model, 300))
            asyncio.run(throughput(url, model, 1000, 32))
        for r in range(args.rounds):
            for name, (port, model, pid) in targets.items():
                url = f"http://127.0.0.1:{port}/v1/chat/completions"
                lat = asyncio.run(latencies(url, model, args.n1))
                results[name]["p50"].append(statistics.median(lat) * 1000)
                cpu0 = cpu_seconds(pid) if pid else 0.0
                rps, _ = asyncio.run(throughput(url, model, args.n32, 32))
                if pid:
                    results[name]["cpu"].append((cpu_seconds(pid) - cpu0) / args.n32 * 1000)
                results[name]["rps"].append(rps)
                ttft = asyncio.run(latencies(url, model, args.n1 // 2, stream=True))
                results[name]["ttft"].append(statistics.median(ttft) * 1000)
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
        direct = results["direct"]
        print(
            f"\n{'target':<20} {'p50 c=1 ms':>16} {'added p50 ms':>14} {'req/s c=32':>16}"
            f" {'CPU ms/req':>12} {'TTFT ms':>14} {'added TTFT':>11}"
        )
        for name, res in results.items():
            p50, rps, ttft = (
                statistics.median(res["p50"]),
                statistics.median(res["rps"]),
                statistics.median(res["ttft"]),
            )
            added = p50 - statistics.median(direct["p50"])
            added_ttft = ttft - statistics.median(direct["ttft"])
            cpu = f"{statistics.median(res['cpu']):.3f}" if res["cpu"] else "-"
            span = lambda xs, f: f"{f(min(xs))}-{f(max(xs))}"  # noqa: E731
            print(
                f"{name:<20} {span(res['p50'], lambda v: f'{v:.3f}'):>16} {added:>14.3f}"
                f" {span(res['rps'], lambda v: f'{v:.0f}'):>16} {cpu:>12} {ttft:>14.3f} {added_ttft:>11.3f}"
            )
        if not args.skip_split:
            url = f"http://127.0.0.1:{gw_port}/v1/chat/completions"
            n = 10_000
            _, first = asyncio.run(
                throughput(url, "split", n, 32, lambda i: {"x-user-id": f"user-{i}"})
            )
            share = sum(arm == "candidate" for _, arm in first) / n
            half = 2.576 * math.sqrt(0.1 * 0.9 / n)
            _, again = asyncio.run(
                throughput(url, "split", n, 32, lambda i: {"x-user-id": f"user-{i}"})
            )
            switched = sum(a != b for a, b in zip(sorted(first), sorted(again), strict=True))
            inside = 0.1 - half <= share <= 0.1 + half
            print(
                f"\nsplit at weight 10 over {n} sticky keys: candidate share {share:.4f} (99% interval"
                f" {0.1 - half:.4f}-{0.1 + half:.4f}: {'inside' if inside else 'OUTSIDE'});"
                f" keys that switched arm when sent again: {switched}"
            )
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
