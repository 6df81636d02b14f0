"""Claude on Amazon Bedrock: the InvokeModel call for a Messages request, and its answer
as the Anthropic API gives it.

Bedrock takes the Messages body at `/model/<model id>/invoke` (or
`invoke-with-response-stream`), without `model` and `stream`, with `anthropic_version`
and the `anthropic-beta` values in the body; count_tokens goes to CountTokens
(`/model/<id>/count-tokens`), which counts for foundation model ids only. A streamed
answer is AWS event-stream: each
`chunk` message holds one Anthropic event, base64 in a JSON `bytes` field, re-emitted
here as an SSE frame as soon as its message is complete. An exception message in the
stream (throttling, a model error) becomes an Anthropic `error` event and ends it.

Errors can name the account (ARNs, account ids): the client gets the status and error
type with a message naming the provider only; the whole message goes to the log.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any
from urllib.parse import quote

from relay.http import sse
from relay.http.json_spans import dumps
from relay.log import log
from relay.providers.aws_event_stream import Decoder, EventStreamError, Message
from relay.providers.translate.streams import INCOMPLETE

ANTHROPIC_VERSION = "bedrock-2023-05-31"
SERVICE = "bedrock"
STREAM_TYPE = "application/vnd.amazon.eventstream"
# Anthropic model ids (and their dated forms) -> Bedrock model ids. A provider's `models`
# override or extend this; a name in neither is sent as it is (already a Bedrock id, an
# inference profile or its ARN).
MODELS = {
    "claude-opus-4-5": "anthropic.claude-opus-4-5-20251101-v1:0",
    "claude-opus-4-5-20251101": "anthropic.claude-opus-4-5-20251101-v1:0",
    "claude-sonnet-4-5": "anthropic.claude-sonnet-4-5-20250929-v1:0",
    "claude-sonnet-4-5-20250929": "anthropic.claude-sonnet-4-5-20250929-v1:0",
    "claude-haiku-4-5": "anthropic.claude-haiku-4-5-20251001-v1:0",
    "claude-haiku-4-5-20251001": "anthropic.claude-haiku-4-5-20251001-v1:0",
    "claude-opus-4-1": "anthropic.claude-opus-4-1-20250805-v1:0",
    "claude-opus-4-1-20250805": "anthropic.claude-opus-4-1-20250805-v1:0",
    "claude-opus-4-0": "anthropic.claude-opus-4-20250514-v1:0",
    "claude-opus-4-20250514": "anthropic.claude-opus-4-20250514-v1:0",
    "claude-sonnet-4-0": "anthropic.claude-sonnet-4-20250514-v1:0",
    "claude-sonnet-4-20250514": "anthropic.claude-sonnet-4-20250514-v1:0",
    "claude-3-7-sonnet-latest": "anthropic.claude-3-7-sonnet-20250219-v1:0",
    "claude-3-7-sonnet-20250219": "anthropic.claude-3-7-sonnet-20250219-v1:0",
    "claude-3-5-haiku-latest": "anthropic.claude-3-5-haiku-20241022-v1:0",
    "claude-3-5-haiku-20241022": "anthropic.claude-3-5-haiku-20241022-v1:0",
}
# anthropic-beta values Bedrock takes, for a provider without its own `betas` list: others
# make it answer 400, so they are dropped.
BETAS = frozenset(
    {
        "computer-use-2025-01-24",
        "token-efficient-tools-2025-02-19",
        "interleaved-thinking-2025-05-14",
        "output-128k-2025-02-19",
        "context-1m-2025-08-07",
        "context-management-2025-06-27",
    }
)
# Bedrock's exception names (a stream's :exception-type, an answer's x-amzn-errortype) ->
# Anthropic error type.
_ERROR_TYPES = {
    "throttlingexception": "rate_limit_error",
    "servicequotaexceededexception": "rate_limit_error",
    "modelnotreadyexception": "overloaded_error",
    "serviceunavailableexception": "overloaded_error",
    "modeltimeoutexception": "timeout_error",
    "validationexception": "invalid_request_error",
    "accessdeniedexception": "permission_error",
    "resourcenotfoundexception": "not_found_error",
}


def default_base_url(region: str) -> str:
    return f"https://bedrock-runtime.{region}.amazonaws.com"


def model_id(models: dict[str, str], model: str) -> str:
    return models.get(model) or MODELS.get(model) or model


def path(model: str, stream: bool) -> str:
    return f"/model/{quote(model, safe='')}/{'invoke-with-response-stream' if stream else 'invoke'}"


def body(document: dict[str, Any], betas: list[str]) -> dict[str, Any]:
    """The Messages body as InvokeModel takes it."""
    out = {k: v for k, v in document.items() if k not in ("model", "stream")}
    out["anthropic_version"] = ANTHROPIC_VERSION
    if betas:
        out["anthropic_beta"] = betas
    return out


def can_count(model: str) -> bool:
    """CountTokens takes a foundation model's own id, not an inference profile or an ARN."""
    return model.startswith("anthropic.")


