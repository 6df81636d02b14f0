"""Error responses in the client's own API format (Anthropic or OpenAI JSON)."""

from __future__ import annotations

from typing import Any

from relay.http.messages import Response, json_response
from relay.http.text_bounds import MESSAGE_CHARS, clip

# Anthropic error types by status, as the Messages API names them.
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    501: "not_supported",
    502: "api_error",
    503: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}

# OpenAI error (type, code) by status, as its API and SDKs report them.
_OPENAI_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    402: ("insufficient_quota", "insufficient_quota"),
    403: ("invalid_request_error", "permission_denied"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_exceeded", "rate_limit_exceeded"),
}

# OpenAI's (type, code) for an Anthropic error type a refusal names (`error_type`): a spent
# cap is a 429 on both, billing_error to Anthropic's clients, insufficient_quota to OpenAI's.
_OPENAI_FOR = {"billing_error": ("insufficient_quota", "insufficient_quota")}

# Client errors that the same request, sent again, cannot get past. Claude Code retries a
# 401 with backoff for minutes (it expects a refreshed login) unless the answer carries
# `x-should-retry: false`; the anthropic and openai SDKs honour the field too.
_RETRYABLE_CLIENT_ERRORS = (408, 409, 429)


class Refused(Exception):
    """relay's own refusal of a request (auth, limits, bad input, configuration), raised where
    the reason is found and answered in the client's format in one place (`pipeline.app`)."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: tuple[tuple[str, str], ...] = (),
        error_type: str | None = None,
        *,
        surface: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers
        self.error_type = error_type  # the Anthropic error type when not the status's (a spent cap)
        self.surface = surface  # a surface of its own, when not the request path's (a variant path)

    def response(self, surface: str) -> Response:
        return error_response(self.surface or surface, self.status, self.message, self.headers, self.error_type)


def anthropic_error_type(status: int) -> str:
    """The Anthropic API's error type for a status."""
    return _ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def error_response(
    surface: str, status: int, message: str, headers: tuple[tuple[str, str], ...] = (), kind: str | None = None
) -> Response:
    """A JSON error body shaped as the surface's SDKs parse it. The message may quote the
    client's text (a model it refuses, a field it cannot translate): it is cut to
    MESSAGE_CHARS (text_bounds.py). `kind`: the Anthropic error type, if not the status's
    (a spent cap: billing_error at 429), and for OpenAI its counterpart where it has one."""
    message = clip(message, MESSAGE_CHARS)
    payload: dict[str, Any]
    if surface == "openai":
        openai_type, code = _OPENAI_FOR.get(kind or "") or _OPENAI_TYPES.get(status, ("server_error", None))
        payload = {"error": {"message": message, "type": openai_type, "param": None, "code": code}}
    else:
        kind = kind or anthropic_error_type(status)
        payload = {"type": "error", "error": {"type": kind, "message": message}}
    if 400 <= status < 500 and status not in _RETRYABLE_CLIENT_ERRORS:
        headers = (*headers, ("x-should-retry", "false"))
    return json_response(status, payload, headers)
