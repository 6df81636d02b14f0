"""Anthropic-format documents as OpenAI's: a Messages request as a Chat Completions request
(Claude Code on an OpenAI-compatible model), and a Message as a chat completion (the
OpenAI SDK on a Claude model).

Known differences, decided here:
- `system` (a string or text blocks) becomes a leading system message; `system`-role
  messages inside `messages` (Claude Code sends them) stay system messages in place.
- A user turn's `tool_result` blocks become `tool` messages placed before the rest of the
  turn: OpenAI wants tool answers right after the assistant's `tool_calls`. Tool messages
  hold text only, so images a tool returned follow in the user message.
- `cache_control`, `metadata`, `top_k`, `context_management` and thinking blocks have no
  OpenAI counterpart and are left out; server tools (no `input_schema`) too.
- `thinking` / `output_config.effort` become `reasoning_effort`, only for providers
  configured as reasoning models (others reject the field).
"""

from __future__ import annotations

import json
from typing import Any

from relay.providers.translate import Json, TranslationError, a_count, a_list, an_object, need

# Anthropic stop_reason -> OpenAI finish_reason.
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# Thinking budget (tokens) -> reasoning_effort: up to 4k low, up to 16k medium, above high.
_EFFORT_STEPS = ((4096, "low"), (16384, "medium"))
_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "max": "high"}


def _blocks(content: Any, where: str) -> list[Json]:
    """Content as a list of blocks (a string is one text block)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    expected = f"{where} must be a string or a list of content blocks"
    blocks = a_list(content, expected)
    need(all(isinstance(b, dict) for b in blocks), expected)
    return blocks


def _text(block: Json, where: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise TranslationError(f'{where}: a text block needs a string "text"')
    return text


def _plain_text(content: Any, where: str) -> str:
    """Text-only content (system prompts) as one string; blocks are joined by blank lines."""
    parts = []
    for block in _blocks(content, where):
        need(block.get("type") == "text", f"{where} may hold only text blocks, not {block.get('type')!r}")
        parts.append(_text(block, where))
    return "\n\n".join(parts)


def _image(block: Json, where: str) -> Json:
    source = an_object(block.get("source"), f'{where}: an image block needs a "source"')
    if source.get("type") == "base64":
        need(
            isinstance(source.get("media_type"), str) and isinstance(source.get("data"), str),
            f'{where}: a base64 image needs "media_type" and "data"',
        )
        return {"type": "image_url", "image_url": {"url": f"data:{source['media_type']};base64,{source['data']}"}}
    if source.get("type") == "url":
        need(isinstance(source.get("url"), str), f'{where}: a url image needs a "url"')
        return {"type": "image_url", "image_url": {"url": source["url"]}}
    raise TranslationError(f"{where}: image source {source.get('type')!r} cannot be sent to an OpenAI-format model")


def _document(block: Json, where: str) -> Json:
    source = an_object(block.get("source"), f'{where}: a document block needs a "source"')
    if source.get("type") == "text" and isinstance(source.get("data"), str):
        return {"type": "text", "text": source["data"]}
    if source.get("type") == "base64" and source.get("media_type") == "application/pdf":
        name = block.get("title") if isinstance(block.get("title"), str) else "document.pdf"
        return {
            "type": "file",
            "file": {"filename": name, "file_data": f"data:application/pdf;base64,{source.get('data')}"},
        }
    raise TranslationError(f"{where}: document source {source.get('type')!r} cannot be sent to an OpenAI-format model")


def _user_part(block: Json, where: str) -> Json:
    kind = block.get("type")
    if kind == "text":
        return {"type": "text", "text": _text(block, where)}
    if kind == "image":
        return _image(block, where)
    if kind == "document":
        return _document(block, where)
    raise TranslationError(f"{where}: content block {kind!r} cannot be sent to an OpenAI-format model")


def _tool_result(block: Json, where: str) -> tuple[Json, list[Json]]:
    """A tool message, and the images the tool returned (for the user message after it)."""
    call_id = block.get("tool_use_id")
    need(isinstance(call_id, str), f'{where}: a tool_result needs a "tool_use_id"')
    texts, images = [], []
    for inner in _blocks(block.get("content", ""), where):
        if inner.get("type") == "text":
            texts.append(_text(inner, where))
        elif inner.get("type") == "image":
            images.append(_image(inner, where))
        else:
            raise TranslationError(
                f"{where}: a tool_result holding {inner.get('type')!r} cannot be sent to an OpenAI-format model"
            )
    text = "\n".join(texts)
    if block.get("is_error") is True:
        text = f"Error: {text}"
    if images:
        images.insert(0, {"type": "text", "text": f"Images returned by tool call {call_id}:"})
    return {"role": "tool", "tool_call_id": call_id, "content": text}, images


def _user(content: Any, where: str) -> list[Json]:
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    tools, parts, images = [], [], []
    for n, block in enumerate(_blocks(content, where)):
        if block.get("type") == "tool_result":
            message, returned = _tool_result(block, f"{where} block {n}")
            tools.append(message)
            images.extend(returned)
        else:
            parts.append(_user_part(block, f"{where} block {n}"))
    parts = images + parts
    if not parts:
        return tools
    if len(parts) == 1 and parts[0]["type"] == "text":
        return tools + [{"role": "user", "content": parts[0]["text"]}]
    return tools + [{"role": "user", "content": parts}]


def _assistant(content: Any, where: str) -> list[Json]:
    if isinstance(content, str):
        return [{"role": "assistant", "content": content}]
    texts, calls = [], []
    for n, block in enumerate(_blocks(content, where)):
        kind = block.get("type")
        if kind == "text":
            texts.append(_text(block, where))
        elif kind == "tool_use":
            need(
                isinstance(block.get("id"), str) and isinstance(block.get("name"), str),
                f'{where} block {n}: a tool_use needs "id" and "name"',
            )
            calls.append(
                {
                    "id": block["id"],
                    "type": "function",
                    "function": {
                        "name": block["name"],
                        "arguments": json.dumps(block.get("input", {}), ensure_ascii=False),
                    },
                }
            )
        elif kind not in ("thinking", "redacted_thinking"):
            raise TranslationError(
                f"{where} block {n}: content block {kind!r} cannot be sent to an OpenAI-format model"
            )
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    elif message["content"] is None:
        return []  # only thinking: nothing an OpenAI model can take back
    return [message]


def _messages(body: Json) -> list[Json]:
    out = []
    if body.get("system") is not None:
        out.append({"role": "system", "content": _plain_text(body["system"], "system")})
    messages = a_list(body.get("messages"), "messages must be a list")
    for n, message in enumerate(messages):
        where = f"messages.{n}"
        need(isinstance(message, dict), f"{where} must be an object")
        role, content = message.get("role"), message.get("content")
        if role == "user":
            out.extend(_user(content, where))
        elif role == "assistant":
            out.extend(_assistant(content, where))
        elif role == "system":
            out.append({"role": "system", "content": _plain_text(content, where)})
        else:
            raise TranslationError(f"{where}: unknown role {role!r}")
    return out


def _tools(tools: Any) -> list[Json]:
    out = []
    for n, tool in enumerate(a_list(tools, "tools must be a list")):
        need(isinstance(tool, dict) and isinstance(tool.get("name"), str), f'tools.{n} needs a "name"')
        if "input_schema" not in tool:
            continue  # a server tool (web search, code execution): Anthropic runs those, not the model's host
        function = {"name": tool["name"], "parameters": tool["input_schema"]}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any, out: Json) -> None:
    choice = an_object(choice, "tool_choice must be an object")
    kind = choice.get("type")
    if kind == "auto":
        out["tool_choice"] = "auto"
    elif kind == "any":
        out["tool_choice"] = "required"
    elif kind == "none":
        out["tool_choice"] = "none"
    elif kind == "tool" and isinstance(choice.get("name"), str):
        out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        raise TranslationError(f"tool_choice type {kind!r} is not understood")
    if choice.get("disable_parallel_tool_use") is True and out.get("tools"):
        out["parallel_tool_calls"] = False


def finish_reason(stop_reason: Any) -> str:
    """An Anthropic stop_reason as OpenAI's finish_reason ("stop" for any other)."""
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def reasoning_effort(body: Json) -> str | None:
    """How hard the client asked the model to think, in OpenAI's terms (None: not asked)."""
    config = body.get("output_config")
    if isinstance(config, dict) and config.get("effort") in _EFFORTS:
        return _EFFORTS[config["effort"]]
    thinking = body.get("thinking")
    if not isinstance(thinking, dict):
        return None
    if thinking.get("type") == "adaptive":
        return "medium"
    if thinking.get("type") != "enabled":
        return None
    budget = thinking.get("budget_tokens")
    budget = budget if isinstance(budget, int) else 0
    return next((effort for limit, effort in _EFFORT_STEPS if budget <= limit), "high")


