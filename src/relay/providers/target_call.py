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

Clouds: Foundry is the Anthropic API at another address, with its own key header. Bedrock
and Vertex take the Messages body at a model's own URL, with the API version (and on
Bedrock the betas) in the body, not in header fields (bedrock.py, vertex.py); they serve
Messages (and OpenAI clients' Chat Completions, translated), and count_tokens only on
Bedrock (CountTokens), else 501. A cloud's error answer reaches the client with its status
and error type, and a message naming the provider, not the account (its own message goes
to the log).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from relay.http.bodies import whole_body
from relay.http.errors import anthropic_error_type, error_response
from relay.http.headers import upstream_request_headers
from relay.http.json_spans import dumps, loads_or_none
from relay.http.messages import Headers, Request, Response, Transport
from relay.log import log
from relay.pipeline.endpoints import Route
from relay.providers import aws_sigv4, bedrock, google_auth, vertex
from relay.providers.key_pool import UpstreamKey
from relay.providers.model_routes import Target
from relay.providers.translate import anthropic_to_openai, openai_to_anthropic, streams
from relay.services import Services

ANTHROPIC_VERSION = "2023-06-01"
# The one endpoint pair relay translates: Messages <-> Chat Completions.
PATHS = {"anthropic": "/v1/messages", "openai": "/chat/completions"}
_NOT_FOR_OPENAI = frozenset({"anthropic-version", "anthropic-dangerous-direct-browser-access"})
_BODY_FIELDS = frozenset({"content-type", "content-encoding"})
# What Bedrock and Vertex take in the body, or set from relay's own body.
_NOT_FOR_A_CLOUD = _NOT_FOR_OPENAI | _BODY_FIELDS | {"accept", "anthropic-beta"}
MESSAGES = "/v1/messages"
COUNT_TOKENS = "/v1/messages/count_tokens"
# A thinking block's empty signature, as JSON may write it: the cheap test before a parse.
_UNSIGNED = re.compile(rb'"signature"\s*:\s*""')


class NotServed(Exception):
    """This target cannot serve this request (another API format, on an endpoint relay does
    not translate); the message says why."""


class CannotCount(NotServed):
    """A target relay cannot ask to count tokens: another API's, or a cloud's (answered 501
    not_supported if no target of the route can)."""


class NoCredential(Exception):
    """The provider's credential could not be made (a token exchange failed): try the next
    target. The message names no secret."""


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
    stream: bool = False  # a cloud call for a stream (Bedrock's answer: an event stream)
    counting: bool = False  # Bedrock's CountTokens for count_tokens: its answer is renamed


def without_unsigned_thinking(document: dict[str, Any]) -> dict[str, Any]:
    """The Messages body without thinking blocks that carry no signature: relay made them
    from an OpenAI-format model's reasoning (translate/streams.py), and an Anthropic API
    refuses them when a later turn of the session is served there."""
    messages = document.get("messages")
    if not isinstance(messages, list):
        return document
    kept = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list) and message.get("role") == "assistant":
            blocks = [
                b
                for b in content
                if not (isinstance(b, dict) and b.get("type") == "thinking" and not b.get("signature"))
            ]
            if blocks and len(blocks) < len(content):
                message = {**message, "content": blocks}
        kept.append(message)
    return {**document, "messages": kept}


def _betas(value: str, target: Target) -> list[str]:
    betas = (beta.strip() for beta in value.split(","))
    return [beta for beta in betas if beta and target.provider.accepts_beta(beta)]


def _header_fields(client: Headers, surface: str, target: Target) -> list[tuple[str, str]]:
    provider = target.provider
    fields = upstream_request_headers(client, ())
    if provider.api == "openai" != surface:
        fields = [(n, v) for n, v in fields if n not in _NOT_FOR_OPENAI]
    if provider.betas is not None or provider.format != surface:
        fields = [(n, ",".join(_betas(v, target))) if n == "anthropic-beta" else (n, v) for n, v in fields]
        fields = [(n, v) for n, v in fields if v or n != "anthropic-beta"]
    if provider.cloud in ("bedrock", "vertex"):  # Vertex takes the betas as header fields, Bedrock in the body
        kept = {"anthropic-beta"} if provider.cloud == "vertex" else set()
        fields = [(n, v) for n, v in fields if n not in _NOT_FOR_A_CLOUD or n in kept]
    elif provider.api == "anthropic" and not any(n == "anthropic-version" for n, _ in fields):
        fields.append(("anthropic-version", ANTHROPIC_VERSION))
    # A cloud's own credential and account fields are relay's to set, never a client's
    # (x-goog-user-project would choose the project billed, x-amz-security-token the session).
    clouds_own = _CLOUDS_OWN.get(provider.format)
    if clouds_own is not None:
        fields = [(n, v) for n, v in fields if not clouds_own(n)]
    own = {name for name, _ in provider.headers}
    return [(n, v) for n, v in fields if n not in own] + list(provider.headers)


