"""Incremental stream translators: fed upstream bytes as they arrive, each returns the
client's bytes for every upstream event completed so far, so nothing is held back.

A stream that breaks off, or ends before it says it is complete, ends with an error
event in the client's format, never with a made-up normal finish.
"""

from __future__ import annotations

from typing import Any

from relay.http import sse
from relay.http.json_spans import loads_or_none
from relay.log import log
from relay.providers.translate import Json, anthropic_to_openai, object_at, openai_to_anthropic

INCOMPLETE = "the upstream stream ended before the response was complete"


def anthropic_error(error: Any) -> Json:
    """An OpenAI-style error object as Anthropic's error event payload."""
    error = error if isinstance(error, dict) else {"message": str(error)}
    words = f"{error.get('type') or ''} {error.get('code') or ''}".lower()
    kind = (
        "rate_limit_error"
        if "rate_limit" in words
        else "overloaded_error"
        if "overloaded" in words
        else "invalid_request_error"
        if "invalid_request" in words
        else "api_error"
    )
    return {"type": "error", "error": {"type": kind, "message": str(error.get("message") or "upstream error")}}


def openai_error(error: Any) -> Json:
    """An Anthropic error object as OpenAI's error chunk payload."""
    error = error if isinstance(error, dict) else {"message": str(error)}
    return {
        "error": {
            "message": str(error.get("message") or "upstream error"),
            "type": str(error.get("type") or "server_error"),
            "param": None,
            "code": None,
        }
    }


class _ToolCall:
    __slots__ = ("id", "name", "arguments")

    def __init__(self, call_id: str, name: str):
        self.id, self.name = call_id, name
        self.arguments: list[str] = []

    def block(self) -> Json:
        return {"type": "tool_use", "id": self.id, "name": self.name, "input": {}}


