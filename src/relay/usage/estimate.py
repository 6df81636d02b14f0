"""The output tokens of a stream cut short, estimated from the deltas that passed.

A provider reports a stream's output tokens in its last events (Anthropic's message_delta,
OpenAI's usage chunk or response.completed), which a stream cut short (the client hung up,
the upstream broke off or sent an error event) never carries: its row would bill the input
alone, whatever the provider generated, and a client could take most of an answer for
free. What passed is counted instead, from the text of its deltas: a token for about four
bytes of UTF-8 (close for English prose and code; low for CJK text, nearer a token a
character), and at least one for each delta that carries output. The row says the count is
relay's (usage_basis).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from relay.http.json_spans import loads_or_none

BYTES_PER_TOKEN = 4
# The fields of an Anthropic content_block_delta's `delta` that hold generated output
# (a signature_delta's signature and a citations_delta's citation are not generated text).
_ANTHROPIC_FIELDS = ("text", "partial_json", "thinking")
# Those of an OpenAI Chat Completions chunk's `delta` (reasoning_content / reasoning: the
# reasoning of OpenAI-compatible providers such as DeepSeek's).
_OPENAI_FIELDS = ("content", "refusal", "reasoning_content", "reasoning")


def output_tokens(surface: str, deltas: Iterable[bytes]) -> int:
    """Output tokens in the data of a stream's delta events: Anthropic content_block_delta
    events on the `anthropic` surface; on the `openai` one, Chat Completions or legacy
    Completions chunks, or Responses `*.delta` events."""
    texts = _anthropic_texts if surface == "anthropic" else _openai_texts
    total = 0
    for data in deltas:
        payload = loads_or_none(data)
        if payload is None:
            continue
        size = sum(len(text.encode("utf-8", "surrogatepass")) for text in texts(payload))
        if size:
            total += max(1, -(-size // BYTES_PER_TOKEN))
    return total


def _strings(values: Iterable[Any]) -> list[str]:
    return [value for value in values if isinstance(value, str)]


def _anthropic_texts(payload: Any) -> list[str]:
    delta = payload.get("delta") if isinstance(payload, dict) else None
    return _strings(delta.get(name) for name in _ANTHROPIC_FIELDS) if isinstance(delta, dict) else []


def _openai_texts(payload: Any) -> list[str]:
    if not isinstance(payload, dict):
        return []
    if str(payload.get("type", "")).endswith(".delta"):  # a Responses event
        return _strings([payload.get("delta")])
    texts: list[str] = []
    choices = payload.get("choices")
    for choice in choices if isinstance(choices, list) else []:
        if not isinstance(choice, dict):
            continue
        texts += _strings([choice.get("text")])  # legacy Completions
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            continue
        texts += _strings(delta.get(name) for name in _OPENAI_FIELDS)
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else []:
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                texts += _strings([function.get("name"), function.get("arguments")])
    return texts
