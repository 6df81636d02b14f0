"""One target's call: the URL, header fields and body in its provider's format, and its
answer turned back into the client's format.

When the provider speaks the client's format, body and answer pass untouched (only the
model name is rewritten if the route says so): the answer's stream goes to the runtime
as it is, with no Python per chunk. Otherwise the request is translated, and the answer
is read in Python, chunk by chunk, through an incremental translator.

Header fields: everything the client sent passes, as for any request (headers.py), with
these exceptions when formats differ. To an OpenAI-format provider, `anthropic-version`
and `anthropic-dangerous-direct-browser-access` are not sent (they mean nothing there and
strict providers refuse unknown fields). To an Anthropic-format provider, `anthropic-version`
is added if missing. `anthropic-beta` values a provider does not accept are dropped (see
routing.Provider.betas). The provider's configured headers are set last (they may set
`openai-organization` / `openai-project`, which no client may choose).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from relay.http.errors import error_response
from relay.http.headers import upstream_request_headers
from relay.http.json_spans import dumps
from relay.http.messages import Headers, Request, Response, Transport
from relay.pipeline.endpoints import Route
from relay.providers.model_routes import Target
from relay.providers.translate import anthropic_to_openai, openai_to_anthropic, streams

ANTHROPIC_VERSION = "2023-06-01"
# The one endpoint pair relay translates: Messages <-> Chat Completions.
PATHS = {"anthropic": "/v1/messages", "openai": "/chat/completions"}
_NOT_FOR_OPENAI = frozenset({"anthropic-version", "anthropic-dangerous-direct-browser-access"})
_BODY_FIELDS = frozenset({"content-type", "content-encoding"})


class NotServed(Exception):
    """This target cannot serve this request (another API format, on an endpoint relay does
    not translate); the message says why."""


@dataclass
class Call:
    surface: str  # the client's format
    target: Target
    url: str
    headers: list[tuple[str, str]]  # without the credential, which depends on the key
    body: bytes | None
    translated: bool
    model: str | None = None  # the model name sent
    include_usage: bool = False  # OpenAI client: end its stream with a usage chunk


def _accepted_betas(value: str, target: Target) -> str:
    betas = (beta.strip() for beta in value.split(","))
    return ",".join(beta for beta in betas if beta and target.provider.accepts_beta(beta))


def _header_fields(client: Headers, surface: str, target: Target) -> list[tuple[str, str]]:
    provider = target.provider
    fields = upstream_request_headers(client, ())
    if provider.format == "openai" != surface:
        fields = [(n, v) for n, v in fields if n not in _NOT_FOR_OPENAI]
    if provider.betas is not None or provider.format != surface:
        fields = [(n, _accepted_betas(v, target)) if n == "anthropic-beta" else (n, v) for n, v in fields]
        fields = [(n, v) for n, v in fields if v or n != "anthropic-beta"]
    if provider.format == "anthropic" and not any(n == "anthropic-version" for n, _ in fields):
        fields.append(("anthropic-version", ANTHROPIC_VERSION))
    own = {name for name, _ in provider.headers}
    return [(n, v) for n, v in fields if n not in own] + list(provider.headers)


def prepare(request: Request, route: Route, body: bytes | None, target: Target) -> Call:
    """The call to make to `target`; raises NotServed, or TranslationError when the body
    cannot be expressed in the provider's format."""
    surface, provider = route.surface, target.provider
    headers = _header_fields(request.headers, surface, target)
    if provider.format == surface:
        url = provider.base_url + route.upstream_path + (f"?{request.query}" if request.query else "")
        if target.model and body and route.json_body:
            document = json.loads(body)
            if document.get("model") != target.model:
                body = dumps({**document, "model": target.model}).encode()
        return Call(surface, target, url, headers, body, translated=False)
    if route.upstream_path != PATHS[surface] or request.method != "POST":
        raise NotServed(f"{provider.format}-format provider {provider.name} cannot serve {request.path}")
    document = json.loads(body or b"{}")
    model = target.model or document.get("model")
    if surface == "anthropic":
        translated = anthropic_to_openai.request(
            document, model, reasoning=provider.reasoning, max_tokens_field=provider.max_tokens_field
        )
        include_usage = False
    else:
        translated = openai_to_anthropic.request(document, model)
        options = document.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
    return Call(
        surface,
        target,
        provider.base_url + PATHS[provider.format],
        headers,
        dumps(translated).encode(),
        translated=True,
        model=model,
        include_usage=include_usage,
    )


async def reply(call: Call, answer: Response, transport: Transport, now: float) -> Response:
    """The provider's answer (its fields already fit for the client) in the client's format."""
    if not call.translated:
        return answer
    headers = [(n, v) for n, v in answer.headers if n not in _BODY_FIELDS]
    content_type = Headers(answer.headers).get("content-type") or ""
    if answer.status < 300 and content_type.lower().startswith("text/event-stream"):
        if call.surface == "anthropic":
            translator: Any = streams.OpenAIToAnthropic(call.model)
        else:
            translator = streams.AnthropicToOpenAI(call.include_usage, int(now))
        body = _translate_stream(transport.chunks(answer.body), translator)
        return Response(answer.status, headers + [("content-type", "text/event-stream; charset=utf-8")], body)
    try:
        raw = b"" if answer.body is None else b"".join([chunk async for chunk in transport.chunks(answer.body)])
        document = json.loads(raw)
    except Exception:  # not JSON, or the body broke off (a JsException in the Worker)
        document = None
    if answer.status >= 300 or not isinstance(document, dict):
        error = document.get("error") if isinstance(document, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        status = answer.status if answer.status >= 300 else 502
        return error_response(
            call.surface,
            status,
            f"upstream {call.target.provider.name}: {message or 'answered a body relay could not read'}",
            tuple(headers),
        )
    if call.surface == "anthropic":
        converted = openai_to_anthropic.message(document)
    else:
        converted = anthropic_to_openai.completion(document, int(now))
    return Response(answer.status, headers + [("content-type", "application/json")], dumps(converted).encode())


async def _translate_stream(chunks: AsyncIterator[bytes], translator: Any) -> AsyncIterator[bytes]:
    broken = False
    try:
        async for chunk in chunks:
            out = translator.feed(chunk)
            if out:
                yield out
    except Exception as exc:  # the upstream connection broke off mid-stream
        print(f"relay: upstream stream ended with {type(exc).__name__}")
        broken = True
    finally:
        await chunks.aclose()
    tail = translator.finish(broken)
    if tail:
        yield tail
