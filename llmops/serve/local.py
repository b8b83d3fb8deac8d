"""The local backend: a small OpenAI-compatible server on transformers + peft, for machines
without vLLM (the embedded default). One base model, any number of LoRA adapters switched per
request by the ``model`` field, streaming, and vLLM's runtime adapter endpoints
(``/v1/load_lora_adapter``, ``/v1/unload_lora_adapter``) when started with
``--allow-runtime-lora``.

Generation runs one request at a time in a worker thread (a model is not re-entrant, and two
generations would only fight over the same cores); a client that disconnects stops its
generation at the next token.

Run it as ``python -m llmops.serve.local --base DIR --served-name NAME [--adapter NAME=DIR]``;
``llmops serve start`` does that from the registry.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiohttp import web

__all__ = ["LocalModel", "main", "serve"]


def _check_adapter_dir(path: Path) -> Path:
    if not (path / "adapter_config.json").is_file():
        raise ValueError(f"{path} has no adapter_config.json")
    if not (path / "adapter_model.safetensors").is_file():
        raise ValueError(f"{path} has no adapter_model.safetensors (pickled weights are refused)")
    return path


class LocalModel:
    """A base model with named adapters, generating for one served name at a time."""

    def __init__(self, base: Path, *, served_name: str, adapters: dict[str, Path]) -> None:
        from llmops._extras import quiet_import, require

        require("torch", "transformers", feature="the local serving backend")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.base_dir = base
        self.served_name = served_name
        self.lock = threading.Lock()
        self.model: Any = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        self.model.eval()
        self.tokenizers: dict[str, Any] = {served_name: AutoTokenizer.from_pretrained(base)}
        self.adapters: dict[str, Path] = {}
        self._peft = False
        if adapters:
            quiet_import("peft", feature="adapters on the local serving backend")
        for name, path in adapters.items():
            self.load_adapter(name, path)

    def load_adapter(self, name: str, path: Path) -> None:
        """Add adapter ``name`` from ``path`` (its own tokenizer, if it has one, goes with it)."""
        import warnings

        from transformers import AutoTokenizer

        path = _check_adapter_dir(Path(path))
        if name == self.served_name or name in self.adapters:
            raise ValueError(f"the name {name!r} is already served")
        with self.lock, warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # peft vs transformers 5 renames
            if not self._peft:
                from peft import PeftModel

                self.model = PeftModel.from_pretrained(self.model, path, adapter_name=name)
                self._peft = True
            else:
                self.model.load_adapter(path, adapter_name=name)
            self.model.eval()
            self.adapters[name] = path
            has_own = (path / "tokenizer_config.json").is_file()
            self.tokenizers[name] = (
                AutoTokenizer.from_pretrained(path)
                if has_own
                else self.tokenizers[self.served_name]
            )

    def unload_adapter(self, name: str) -> None:
        """Remove adapter ``name``."""
        if name not in self.adapters:
            raise KeyError(name)
        with self.lock:
            self.model.delete_adapter(name)
            del self.adapters[name]
            del self.tokenizers[name]

    def models(self) -> list[dict[str, Any]]:
        """``/v1/models`` entries (adapters name their ``parent``, as vLLM does)."""
        now = int(time.time())
        out = [
            {
                "id": self.served_name,
                "object": "model",
                "created": now,
                "owned_by": "llmops-local",
                "root": str(self.base_dir),
                "parent": None,
            }
        ]
        out += [
            {
                "id": n,
                "object": "model",
                "created": now,
                "owned_by": "llmops-local",
                "root": str(p),
                "parent": self.served_name,
            }
            for n, p in self.adapters.items()
        ]
        return out

    def generate(
        self,
        name: str,
        body: dict[str, Any],
        *,
        cancelled: threading.Event,
        streamer: Any = None,
    ) -> dict[str, Any]:
        """Answer one chat request for served name ``name`` (blocks; run it in a thread)."""
        import contextlib

        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        class _Cancel(StoppingCriteria):  # type: ignore[misc]
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                return cancelled.is_set()

        tokenizer = self.tokenizers[name]
        messages = [
            {"role": str(m.get("role")), "content": str(m.get("content") or "")}
            for m in body["messages"]
        ]
        max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 256)
        given = body.get("temperature")
        temperature = 1.0 if given is None else float(given)
        sample = temperature > 0
        with self.lock:
            ids = tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )["input_ids"]
            if body.get("seed") is not None:
                torch.manual_seed(int(body["seed"]))
            if self._peft and name != self.served_name:
                self.model.set_adapter(name)
            scope = (
                self.model.disable_adapter()
                if self._peft and name == self.served_name
                else contextlib.nullcontext()
            )
            with torch.no_grad(), scope:
                out = self.model.generate(
                    ids,
                    max_new_tokens=max_tokens,
                    do_sample=sample,
                    temperature=temperature if sample else None,
                    top_p=float(body["top_p"]) if sample and body.get("top_p") else None,
                    top_k=None,
                    streamer=streamer,
                    stopping_criteria=StoppingCriteriaList([_Cancel()]),
                    pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
                )
        new = out[0][ids.shape[1] :]
        text = tokenizer.decode(new, skip_special_tokens=True)
        finish = "length" if int(new.shape[0]) >= max_tokens else "stop"
        return {
            "text": text,
            "prompt_tokens": int(ids.shape[1]),
            "completion_tokens": int(new.shape[0]),
            "finish_reason": finish,
        }


def _completion(name: str, result: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": name,
        "choices": [
            {
                "index": 0,
                "finish_reason": result["finish_reason"],
                "message": {"role": "assistant", "content": result["text"]},
            }
        ],
        "usage": {
            "prompt_tokens": result["prompt_tokens"],
            "completion_tokens": result["completion_tokens"],
            "total_tokens": result["prompt_tokens"] + result["completion_tokens"],
        },
    }


def _chunk(cid: str, name: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    event = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": name,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(event)}\n\n".encode()


def _error(status: int, message: str) -> web.Response:
    from aiohttp import web

    return web.json_response(
        {"error": {"message": message, "type": "invalid_request_error", "code": status}},
        status=status,
    )


class _Server:
    """The HTTP handlers over one :class:`LocalModel`."""

    def __init__(self, model: LocalModel, *, allow_runtime_lora: bool) -> None:
        self.model = model
        self.allow_runtime_lora = allow_runtime_lora

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": self.model.models()})

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the body is not JSON")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "messages must be a list")
        name = body.get("model")
        if name not in self.model.tokenizers:
            return _error(404, f"the model {name!r} does not exist")
        cancelled = threading.Event()
        if body.get("stream") is not True:
            try:
                result = await asyncio.to_thread(
                    self.model.generate, name, body, cancelled=cancelled
                )
            finally:
                cancelled.set()  # a cancelled handler (client gone) stops the generation
            return web.json_response(_completion(name, result))
        return await self._stream(request, name, body, cancelled)

    async def _stream(
        self, request: web.Request, name: str, body: dict[str, Any], cancelled: threading.Event
    ) -> web.StreamResponse:
        from transformers import TextIteratorStreamer

        tokenizer = self.model.tokenizers[name]
        streamer = TextIteratorStreamer(
            tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600
        )
        job = asyncio.create_task(
            asyncio.to_thread(
                self.model.generate, name, body, cancelled=cancelled, streamer=streamer
            )
        )
        out = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        cid = f"chatcmpl-{uuid.uuid4().hex}"
        pieces: Iterator[str] = iter(streamer)
        try:
            await out.prepare(request)
            await out.write(_chunk(cid, name, {"role": "assistant", "content": ""}))
            while True:
                piece = await asyncio.to_thread(next, pieces, None)
                if piece is None:
                    break
                if piece:
                    await out.write(_chunk(cid, name, {"content": piece}))
            result = await job
            await out.write(_chunk(cid, name, {}, result["finish_reason"]))
            options = body.get("stream_options")
            if isinstance(options, dict) and options.get("include_usage"):
                usage = _completion(name, result)["usage"]
                event = {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "model": name,
                    "choices": [],
                    "usage": usage,
                }
                await out.write(f"data: {json.dumps(event)}\n\n".encode())
            await out.write(b"data: [DONE]\n\n")
            await out.write_eof()
            return out
        finally:
            cancelled.set()
            if not job.done():
                await asyncio.wait([job], timeout=60)

    async def load_lora(self, request: web.Request) -> web.Response:
        if not self.allow_runtime_lora:
            return _error(403, "runtime adapter loading is off (start with --allow-runtime-lora)")
        body = await request.json()
        name, path = body.get("lora_name"), body.get("lora_path")
        if not isinstance(name, str) or not isinstance(path, str) or not name:
            return _error(400, "lora_name and lora_path are required")
        try:
            await asyncio.to_thread(self.model.load_adapter, name, Path(path))
        except (ValueError, OSError) as exc:
            return _error(400, str(exc))
        return web.Response(text=f"Success: LoRA adapter '{name}' added successfully.")

    async def unload_lora(self, request: web.Request) -> web.Response:
        if not self.allow_runtime_lora:
            return _error(403, "runtime adapter loading is off (start with --allow-runtime-lora)")
        body = await request.json()
        try:
            await asyncio.to_thread(self.model.unload_adapter, str(body.get("lora_name")))
        except KeyError:
            return _error(404, f"no adapter {body.get('lora_name')!r}")
        return web.Response(text=f"Success: LoRA adapter '{body.get('lora_name')}' removed.")

    def app(self) -> Any:
        from aiohttp import web

        app = web.Application(client_max_size=16 * 1024**2)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/load_lora_adapter", self.load_lora)
        app.router.add_post("/v1/unload_lora_adapter", self.unload_lora)
        return app


def serve(model: LocalModel, *, host: str, port: int, allow_runtime_lora: bool = False) -> None:
    """Serve ``model`` until interrupted."""
    from aiohttp import web

    web.run_app(
        _Server(model, allow_runtime_lora=allow_runtime_lora).app(),
        host=host,
        port=port,
        access_log=None,
        handler_cancellation=True,
        print=None,
    )


def main(argv: list[str] | None = None) -> None:
    """``python -m llmops.serve.local``."""
    parser = argparse.ArgumentParser(description="llmops local OpenAI-compatible backend.")
    parser.add_argument("--base", required=True, type=Path, help="Base model folder.")
    parser.add_argument("--served-name", required=True, help="Name clients use for the base.")
    parser.add_argument("--adapter", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--allow-runtime-lora", action="store_true")
    args = parser.parse_args(argv)
    adapters: dict[str, Path] = {}
    for spec in args.adapter:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            parser.error(f"--adapter {spec!r} is not NAME=DIR")
        adapters[name] = Path(path)
    model = LocalModel(args.base, served_name=args.served_name, adapters=adapters)
    print(f"llmops local backend on http://{args.host}:{args.port}/v1", flush=True)
    serve(model, host=args.host, port=args.port, allow_runtime_lora=args.allow_runtime_lora)


if __name__ == "__main__":
    main()