def request(body: Json, model: str, *, reasoning: bool = False, max_tokens_field: str = "max_tokens") -> Json:
    """An Anthropic Messages request as an OpenAI Chat Completions request for `model`."""
    out: dict[str, Any] = {"model": model, "messages": _messages(body)}
    if body.get("max_tokens") is not None:
        out[max_tokens_field] = body["max_tokens"]
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            out[name] = body[name]
    stops = body.get("stop_sequences")
    if stops:
        need(
            isinstance(stops, list) and all(isinstance(s, str) for s in stops),
            "stop_sequences must be a list of strings",
        )
        out["stop"] = stops
    if body.get("tools"):
        tools = _tools(body["tools"])
        if tools:
            out["tools"] = tools
    if body.get("tool_choice") is not None:
        _tool_choice(body["tool_choice"], out)
    if reasoning:
        effort = reasoning_effort(body)
        if effort:
            out["reasoning_effort"] = effort
    if body.get("stream") is True:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def usage(anthropic_usage: Any) -> Json:
    """Anthropic usage as OpenAI's: prompt tokens include the cached ones, as OpenAI counts."""
    u = anthropic_usage if isinstance(anthropic_usage, dict) else {}
    fresh, written, read, output = (
        a_count(u.get(name))
        for name in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")
    )
    prompt = fresh + written + read
    return {
        "prompt_tokens": prompt,
        "completion_tokens": output,
        "total_tokens": prompt + output,
        "prompt_tokens_details": {"cached_tokens": read},
    }


def tool_call(block: Json, index: int | None = None) -> Json:
    """A tool_use block as an OpenAI tool call (with its `index` in a stream)."""
    call = {"id": block.get("id"), "type": "function", "function": {"name": block.get("name"), "arguments": ""}}
    if index is not None:
        call = {"index": index, **call}
    return call


def completion(message: Json, created: int) -> Json:
    """An Anthropic Message as an OpenAI chat completion."""
    texts, calls = [], []
    for block in message.get("content") or []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif block.get("type") == "tool_use":
            call = tool_call(block)
            call["function"]["arguments"] = json.dumps(block.get("input", {}), ensure_ascii=False)
            calls.append(call)
    reply: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        reply["tool_calls"] = calls
    return {
        "id": message.get("id"),
        "object": "chat.completion",
        "created": created,
        "model": message.get("model"),
        "choices": [{"index": 0, "message": reply, "finish_reason": finish_reason(message.get("stop_reason"))}],
        "usage": usage(message.get("usage")),
    }