class OpenAIToAnthropic:
    """An OpenAI chat completion stream as an Anthropic Messages stream."""

    def __init__(self, requested_model: str | None):
        self._frames = sse.Frames()
        self._model = requested_model
        self._started = False
        self._done = False
        self._index = -1  # the Anthropic content block now open (-1: none)
        self._open: str | None = None  # its kind: "text", "thinking" or "tool_use"
        self._tools: dict[Any, _ToolCall] = {}  # OpenAI tool index -> its latest call
        self._live: _ToolCall | None = None  # the call whose block streams live
        self._held: list[_ToolCall] = []  # calls given whole at the end (see _tool_call)
        self._blocks = 0
        self._stop_reason: str | None = None
        self._stop_sequence: str | None = None
        self._usage: Any = None

    def feed(self, chunk: bytes) -> bytes:
        return b"".join(self._frame(data) for _, data in self._frames.feed(chunk))

    def finish(self, broken: bool = False) -> bytes:
        """The bytes that end the client's stream once the upstream's has ended."""
        out = b"".join(self._frame(data) for _, data in self._frames.close())
        if self._done:
            return out
        if broken or self._stop_reason is None:
            return out + self._error({"message": INCOMPLETE, "type": "api_error"})
        return out + self._end()

    def _frame(self, data: bytes) -> bytes:
        if self._done:
            return b""
        if data.strip() == b"[DONE]":
            if self._stop_reason is None:
                return self._error({"message": INCOMPLETE, "type": "api_error"})
            return self._end()
        payload = loads_or_none(data)
        if not isinstance(payload, dict):
            return b""
        if payload.get("error") is not None and not payload.get("choices"):
            return self._error(payload["error"])
        out = self._start(payload)
        if isinstance(payload.get("usage"), dict):
            self._usage = payload["usage"]
        choices = payload.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
        delta = object_at(choice, "delta")
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            out += self._delta(
                "thinking",
                {"type": "thinking", "thinking": "", "signature": ""},
                {"type": "thinking_delta", "thinking": reasoning},
            )
        if isinstance(delta.get("content"), str) and delta["content"]:
            out += self._delta("text", {"type": "text", "text": ""}, {"type": "text_delta", "text": delta["content"]})
        for call in delta.get("tool_calls") or []:
            if isinstance(call, dict):
                out += self._tool_call(call)
        if choice.get("finish_reason"):
            self._stop_reason, self._stop_sequence = openai_to_anthropic.stop(choice)
            out += self._held_calls()
        return out

    def _start(self, payload: Json) -> bytes:
        if self._started:
            return b""
        self._started = True
        if isinstance(payload.get("model"), str):
            self._model = payload["model"]
        message: Json = {
            "id": openai_to_anthropic.message_id(payload.get("id")),
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return sse.frame("message_start", {"type": "message_start", "message": message})

    def _open_block(self, kind: str, block: Json) -> bytes:
        out = self._close()
        self._index, self._open = self._blocks, kind
        self._blocks += 1
        return out + sse.frame(
            "content_block_start", {"type": "content_block_start", "index": self._index, "content_block": block}
        )

    def _delta(self, kind: str, block: Json, delta: Json, index: int | None = None) -> bytes:
        out = b"" if index is not None or self._open == kind else self._open_block(kind, block)
        index = self._index if index is None else index
        return out + sse.frame("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})

    def _tool_call(self, call: Json) -> bytes:
        """A tool call's fragment. One call streams live in its block; a call that starts
        while another's block is open is held until the message ends, then given whole: an
        OpenAI stream may interleave the argument fragments of parallel calls, and an
        Anthropic block, once stopped, takes no more."""
        key = call.get("index", 0)
        function = object_at(call, "function")
        arguments = function.get("arguments") if isinstance(function.get("arguments"), str) else ""
        current = self._tools.get(key)
        out = b""
        if call.get("id") and (current is None or current.id != call["id"]):
            if self._live is not None and self._live is current:  # this index's call is complete
                out += self._close()
            current = self._tools[key] = _ToolCall(call["id"], function.get("name") or "")
            if self._open is None or self._open != "tool_use":
                out += self._open_block("tool_use", current.block())
                self._live = current
            else:
                self._held.append(current)
        if current is None or not arguments:
            return out
        if current is self._live:
            if self._open == "tool_use":
                return out + self._delta("tool_use", {}, {"type": "input_json_delta", "partial_json": arguments})
            log("a tool call's arguments arrived after its block was closed by text; dropped")
            return out
        current.arguments.append(arguments)
        return out

    def _held_calls(self) -> bytes:
        """The calls held back, each as a whole block, after the open block is closed."""
        out = self._close()
        for call in self._held:
            out += self._open_block("tool_use", call.block())
            partial = "".join(call.arguments)
            if partial:
                out += self._delta("tool_use", {}, {"type": "input_json_delta", "partial_json": partial})
            out += self._close()
        self._held = []
        return out

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return sse.frame("content_block_stop", {"type": "content_block_stop", "index": self._index})

    def _end(self) -> bytes:
        self._done = True
        out = self._close()
        usage = openai_to_anthropic.usage(self._usage)
        out += sse.frame(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": self._stop_reason, "stop_sequence": self._stop_sequence},
                "usage": usage,
            },
        )
        return out + sse.frame("message_stop", {"type": "message_stop"})

    def _error(self, error: Any) -> bytes:
        self._done = True
        return sse.frame("error", anthropic_error(error))


class AnthropicToOpenAI:
    """An Anthropic Messages stream as an OpenAI chat completion stream."""

    def __init__(self, include_usage: bool, created: int):
        self._frames = sse.Frames()
        self._include_usage = include_usage
        self._created = created
        self._id: str | None = None
        self._model: str | None = None
        self._usage: Json = {}
        # Anthropic block index (as the stream gives it) -> OpenAI tool call index
        self._tools: dict[object, int] = {}
        self._done = False

    def feed(self, chunk: bytes) -> bytes:
        return b"".join(self._frame(event, data) for event, data in self._frames.feed(chunk))

    def finish(self, broken: bool = False) -> bytes:
        out = b"".join(self._frame(event, data) for event, data in self._frames.close())
        if self._done:
            return out
        self._done = True
        return out + sse.frame(None, openai_error({"message": INCOMPLETE, "type": "server_error"}))

    def _chunk(self, delta: Json | None = None, finish_reason: str | None = None, **extra: Any) -> bytes:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
        return sse.frame(
            None,
            {
                "id": self._id,
                "object": "chat.completion.chunk",
                "created": self._created,
                "model": self._model,
                "choices": choices,
                **extra,
            },
        )

    def _frame(self, event: bytes, data: bytes) -> bytes:
        payload = loads_or_none(data)
        if self._done or not isinstance(payload, dict):
            return b""
        kind = payload.get("type") or event.decode(errors="replace")
        if kind == "message_start":
            message = object_at(payload, "message")
            self._id, self._model = message.get("id"), message.get("model")
            self._usage.update(message.get("usage") or {})
            return self._chunk({"role": "assistant", "content": ""})
        if kind == "content_block_start":
            block = object_at(payload, "content_block")
            if block.get("type") != "tool_use":
                return b""
            self._tools[payload.get("index")] = position = len(self._tools)
            return self._chunk({"tool_calls": [anthropic_to_openai.tool_call(block, position)]})
        if kind == "content_block_delta":
            delta = object_at(payload, "delta")
            if delta.get("type") == "text_delta":
                return self._chunk({"content": delta.get("text") or ""})
            if delta.get("type") == "input_json_delta" and payload.get("index") in self._tools:
                call = {
                    "index": self._tools[payload["index"]],
                    "function": {"arguments": delta.get("partial_json") or ""},
                }
                return self._chunk({"tool_calls": [call]})
            return b""
        if kind == "message_delta":
            self._usage.update({k: v for k, v in (payload.get("usage") or {}).items() if v is not None})
            stop = (payload.get("delta") or {}).get("stop_reason")
            return self._chunk({}, anthropic_to_openai.finish_reason(stop)) if stop else b""
        if kind == "message_stop":
            self._done = True
            usage = self._chunk(usage=anthropic_to_openai.usage(self._usage)) if self._include_usage else b""
            return usage + sse.frame(None, "[DONE]")
        if kind == "error":
            self._done = True
            return sse.frame(None, openai_error(payload.get("error")))
        return b""
