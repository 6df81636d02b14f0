"""OpenAI-format documents as Anthropic's: a Chat Completions request as a Messages request
(the OpenAI SDK on a Claude model), and a chat completion as a Message (Claude Code on an
OpenAI-compatible model).

Known differences, decided here:
- Leading system/developer messages become `system`; later ones stay `system`-role
  messages in place (the Messages API takes them, as Claude Code's own requests show).
- `tool` messages become `tool_result` blocks at the start of one user message, with the
  user's next words after them: Anthropic wants every result of a turn there, first.
- Anthropic requires `max_tokens`: absent, relay asks for DEFAULT_MAX_TOKENS.
  `temperature` above 1 (OpenAI allows 2) is capped at 1, Anthropic's maximum.
- What Anthropic cannot do (n > 1, audio, logprobs, JSON response formats) is refused
  with a 400 that names the field, never silently dropped; sampling knobs Anthropic
  lacks (seed, penalties, logit_bias) are left out.
"""

from __future__ import annotations

import json
from typing import Any

from relay.providers.translate import Json, TranslationError, a_count, a_list, need

DEFAULT_MAX_TOKENS = 4096
# OpenAI finish_reason -> Anthropic stop_reason.
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
# reasoning_effort -> thinking budget (tokens).
_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}
_REFUSED = ("audio", "logprobs", "top_logprobs", "prediction", "functions", "function_call")


def _image(part: Json, where: str) -> Json:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise TranslationError(f'{where}: an image_url part needs a "url"')
    if url.startswith("data:"):
        head, comma, data = url[5:].partition(",")
        media_type, _, encoding = head.partition(";")
        need(bool(comma) and encoding == "base64", f"{where}: a data URL image must be base64")
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _content(content: Any, where: str) -> list[Json]:
    """Message content as Anthropic blocks; empty text is left out (Anthropic refuses it)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    need(isinstance(content, list), f"{where}: content must be a string or a list of parts")
    blocks = []
    for n, part in enumerate(content):
        need(isinstance(part, dict), f"{where} part {n} must be an object")
        kind = part.get("type")
        if kind == "text":
            need(isinstance(part.get("text"), str), f'{where} part {n}: a text part needs "text"')
            if part["text"]:
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image(part, f"{where} part {n}"))
        elif kind == "refusal":
            continue
        else:
            raise TranslationError(f"{where} part {n}: {kind!r} parts cannot be sent to an Anthropic-format model")
    return blocks


def _text_only(content: Any, where: str) -> str:
    blocks = _content(content, where)
    need(all(b["type"] == "text" for b in blocks), f"{where}: only text is allowed here")
    return "\n\n".join(b["text"] for b in blocks)


def _tool_use(call: Any, where: str) -> Json:
    need(isinstance(call, dict) and isinstance(call.get("function"), dict), f"{where}: a tool call needs a function")
    function = call["function"]
    need(
        isinstance(call.get("id"), str) and isinstance(function.get("name"), str),
        f'{where}: a tool call needs "id" and "function.name"',
    )
    arguments = function.get("arguments") or "{}"
    try:
        parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
    except ValueError:
        raise TranslationError(f"{where}: tool call {call['id']} has arguments that are not JSON") from None
    need(isinstance(parsed, dict), f"{where}: tool call {call['id']} arguments must be a JSON object")
    return {"type": "tool_use", "id": call["id"], "name": function["name"], "input": parsed}


def _append(messages: list[Json], role: str, blocks: list[Json]) -> None:
    """Add a turn, merged into the previous one when it has the same role."""
    if not blocks:
        return
    if messages and messages[-1]["role"] == role:
        messages[-1]["content"].extend(blocks)
    else:
        messages.append({"role": role, "content": blocks})


def _messages(raw: Any) -> tuple[list[str], list[Json]]:
    need(isinstance(raw, list) and bool(raw), "messages must be a non-empty list")
    system: list[str] = []
    messages: list[Json] = []
    for n, message in enumerate(raw):
        where = f"messages.{n}"
        need(isinstance(message, dict), f"{where} must be an object")
        role = message.get("role")
        if role in ("system", "developer"):
            text = _text_only(message.get("content"), where)
            if messages:
                messages.append({"role": "system", "content": text})
            elif text:
                system.append(text)
        elif role == "user":
            _append(messages, "user", _content(message.get("content"), where))
        elif role == "assistant":
            calls = message.get("tool_calls") or []
            need(isinstance(calls, list), f"{where}: tool_calls must be a list")
            blocks = _content(message.get("content"), where)
            _append(messages, "assistant", blocks + [_tool_use(c, where) for c in calls])
        elif role == "tool":
            need(isinstance(message.get("tool_call_id"), str), f'{where}: a tool message needs "tool_call_id"')
            result = {
                "type": "tool_result",
                "tool_use_id": message["tool_call_id"],
                "content": _content(message.get("content"), where),
            }
            previous = messages[-1] if messages else None
            if previous and previous["role"] == "user":
                # Results go before the user's words in the same turn.
                at = sum(1 for b in previous["content"] if b["type"] == "tool_result")
                previous["content"].insert(at, result)
            else:
                messages.append({"role": "user", "content": [result]})
        else:
            raise TranslationError(f"{where}: role {role!r} cannot be sent to an Anthropic-format model")
    return system, messages


def _tools(tools: Any) -> list[Json]:
    out = []
    for n, tool in enumerate(a_list(tools, "tools must be a list")):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not (
            isinstance(function, dict) and tool.get("type") == "function" and isinstance(function.get("name"), str)
        ):
            raise TranslationError(f"tools.{n} must be a function tool with a name")
        converted = {
            "name": function["name"],
            "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
        }
        if isinstance(function.get("description"), str):
            converted["description"] = function["description"]
        out.append(converted)
    return out


def _tool_choice(choice: Any, parallel: Any) -> Json | None:
    converted: Json | None
    if choice is None:
        converted = {"type": "auto"} if parallel is False else None
    elif choice in ("auto", "none"):
        converted = {"type": choice}
    elif choice == "required":
        converted = {"type": "any"}
    elif isinstance(choice, dict) and isinstance((choice.get("function") or {}).get("name"), str):
        converted = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise TranslationError("tool_choice is not understood")
    if converted is not None and parallel is False and converted["type"] != "none":
        converted["disable_parallel_tool_use"] = True
    return converted


def request(body: Json, model: str) -> Json:
    """An OpenAI Chat Completions request as an Anthropic Messages request for `model`."""
    for name in _REFUSED:
        need(body.get(name) in (None, False), f"{name} is not supported when the model is served by Anthropic")
    need(body.get("n") in (None, 1), "n > 1 is not supported when the model is served by Anthropic")
    response_format = body.get("response_format")
    need(
        response_format is None or (isinstance(response_format, dict) and response_format.get("type") == "text"),
        "response_format is not supported when the model is served by Anthropic",
    )
    system, messages = _messages(body.get("messages"))
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS
    out: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": max_tokens}
    if system:
        out["system"] = "\n\n".join(system)
    effort = body.get("reasoning_effort")
    budget = _BUDGETS.get(effort) if isinstance(effort, str) else None
    if budget and isinstance(max_tokens, int) and min(budget, max_tokens - 1) >= 1024:
        # Anthropic wants the budget below max_tokens, and no sampling changes while thinking.
        out["thinking"] = {"type": "enabled", "budget_tokens": min(budget, max_tokens - 1)}
    else:
        if isinstance(body.get("temperature"), (int, float)):
            out["temperature"] = min(float(body["temperature"]), 1.0)
        if body.get("top_p") is not None:
            out["top_p"] = body["top_p"]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else stop
    if body.get("tools"):
        out["tools"] = _tools(body["tools"])
    choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
    if choice is not None and out.get("tools"):
        out["tool_choice"] = choice
    if isinstance(body.get("user"), str):
        out["metadata"] = {"user_id": body["user"]}
    if body.get("stream") is True:
        out["stream"] = True
    return out


def usage(openai_usage: Any) -> Json:
    """OpenAI usage as Anthropic's, which counts cached prompt tokens apart."""
    u = openai_usage if isinstance(openai_usage, dict) else {}
    details = u.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    cached = cached if isinstance(cached, int) else 0
    prompt = a_count(u.get("prompt_tokens"))
    output = a_count(u.get("completion_tokens"))
    return {
        "input_tokens": max(0, prompt - cached),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "output_tokens": output,
    }