# Which header fields are a cloud's own, by the provider's format (the others have none).
_CLOUDS_OWN: dict[str, Callable[[str], bool]] = {
    "bedrock": lambda name: name.startswith("x-amz-"),
    "vertex": lambda name: name.startswith("x-goog-"),
    "foundry": lambda name: name == "api-key",
}


async def authorization(
    call: Call, key: UpstreamKey, services: Services, now: float, timeout: float
) -> list[tuple[str, str]]:
    """The header fields that carry `key` as the call's provider expects it; raises NoCredential."""
    provider = call.target.provider
    if provider.format == "openai":
        return [("authorization", f"Bearer {key.secret}")]
    if provider.format == "foundry":
        return [("api-key", key.secret)]
    if provider.format == "bedrock":
        credentials = aws_sigv4.parse_credentials(key.secret)
        assert credentials is not None and provider.region  # checked when the routes were read
        return aws_sigv4.sign("POST", call.url, call.body, credentials, provider.region, bedrock.SERVICE, now)
    if provider.format == "vertex":
        try:
            token = await google_auth.access_token(
                key.id, key.secret, services.state.access_tokens, services.transport, now, timeout
            )
        except google_auth.TokenError as exc:
            log(f"vertex provider {provider.name} got no access token: {exc}")
            raise NoCredential(f"relay could not get an access token for vertex provider {provider.name}") from None
        return [("authorization", f"Bearer {token}")]
    return [("x-api-key", key.secret)]


def prepare(request: Request, route: Route, body: bytes | None, target: Target) -> Call:
    """The call to make to `target`; raises NotServed, or TranslationError when the body
    cannot be expressed in the provider's format."""
    surface, provider = route.surface, target.provider
    headers = _header_fields(request.headers, surface, target)
    if provider.cloud in ("bedrock", "vertex"):
        return _cloud_call(request, route, body, target, headers)
    if provider.api == surface:
        url = provider.base_url + route.upstream_path + (f"?{request.query}" if request.query else "")
        if target.model and body and route.json_body:
            document = json.loads(body)
            if document.get("model") != target.model:
                body = dumps({**document, "model": target.model}).encode()
        if surface == "anthropic" and body and route.json_body and _UNSIGNED.search(body):
            body = dumps(without_unsigned_thinking(json.loads(body))).encode()
        return Call(surface, target, url, headers, body, translated=False)
    if route.upstream_path != PATHS[surface] or request.method != "POST":
        problem = CannotCount if route.upstream_path == COUNT_TOKENS else NotServed
        raise problem(f"{provider.api}-format provider {provider.name} cannot serve {request.path}")
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
        provider.base_url + PATHS[provider.api],
        headers,
        dumps(translated).encode(),
        translated=True,
        model=model,
        include_usage=include_usage,
    )


def _cloud_call(
    request: Request, route: Route, body: bytes | None, target: Target, headers: list[tuple[str, str]]
) -> Call:
    provider = target.provider
    counting = route.upstream_path == COUNT_TOKENS and route.surface == "anthropic" and request.method == "POST"
    if counting and provider.format != "bedrock":
        raise CannotCount(f"{provider.format} provider {provider.name} cannot count tokens")
    if request.method != "POST" or route.upstream_path != (COUNT_TOKENS if counting else PATHS[route.surface]):
        raise NotServed(f"{provider.format} provider {provider.name} cannot serve {request.path}")
    include_usage = False
    if route.surface == "openai":  # Chat Completions, translated to Messages
        original = json.loads(body or b"{}")
        document = openai_to_anthropic.request(original, target.model or original.get("model"))
        options = original.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
    else:
        document = without_unsigned_thinking(json.loads(body or b"{}"))
    model = target.model or document.get("model")
    if not isinstance(model, str):
        raise NotServed("the request names no model")
    stream = document.get("stream") is True and not counting
    models = dict(provider.models)
    if provider.format == "bedrock":
        betas = _betas(request.headers.get("anthropic-beta") or "", target)
        model = bedrock.model_id(models, model)
        if counting and not bedrock.can_count(model):
            raise CannotCount(f"bedrock provider {provider.name} cannot count tokens for {model}")
        payload = bedrock.count_body(document, betas) if counting else bedrock.body(document, betas)
        url = provider.base_url + (bedrock.count_path(model) if counting else bedrock.path(model, stream))
        accept = bedrock.STREAM_TYPE if stream else "application/json"
        headers = [*headers, ("content-type", "application/json"), ("accept", accept)]
    else:
        assert provider.project and provider.region  # checked when the routes were read
        model = vertex.model_id(models, model)
        payload = vertex.body(document)
        url = provider.base_url + vertex.path(provider.project, provider.region, model, stream)
        headers = [*headers, ("content-type", "application/json")]
    return Call(
        route.surface,
        target,
        url,
        headers,
        dumps(payload).encode(),
        True,
        model=model,
        include_usage=include_usage,
        stream=stream,
        counting=counting,
    )


