"""The route table (routes.py): surfaces, upstream paths, what relay reads, one spelling
per route; and, through the pipeline, what follows from it."""

from __future__ import annotations

import asyncio
import json

import pytest

from relay.http.messages import Headers, Request
from relay.pipeline.app import handle
from relay.pipeline.endpoints import is_safe_path, known_endpoints, resolve, surface_of, variant_of
from relay.services import Services
from tests.fakes.platform import RecordingTransport
from tests.fakes.streams import read_body

ENV = {"RELAY_CLIENT_KEYS": "client-key", "ANTHROPIC_API_KEYS": "sk-ant-up", "OPENAI_API_KEYS": "sk-oa-up"}


def call(method: str, path: str, body: object = None) -> tuple[int, dict, RecordingTransport]:
    """One request through relay.pipeline.app.handle with the static key; (status, JSON body, transport)."""
    transport = RecordingTransport()
    raw = b"" if body is None else json.dumps(body).encode()

    headers = Headers([("x-api-key", "client-key"), ("authorization", "Bearer client-key")])
    request = Request(method, path, "", headers, read_body(raw))
    response = asyncio.run(handle(request, ENV, Services(transport=transport)))
    return response.status, json.loads(response.body), transport


@pytest.mark.parametrize(
    "method, path, surface, upstream, json_body, known",
    [
        ("POST", "/v1/messages", "anthropic", "/v1/messages", True, True),
        ("POST", "/v1/messages/count_tokens", "anthropic", "/v1/messages/count_tokens", True, True),
        ("GET", "/v1/models", "anthropic", "/v1/models", False, True),
        ("GET", "/v1/models/claude-haiku-4-5", "anthropic", "/v1/models/claude-haiku-4-5", False, True),
        ("POST", "/openai/v1/chat/completions", "openai", "/chat/completions", True, True),
        ("POST", "/openai/v1/completions", "openai", "/completions", True, True),
        ("POST", "/openai/v1/embeddings", "openai", "/embeddings", True, True),
        ("POST", "/openai/v1/responses", "openai", "/responses", True, True),
        ("GET", "/openai/v1/models", "openai", "/models", False, True),
        (
            "GET",
            "/openai/v1/models/ft:gpt-4o-mini:org:custom:abc1",
            "openai",
            "/models/ft:gpt-4o-mini:org:custom:abc1",
            False,
            True,
        ),
        # Passed through unread: relay knows neither their model nor their cost.
        ("GET", "/v1/messages", "anthropic", "/v1/messages", False, False),
        ("POST", "/v1/messages/batches", "anthropic", "/v1/messages/batches", False, False),
        (
            "GET",
            "/v1/messages/batches/msgbatch_1/results",
            "anthropic",
            "/v1/messages/batches/msgbatch_1/results",
            False,
            False,
        ),
        ("POST", "/v1/complete", "anthropic", "/v1/complete", False, False),
        ("GET", "/v1/files", "anthropic", "/v1/files", False, False),
        ("POST", "/v1/models", "anthropic", "/v1/models", False, False),
        ("GET", "/v1/models/claude-x/extra", "anthropic", "/v1/models/claude-x/extra", False, False),
        (
            "DELETE",
            "/openai/v1/models/ft:gpt-4o-mini:org:custom:abc1",
            "openai",
            "/models/ft:gpt-4o-mini:org:custom:abc1",
            False,
            False,
        ),
        ("POST", "/openai/v1/images/generations", "openai", "/images/generations", False, False),
        ("GET", "/openai/v1/responses/resp_1", "openai", "/responses/resp_1", False, False),
    ],
)
def test_resolve(method, path, surface, upstream, json_body, known):
    route = resolve(method, path)
    assert (route.surface, route.upstream_path, route.json_body, route.known) == (surface, upstream, json_body, known)


@pytest.mark.parametrize("path", ["/", "/v1", "/v2/messages", "/openai/v1", "/openai/v2/models", "/admin/keys"])
def test_paths_outside_both_apis_have_no_route(path):
    assert resolve("GET", path) is None


def test_the_surface_of_a_path():
    assert surface_of("/openai/v1") == surface_of("/openai/v1/anything") == "openai"
    assert surface_of("/openai/v1x") == surface_of("/v1/messages") == surface_of("/nothing") == "anthropic"


