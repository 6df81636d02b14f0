"""A fake LLM provider for tests, demos and benchmarks, on loopback.

One `FakeUpstream` speaks one flavour, "anthropic" (Messages API) or "openai" (Chat
Completions), records every request exactly as it arrived (raw header names and values,
body bytes), and answers like the real API: JSON or SSE, with usage. The Anthropic flavour
applies and bills prompt caching per upstream key (`prompt_cache.py`: breakpoints, TTLs,
minimum lengths, the 4-marker limit as a 400) and reports it in `usage`, also in the
stream's `message_start`; `advance(seconds)` moves its cache clock forward.

A test picks a behaviour per request with header fields that relay forwards untouched:

- `x-fake-scenario: status-429` (any status) - an error in the provider's format, with
  `retry-after: 0` on 429/529 (so relay does not cool the key down for other tests);
- `x-fake-scenario: midstream-error` - a stream that starts, then sends an `error` event;
- `x-fake-scenario: close-midstream` - a stream (or an Anthropic JSON answer, or a file)
  whose connection is dropped mid-way;
- `x-fake-scenario: stall-<seconds>` - say nothing for that long (at most 30 s), then answer;
- `x-fake-gate: <id>` - stream the first event, then wait until the test calls
  `release(<id>)` (proof that nothing between them buffers);
- `x-fake-gate-each: <id>` (Anthropic) - before text delta n (from 1), wait until the test
  calls `release("<id>-<n>")` (proof that nothing buffers later in the stream either);
- `x-fake-events: N`, `x-fake-pace-ms: M` - N text deltas, M ms apart;
- `x-fake-cache-read: N`, `x-fake-cache-write: M` - Anthropic usage reports N prompt-cache
  reads and M cache writes, whatever the fake's own prompt cache billed.
- `x-fake-bytes: N` (Anthropic, `GET /v1/files/<id>/content`) - a file of N bytes (bytes
  0 to 255 over and over), streamed in 64 KB chunks as `application/octet-stream`.
- `x-fake-json-bytes: N` (OpenAI, `POST /v1/embeddings`) - an embeddings answer of about N
  bytes (`large_embeddings(N)`), chunked in 64 KB pieces, without a content-length.

- `x-fake-<flavour>-scenario: ...` - as `x-fake-scenario`, but only the fake of that flavour
  ("anthropic" or "openai") acts on it (a route's two providers can then behave apart).

The OpenAI flavour also plays a tool-using model with `x-fake-tool-calls: on`: when the
request offers `tools` and its last message is the user's, it calls the first tool (each
required argument set to "fake"); when its last message is a tool result, it answers
`Tool said: <result>`. Streamed, the call's arguments arrive in two fragments.
`x-fake-tool-calls: parallel` makes two calls of it (`call_fake_1`, `call_fake_2`) whose
fragments interleave. `x-fake-stop-matched: <s>` names a matched stop string as vLLM does
(`stop_reason` beside `finish_reason: stop`); `x-fake-reasoning: <text>` streams that
reasoning (`reasoning_content`) before the answer. The Anthropic flavour refuses a
`thinking` block without a signature, as the API does.

And per upstream key, from the test itself: `rate_limit(key, retry_after)` makes the
fake answer 429 to every request made with that key until `lift(key)`; with `model=`, only
its Messages calls of that model (as a provider limits each model class apart), and with
`kind=` ("output-tokens", "requests", ...) the 429 says that limit ran out, in
`anthropic-ratelimit-<kind>-remaining: 0` and its `-reset`.

Run standalone: `python -m devtools.fake_upstream` (Anthropic on :8788, OpenAI on :8789).
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from devtools.fake_prompt_cache import CacheRuleError, PromptCache, upstream_org

REPLY_TEXT = "Hello from the fake upstream."
GATE_TIMEOUT_S = 30.0
FILE_CHUNK_BYTES = 64 * 1024
_FILE_PATTERN = bytes(range(256)) * (FILE_CHUNK_BYTES // 256 + 1)


def large_embeddings(size: int) -> bytes:
    """An embeddings answer (OpenAI's form) of about `size` bytes: one long vector."""
    head = b'{"object":"list","model":"text-embedding-3-small","data":[{"object":"embedding","index":0,"embedding":['
    tail = b'0.5]}],"usage":{"prompt_tokens":8,"total_tokens":8}}'
    return head + b"0.0123456," * max(0, (size - len(head) - len(tail)) // 10) + tail


def file_bytes(start: int, size: int) -> bytes:
    """Bytes `start` to `start + size` of a file served by `GET /v1/files/<id>/content` (see
    x-fake-bytes): 0 to 255 over and over, so a test can check any part it receives."""
    offset = start % 256
    return (_FILE_PATTERN[offset:] * (size // len(_FILE_PATTERN) + 2))[:size]


@dataclass
class Seen:
    """One request as the fake received it."""

    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes
    usage: dict | None = None  # the token usage the fake reported for it (Messages, Chat)
    cut_off: bool = False  # its answer could not all be written: the caller (relay) hung up
    deltas_sent: int = 0  # the text deltas of a stream written to the connection so far

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return values[0] if values else None

    def json(self):
        return json.loads(self.body)


def _model_of(body: bytes) -> str | None:
    try:
        request = json.loads(body)
    except ValueError:
        return None
    return request.get("model") if isinstance(request, dict) else None


def _input_tokens(body: bytes) -> int:
    """A deterministic stand-in for tokenisation: one token per 4 bytes of body."""
    return max(1, len(body) // 4)


def _sse(event: str | None, data) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def _chunks(text: str, count: int) -> list[str]:
    count = max(1, count)
    words = text.split(" ")
    if count <= len(words):
        size = -(-len(words) // count)
        parts = [" ".join(words[i : i + size]) for i in range(0, len(words), size)]
        return [p if i == 0 else " " + p for i, p in enumerate(parts)]
    return [text] + [" ."] * (count - 1)


def _openai_reply(request: dict) -> tuple[str | None, dict | None]:
    """What the fake tool-using model says: (text, tool call); see the module's docstring."""
    messages = request.get("messages") or [{}]
    last = messages[-1] if isinstance(messages[-1], dict) else {}
    tools = request.get("tools") or []
    if last.get("role") == "tool":
        content = last.get("content")
        if isinstance(content, list):
            content = "".join(part.get("text", "") for part in content)
        return f"Tool said: {content}", None
    if tools and last.get("role") == "user":
        function = tools[0]["function"]
        required = (function.get("parameters") or {}).get("required") or []
        arguments = json.dumps({name: "fake" for name in required})
        call = {"id": "call_fake_1", "type": "function", "function": {"name": function["name"], "arguments": arguments}}
        return None, call
    return REPLY_TEXT, None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers, then each event, go out in writes of their own: without TCP_NODELAY, Nagle's
    # algorithm holds each small write for the peer's delayed ACK (about 40 ms on loopback).
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, *args):  # keep test output clean
        pass

    # --- plumbing -------------------------------------------------------------------
    def _record(self) -> Seen:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        seen = Seen(self.command, self.path, list(self.headers.items()), body)
        self.server.fake._record(seen)
        return seen

    def _provider_fields(self) -> None:
        """The fields a real provider adds that clients rely on (ids, rate-limit state), and
        those it adds about the caller's account and connection (its organisation, the
        cookie of the CDN in front of it), which are relay's, not its clients'."""
        self.send_header("request-id", f"req_fake_{self.server.fake.count}")
        self.send_header("set-cookie", "__cf_bm=fake-cdn-cookie; path=/; HttpOnly; Secure; SameSite=None")
        if self.server.fake.flavour == "anthropic":
            self.send_header("anthropic-ratelimit-requests-limit", "4000")
            self.send_header("anthropic-ratelimit-requests-remaining", "3999")
            self.send_header("anthropic-organization-id", "00000000-fake-0org-0000-000000000000")
        else:
            self.send_header("x-ratelimit-remaining-requests", "9999")
            self.send_header("openai-organization", "org-fake-upstream")
            self.send_header("openai-project", "proj_fake_upstream")

    def _send_json(self, status: int, payload, extra: tuple = ()) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self._provider_fields()
        for name, value in extra:
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self._provider_fields()
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _send_chunked_json(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self._provider_fields()
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for start in range(0, len(body), FILE_CHUNK_BYTES):
            self._chunk(body[start : start + FILE_CHUNK_BYTES])
        self._end_stream()

    def _send_half_then_drop(self, payload) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self._drop()

    def _drop(self) -> None:
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(2)

    # --- dispatch -------------------------------------------------------------------
    def do_GET(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def do_DELETE(self):
        self._dispatch()

    def do_HEAD(self):
        """The head of a JSON answer, without its body (as HTTP has a HEAD answered)."""
        self._record()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self._provider_fields()
        self.send_header("content-length", "0")
        self.end_headers()

    def _dispatch(self) -> None:
        seen = self._record()
        flavour = self.server.fake.flavour
        scenario = seen.header(f"x-fake-{flavour}-scenario") or seen.header("x-fake-scenario") or ""
        limited = self.server.fake._limited(seen)
        if limited is not None:
            return self._error(429, *limited)
        if scenario.startswith("status-"):
            return self._error(int(scenario.split("-", 1)[1]))
        if scenario.startswith("stall-"):
            time.sleep(min(float(scenario.split("-", 1)[1]), GATE_TIMEOUT_S))
        path = seen.path.split("?", 1)[0]
        handler = {
            ("anthropic", "POST", "/v1/messages"): self._anthropic_messages,
            ("anthropic", "POST", "/v1/messages/count_tokens"): self._anthropic_count,
            ("anthropic", "GET", "/v1/models"): self._anthropic_models,
            ("openai", "POST", "/v1/chat/completions"): self._openai_chat,
            ("openai", "GET", "/v1/models"): self._openai_models,
            ("openai", "POST", "/v1/embeddings"): self._openai_embeddings,
            ("openai", "POST", "/v1/responses"): self._openai_responses,
        }.get((flavour, seen.method, path))
        if (flavour, seen.method) == ("anthropic", "GET") and re.fullmatch(r"/v1/files/[^/]+/content", path):
            handler = self._anthropic_file_content
        if handler is None:
            return self._error(404)
        try:
            handler(seen, scenario)
        except (BrokenPipeError, ConnectionResetError):
            seen.cut_off = True
            self.close_connection = True

    def _error(self, status: int, retry_after: str = "0", limit_fields: tuple = ()) -> None:
        extra = ((("retry-after", retry_after),) if status in (429, 529) else ()) + limit_fields
        message = f"fake upstream answered {status}"
        if self.server.fake.flavour == "openai":
            payload = {"error": {"message": message, "type": "fake_error", "param": None, "code": None}}
        else:
            kind = {429: "rate_limit_error", 529: "overloaded_error", 404: "not_found_error"}.get(status, "api_error")
            payload = {"type": "error", "error": {"type": kind, "message": message}}
        self._send_json(status, payload, extra)

    # --- Anthropic ------------------------------------------------------------------
    def _anthropic_messages(self, seen: Seen, scenario: str) -> None:
        request = seen.json()
        model = request.get("model", "unknown")
        for n, turn in enumerate(request.get("messages") or []):
            blocks = turn.get("content") if isinstance(turn, dict) else None
            for b, block in enumerate(blocks if isinstance(blocks, list) else []):
                if isinstance(block, dict) and block.get("type") == "thinking" and not block.get("signature"):
                    message = f"messages.{n}.content.{b}: Invalid `signature` in `thinking` block"
                    error = {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
                    return self._send_json(400, error)
        try:
            usage = self.server.fake.prompt_cache.bill(upstream_org(seen.header("x-api-key")), request)
        except CacheRuleError as exc:
            return self._send_json(
                400, {"type": "error", "error": {"type": "invalid_request_error", "message": str(exc)}}
            )
        for header, field in (
            ("x-fake-cache-write", "cache_creation_input_tokens"),
            ("x-fake-cache-read", "cache_read_input_tokens"),
        ):
            if seen.header(header) is not None:
                usage[field] = int(seen.header(header))
        seen.usage = usage
        output_tokens = 12
        if not request.get("stream"):
            message = {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": REPLY_TEXT}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {**usage, "output_tokens": output_tokens},
            }
            if scenario == "close-midstream":
                return self._send_half_then_drop(message)
            return self._send_json(200, message)
        self._start_stream()
        start = {
            "type": "message_start",
            "message": {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {**usage, "output_tokens": 1},
            },
        }
        self._chunk(_sse("message_start", start))
        self._hold(seen)
        self._chunk(
            _sse(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            )
        )
        self._chunk(_sse("ping", {"type": "ping"}))
        pieces = _chunks(REPLY_TEXT, int(seen.header("x-fake-events") or 1))
        pace = int(seen.header("x-fake-pace-ms") or 0) / 1000
        each = seen.header("x-fake-gate-each")
        for index, piece in enumerate(pieces):
            if index and pace:
                time.sleep(pace)
            if index and each:
                self.server.fake._gate(f"{each}-{index}").wait(GATE_TIMEOUT_S)
            self._chunk(
                _sse(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}},
                )
            )
            seen.deltas_sent += 1
            if scenario == "midstream-error":
                error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
                self._chunk(_sse("error", error))
                return self._end_stream()
            if scenario == "close-midstream":
                return self._drop()
        self._chunk(_sse("content_block_stop", {"type": "content_block_stop", "index": 0}))
        self._chunk(
            _sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": output_tokens},
                },
            )
        )
        self._chunk(_sse("message_stop", {"type": "message_stop"}))
        self._end_stream()

    def _anthropic_file_content(self, seen: Seen, scenario: str) -> None:
        size = int(seen.header("x-fake-bytes") or 1024)
        self.send_response(200)
        self.send_header("content-type", "application/octet-stream")
        self._provider_fields()
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for start in range(0, size, FILE_CHUNK_BYTES):
            if scenario == "close-midstream" and start >= size // 2:
                return self._drop()
            self._chunk(file_bytes(start, min(FILE_CHUNK_BYTES, size - start)))
        self._end_stream()

    def _anthropic_count(self, seen: Seen, scenario: str) -> None:
        self._send_json(200, {"input_tokens": _input_tokens(seen.body)})

    def _anthropic_models(self, seen: Seen, scenario: str) -> None:
        models = [
            {
                "type": "model",
                "id": "claude-sonnet-4-5",
                "display_name": "Claude Sonnet 4.5",
                "created_at": "2025-09-29T00:00:00Z",
            }
        ]
        self._send_json(
            200, {"data": models, "has_more": False, "first_id": "claude-sonnet-4-5", "last_id": "claude-sonnet-4-5"}
        )

    # --- OpenAI ---------------------------------------------------------------------
    def _openai_chat(self, seen: Seen, scenario: str) -> None:
        request = seen.json()
        model = request.get("model", "unknown")
        usage = {"prompt_tokens": _input_tokens(seen.body), "completion_tokens": 12}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        seen.usage = usage
        base = {"id": "chatcmpl-fake", "created": 1700000000, "model": model}
        tools_mode = seen.header("x-fake-tool-calls")
        text, call = _openai_reply(request) if tools_mode in ("on", "parallel") else (REPLY_TEXT, None)
        calls = [call] if call else []
        if call and tools_mode == "parallel":
            calls.append({**call, "id": "call_fake_2"})
        finish = "tool_calls" if call else "stop"
        # A server that names the stop string that matched (vLLM's `stop_reason`).
        matched = {"stop_reason": seen.header("x-fake-stop-matched")} if seen.header("x-fake-stop-matched") else {}
        if not request.get("stream"):
            message = {"role": "assistant", "content": text}
            if call:
                message["tool_calls"] = calls
            return self._send_json(
                200,
                {
                    **base,
                    "object": "chat.completion",
                    "choices": [{"index": 0, "message": message, "finish_reason": finish, **matched}],
                    "usage": usage,
                },
            )
        chunk = {**base, "object": "chat.completion.chunk"}
        self._start_stream()
        self._chunk(
            _sse(
                None,
                {
                    **chunk,
                    "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
                },
            )
        )
        self._hold(seen)
        if seen.header("x-fake-reasoning"):
            delta = {"reasoning_content": seen.header("x-fake-reasoning")}
            self._chunk(_sse(None, {**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}))
        pace = int(seen.header("x-fake-pace-ms") or 0) / 1000
        for index, piece in enumerate(_chunks(text, int(seen.header("x-fake-events") or 1)) if text else []):
            if index and pace:
                time.sleep(pace)
            self._chunk(
                _sse(None, {**chunk, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
            )
            seen.deltas_sent += 1
            if scenario == "midstream-error":
                self._chunk(_sse(None, {"error": {"message": "Overloaded", "type": "server_error"}}))
                return self._end_stream()
            if scenario == "close-midstream":
                return self._drop()
        # Each call's arguments in two fragments: the first halves of every call, then the
        # second halves (parallel calls interleave, as some servers stream them).
        fragments = []
        for n, each in enumerate(calls):
            arguments, name = each["function"]["arguments"], each["function"]["name"]
            half = len(arguments) // 2
            fragments.append((0, {**each, "index": n, "function": {"name": name, "arguments": arguments[:half]}}))
            fragments.append((1, {"index": n, "function": {"arguments": arguments[half:]}}))
        for _, fragment in sorted(fragments, key=lambda item: item[0]):
            delta = {"tool_calls": [fragment]}
            self._chunk(_sse(None, {**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}))
        final = {"index": 0, "delta": {}, "finish_reason": finish, **matched}
        self._chunk(_sse(None, {**chunk, "choices": [final]}))
        if (request.get("stream_options") or {}).get("include_usage"):
            self._chunk(_sse(None, {**chunk, "choices": [], "usage": usage}))
        self._chunk(_sse(None, "[DONE]"))
        self._end_stream()

    def _openai_models(self, seen: Seen, scenario: str) -> None:
        self._send_json(
            200,
            {
                "object": "list",
                "data": [{"id": "gpt-4o-mini", "object": "model", "created": 1700000000, "owned_by": "fake"}],
            },
        )

    def _openai_embeddings(self, seen: Seen, scenario: str) -> None:
        request = seen.json()
        if seen.header("x-fake-json-bytes"):
            return self._send_chunked_json(large_embeddings(int(seen.header("x-fake-json-bytes"))))
        inputs = request.get("input")
        inputs = inputs if isinstance(inputs, list) else [inputs]
        self._send_json(
            200,
            {
                "object": "list",
                "model": request.get("model"),
                "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i in range(len(inputs))],
                "usage": {"prompt_tokens": _input_tokens(seen.body), "total_tokens": _input_tokens(seen.body)},
            },
        )

    def _openai_responses(self, seen: Seen, scenario: str) -> None:
        request = seen.json()
        self._send_json(
            200,
            {
                "id": "resp_fake",
                "object": "response",
                "created_at": 1700000000,
                "status": "completed",
                "model": request.get("model"),
                "output": [
                    {
                        "type": "message",
                        "id": "msg_fake",
                        "status": "completed",
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": REPLY_TEXT, "annotations": []}],
                    }
                ],
                "usage": {
                    "input_tokens": _input_tokens(seen.body),
                    "output_tokens": 12,
                    "total_tokens": _input_tokens(seen.body) + 12,
                },
            },
        )

    # --- gates ----------------------------------------------------------------------
    def _hold(self, seen: Seen) -> None:
        gate = seen.header("x-fake-gate")
        if gate:
            self.server.fake._gate(gate).wait(GATE_TIMEOUT_S)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 drops connection attempts when a Worker under
    # load opens many at once: they come back a second later, or as a 502 from relay.
    request_queue_size = 128
    fake: FakeUpstream


class FakeServer:
    """A fake's HTTP server on 127.0.0.1, served from a thread of its own: what it was sent,
    and the gates a held answer waits on until a test releases it (all released when it
    stops). A context manager, or start()/stop()."""

    def __init__(self, server: ThreadingHTTPServer):
        self._server = server
        server.fake = self  # type: ignore[attr-defined]  # the handlers reach their fake through it
        self._lock = threading.Lock()
        self._seen: list[Any] = []
        self._gates: dict[str, threading.Event] = {}
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)

    def release(self, gate: str) -> None:
        self._gate(gate).set()

    def _gate(self, gate: str) -> threading.Event:
        with self._lock:
            return self._gates.setdefault(gate, threading.Event())

    def _record(self, seen: Any) -> None:
        with self._lock:
            self._seen.append(seen)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            for event in self._gates.values():
                event.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class FakeUpstream(FakeServer):
    """A running fake provider on 127.0.0.1; use as a context manager or start()/stop()."""

    def __init__(self, flavour: str = "anthropic", port: int = 0):
        if flavour not in ("anthropic", "openai"):
            raise ValueError(flavour)
        self.flavour = flavour
        super().__init__(_Server(("127.0.0.1", port), _Handler))
        self._rate_limited: dict[str, tuple[str, str | None, str | None]] = {}
        self.prompt_cache = PromptCache()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """The base URL in the SDK convention: OpenAI's includes /v1, Anthropic's does not."""
        root = f"http://127.0.0.1:{self.port}"
        return root + "/v1" if self.flavour == "openai" else root

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._seen)

    def requests(self, scenario_tag: str | None = None) -> list[Seen]:
        """Requests received so far, optionally only those carrying `x-test-tag: <tag>`."""
        with self._lock:
            seen = list(self._seen)
        if scenario_tag is None:
            return seen
        return [s for s in seen if s.header("x-test-tag") == scenario_tag]

    def rate_limit(self, key: str, retry_after: int | str, model: str | None = None, kind: str | None = None) -> None:
        with self._lock:
            self._rate_limited[key] = (str(retry_after), model, kind)

    def lift(self, key: str) -> None:
        with self._lock:
            self._rate_limited.pop(key, None)

    def _limited(self, seen: Seen) -> tuple[str, tuple] | None:
        """The retry-after and limit fields of the 429 this request gets, or None."""
        key = seen.header("x-api-key") or (seen.header("authorization") or "").removeprefix("Bearer ")
        with self._lock:
            limit = self._rate_limited.get(key)
        if limit is None:
            return None
        retry_after, model, kind = limit
        if model is not None and (seen.path.split("?", 1)[0] != "/v1/messages" or _model_of(seen.body) != model):
            return None
        if kind is None:
            return retry_after, ()
        reset = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + float(retry_after)))
        return retry_after, (
            (f"anthropic-ratelimit-{kind}-remaining", "0"),
            (f"anthropic-ratelimit-{kind}-reset", reset),
        )

    def advance(self, seconds: float) -> None:
        """Let `seconds` pass for the prompt cache (entries expire after their TTL)."""
        self.prompt_cache.advance(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--anthropic-port", type=int, default=8788)
    parser.add_argument("--openai-port", type=int, default=8789)
    args = parser.parse_args()
    fakes = [FakeUpstream("anthropic", args.anthropic_port).start(), FakeUpstream("openai", args.openai_port).start()]
    for fake in fakes:
        print(f"fake {fake.flavour} upstream on {fake.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        for fake in fakes:
            fake.stop()


if __name__ == "__main__":
    main()