def tool_input(arguments: Any) -> Json:
    """A tool call's arguments as a tool_use input (a model's malformed JSON: empty input)."""
    try:
        parsed = json.loads(arguments) if isinstance(arguments, str) and arguments else {}
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def stop_reason(finish_reason: Any) -> str:
    """An OpenAI finish_reason as Anthropic's stop_reason ("end_turn" for any other)."""
    return STOP_REASONS.get(finish_reason, "end_turn") if isinstance(finish_reason, str) else "end_turn"


def stop(choice: Json) -> tuple[str, str | None]:
    """(Anthropic stop_reason, stop_sequence) of a choice. OpenAI's own API says only "stop"
    for a matched stop sequence; the servers that say which one matched (vLLM's
    `stop_reason`, SGLang's `matched_stop`, a string then) make it `stop_sequence`."""
    finish = choice.get("finish_reason")
    matched = choice.get("stop_reason", choice.get("matched_stop"))
    if finish == "stop" and isinstance(matched, str) and matched:
        return "stop_sequence", matched
    return stop_reason(finish), None


def message_id(upstream_id: Any) -> str:
    text = upstream_id if isinstance(upstream_id, str) and upstream_id else "relay"
    return text if text.startswith("msg_") else f"msg_{text}"


def message(completion: Json) -> Json:
    """An OpenAI chat completion as an Anthropic Message."""
    choices = completion.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    replied = choice.get("message")
    reply: Json = replied if isinstance(replied, dict) else {}
    content: list[Json] = []
    if isinstance(reply.get("content"), str) and reply["content"]:
        content.append({"type": "text", "text": reply["content"]})
    for call in reply.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            content.append(
                {
                    "type": "tool_use",
                    "id": call.get("id") or "",
                    "name": function.get("name") or "",
                    "input": tool_input(function.get("arguments")),
                }
            )
    reason, sequence = stop(choice)
    return {
        "id": message_id(completion.get("id")),
        "type": "message",
        "role": "assistant",
        "model": completion.get("model"),
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": usage(completion.get("usage")),
    }