def count_path(model: str) -> str:
    return f"/model/{quote(model, safe='')}/count-tokens"


def count_body(document: dict[str, Any], betas: list[str]) -> dict[str, Any]:
    """CountTokens' request for a count_tokens body: the InvokeModel body it would be,
    base64 (a blob in AWS's JSON protocol). InvokeModel wants max_tokens, which
    count_tokens has not."""
    invoke = body({"max_tokens": 1, **document}, betas)
    return {"input": {"invokeModel": {"body": base64.b64encode(dumps(invoke).encode()).decode()}}}


def error_type(name: str | None, status: int) -> str:
    """The Anthropic error type of a Bedrock exception (its name may carry a `:<namespace>`)."""
    kind = _ERROR_TYPES.get((name or "").split(":", 1)[0].strip().lower())
    if kind:
        return kind
    return {400: "invalid_request_error", 403: "permission_error", 404: "not_found_error", 429: "rate_limit_error"}.get(
        status, "api_error"
    )


def error_name(name: str | None) -> str:
    """An exception's name without its namespace, or a generic word: never the message."""
    bare = (name or "").split(":", 1)[0].strip()
    return bare if bare.isidentifier() else "an error"


class EventStreamToSSE:
    """Bedrock's event stream, fed in chunks cut anywhere, as an Anthropic SSE stream."""

    def __init__(self, provider: str):
        self._provider = provider
        self._decoder = Decoder()
        self._done = False  # an error or message_stop was sent: nothing more follows
        self._stopped = False

    def feed(self, chunk: bytes) -> bytes:
        if self._done:
            return b""
        try:
            messages = self._decoder.feed(chunk)
        except EventStreamError as exc:
            log(f"bedrock provider {self._provider} sent a broken event stream: {exc}")
            return self._error("api_error", f"bedrock provider {self._provider} sent a broken event stream")
        return b"".join(self._message(message) for message in messages)

    def finish(self, broken: bool = False) -> bytes:
        if self._done:
            return b""
        if broken or not self._stopped or self._decoder.pending:
            return self._error("api_error", INCOMPLETE)
        return b""

    def _message(self, message: Message) -> bytes:
        if self._done:
            return b""
        kind = message.header(":message-type")
        if kind == "exception" or kind == "error":
            name = message.header(":exception-type") or message.header(":error-code")
            log(f"bedrock provider {self._provider} stream ended with {name}: {_text(message)}")
            return self._error(
                error_type(name, 500), f"bedrock provider {self._provider} answered {error_name(name)} mid-stream"
            )
        if message.header(":event-type") != "chunk":
            return b""
        try:
            event = base64.b64decode(json.loads(message.payload)["bytes"], validate=True)
            name = json.loads(event)["type"]
        except (ValueError, KeyError, TypeError, binascii.Error):
            return b""
        if name == "message_stop":
            self._stopped = self._done = True
        return f"event: {name}\ndata: ".encode() + event + b"\n\n"

    def _error(self, kind: str, message: str) -> bytes:
        self._done = True
        return sse.frame("error", {"type": "error", "error": {"type": kind, "message": message}})


def _text(message: Message) -> str:
    header = message.header(":error-message")
    if header:
        return header
    try:
        return str(json.loads(message.payload).get("message"))
    except (ValueError, AttributeError):
        return message.payload[:200].decode("utf-8", "replace")