async def _cloud_error(call: Call, answer: Response, transport: Transport) -> Response:
    """A cloud's error answer with its status and error type, and a message naming the
    provider, not the account (the cloud's own message is logged)."""
    provider = call.target.provider
    raw = await whole_body(transport, answer)
    log(f"{provider.format} provider {provider.name} answered {answer.status}: {raw[:500]!r}")
    if provider.format == "bedrock":
        aws_type = Headers(answer.headers).get("x-amzn-errortype")
        kind = bedrock.error_type(aws_type, answer.status)
        words = f"{answer.status} {bedrock.error_name(aws_type)}"
    else:
        document = loads_or_none(raw)
        error = document.get("error") if isinstance(document, dict) else None
        given = error.get("type") if isinstance(error, dict) else None
        # Anthropic's own error type, as Foundry and Vertex pass it on; Google's errors have none.
        own = isinstance(given, str) and given.endswith("_error") and given.isidentifier()
        kind = given if own and isinstance(given, str) else anthropic_error_type(answer.status)
        words = f"{answer.status} {kind}"
    headers = tuple((n, v) for n, v in answer.headers if n not in _BODY_FIELDS)
    message = f"{provider.format} provider {provider.name} answered {words}"
    return error_response(call.surface, answer.status, message, headers, kind)


async def _cloud_answer(call: Call, answer: Response, transport: Transport, now: float) -> Response:
    """A Bedrock or Vertex answer in the client's format: Bedrock's event stream as SSE, and
    Anthropic's answer (which both give) as an OpenAI completion for OpenAI clients."""
    headers = [(n, v) for n, v in answer.headers if n not in _BODY_FIELDS]
    stages: list[_Translator] = []
    if call.stream and call.target.provider.format == "bedrock":
        stages.append(bedrock.EventStreamToSSE(call.target.provider.name))
    if call.stream and call.surface == "openai":
        stages.append(streams.AnthropicToOpenAI(call.include_usage, int(now)))
    if stages:
        translator = stages[0] if len(stages) == 1 else _Chain(stages[0], stages[1])
        body = _translate_stream(transport.chunks(answer.body), translator)
        return Response(answer.status, headers + [("content-type", "text/event-stream; charset=utf-8")], body)
    if call.surface != "openai" or call.stream:
        return answer
    raw = await whole_body(transport, answer)
    document = loads_or_none(raw)
    if not isinstance(document, dict):
        message = (
            f"{call.target.provider.format} provider {call.target.provider.name} answered a body relay could not read"
        )
        return error_response(call.surface, 502, message, tuple(headers))
    converted = anthropic_to_openai.completion(document, int(now))
    return Response(answer.status, headers + [("content-type", "application/json")], dumps(converted).encode())


class _Translator(Protocol):
    def feed(self, chunk: bytes) -> bytes: ...

    def finish(self, broken: bool = False) -> bytes: ...


class _Chain:
    """Two stream translators, the first's output fed to the second."""

    def __init__(self, first: _Translator, second: _Translator):
        self.first, self.second = first, second

    def feed(self, chunk: bytes) -> bytes:
        return self.second.feed(self.first.feed(chunk))

    def finish(self, broken: bool = False) -> bytes:
        return self.second.feed(self.first.finish(broken)) + self.second.finish(broken)


async def _counted(call: Call, answer: Response, transport: Transport) -> Response:
    """Bedrock's CountTokens answer as count_tokens gives it: `{"input_tokens": N}`."""
    raw = await whole_body(transport, answer)
    document = loads_or_none(raw)
    counted = document.get("inputTokens") if isinstance(document, dict) else None
    headers = [(n, v) for n, v in answer.headers if n not in _BODY_FIELDS]
    if not isinstance(counted, int):
        message = f"bedrock provider {call.target.provider.name} answered a count relay could not read"
        return error_response(call.surface, 502, message, tuple(headers))
    return Response(
        answer.status, [*headers, ("content-type", "application/json")], dumps({"input_tokens": counted}).encode()
    )


async def reply(call: Call, answer: Response, transport: Transport, now: float) -> Response:
    """The provider's answer (its fields already fit for the client) in the client's format."""
    provider = call.target.provider
    if provider.cloud and answer.status >= 300:
        return await _cloud_error(call, answer, transport)
    if call.counting:
        return await _counted(call, answer, transport)
    if provider.cloud in ("bedrock", "vertex"):
        return await _cloud_answer(call, answer, transport, now)
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
        raw = await whole_body(transport, answer)
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


async def _translate_stream(chunks: AsyncGenerator[bytes, None], translator: Any) -> AsyncIterator[bytes]:
    broken = False
    try:
        async for chunk in chunks:
            out = translator.feed(chunk)
            if out:
                yield out
    except Exception as exc:  # the upstream connection broke off mid-stream
        log(f"upstream stream ended with {type(exc).__name__}")
        broken = True
    finally:
        await chunks.aclose()
    tail = translator.finish(broken)
    if tail:
        yield tail