@pytest.mark.parametrize(
    "path, canonical",
    [
        ("/v1/messages/", "/v1/messages"),
        ("/v1//messages", "/v1/messages"),
        ("//v1/messages", "/v1/messages"),
        ("/v1/%6Dessages", "/v1/messages"),
        ("/v1/%256Dessages", "/v1/messages"),  # encoded twice
        ("/v1/messages;x", "/v1/messages"),
        ("/v1/messages%3Bx=1", "/v1/messages"),  # an encoded ';'
        ("/v1/messages%20", "/v1/messages"),
        ("/V1/Messages", "/v1/messages"),
        ("/v1/messages/count_tokens/", "/v1/messages/count_tokens"),
        ("/v1/models/", "/v1/models"),
        ("/openai/v1/chat/completions/", "/openai/v1/chat/completions"),
        ("/openai/v1//chat/completions", "/openai/v1/chat/completions"),
        ("/openai//v1/chat/completions", "/openai/v1/chat/completions"),
        ("/openai/v1/%72esponses", "/openai/v1/responses"),
        ("/openai/v1/embeddings;v=2", "/openai/v1/embeddings"),
    ],
)
def test_another_spelling_of_a_route_relay_reads_names_that_route(path, canonical):
    assert variant_of(path) == canonical


@pytest.mark.parametrize(
    "path",
    [
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/openai/v1/chat/completions",
        "/openai/v1/models",
        "/v1/messages/batches",
        "/v1/messages/batches/",
        "/v1/files/file_1/content",
        "/v1/models/claude-x",
        "/v1/models/claude-x/",
        "/openai/v1/responses/resp_1",
        "/v1/complete",
        "/nothing",
    ],
)
def test_routes_and_paths_relay_does_not_read_are_no_variants(path):
    assert variant_of(path) is None


@pytest.mark.parametrize("path", ["/v1/messages/", "/v1/%6Dessages", "/openai/v1/chat/completions/"])
def test_a_variant_is_refused_with_400_in_its_routes_format_before_the_upstream(path):
    status, body, transport = call("POST", path, {"model": "claude-opus-4-1", "messages": []})
    canonical = variant_of(path)
    assert status == 400 and transport.sent == []
    if canonical.startswith("/openai/"):
        assert body["error"]["type"] == "invalid_request_error" and "type" not in body
    else:
        assert body["type"] == "error"
    assert f"relay serves {canonical} only at that exact path, not at {path}" == body["error"]["message"]


@pytest.mark.parametrize(
    "path, safe",
    [
        ("/v1/messages", True),
        ("/v1/files/file_1/content", True),
        ("/v1/../admin/keys", False),
        ("/v1/%2e%2e/admin", False),
        ("/v1/./messages", False),
        ("/v1/files%2Fx", False),
        ("/v1/files%5cx", False),
        ("/v1\\files", False),
    ],
)
def test_safe_paths(path, safe):
    assert is_safe_path(path) is safe


def test_known_endpoints_are_named_in_each_surfaces_own_paths():
    assert known_endpoints("anthropic") == (
        "POST /v1/messages, /v1/messages/count_tokens, and GET /v1/models (or /v1/models/<model>)"
    )
    assert known_endpoints("openai") == (
        "POST /openai/v1/chat/completions, /openai/v1/completions, "
        "/openai/v1/embeddings, /openai/v1/responses, "
        "and GET /openai/v1/models (or /openai/v1/models/<model>)"
    )


@pytest.mark.parametrize(
    "path, body, asked",
    [
        ("/openai/v1/chat/completions", {"messages": []}, True),
        ("/openai/v1/completions", {"prompt": "hi"}, True),
        ("/openai/v1/responses", {"input": "hi"}, False),
    ],
)
def test_relay_asks_for_a_streams_usage_only_where_the_endpoint_defines_the_option(path, body, asked):
    status, _, transport = call("POST", path, {"model": "gpt-4o-mini", "stream": True, **body})
    [(_, _, _, sent)] = transport.sent
    assert status == 200
    assert json.loads(sent).get("stream_options") == ({"include_usage": True} if asked else None)
