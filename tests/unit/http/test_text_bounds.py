"""A lone surrogate in a client's body: JSON lets a client write one ("\\ud800"), no UTF-8
text can hold one, and every place relay writes the body out again once answered 500."""

from __future__ import annotations

import asyncio
import json

import pytest

from relay.http import sse
from relay.http.messages import Headers, Request, Response
from relay.pipeline.app import handle
from relay.services import Services
from tests.fakes.streams import read_body

LONE = "\ud800"
RAW = rb"\ud800"  # as the client writes it
ROUTES = {
    "providers": {"oai": {"format": "openai", "base_url": "https://oai.test/v1", "keys": "OAI_API_KEYS"}},
    "routes": [
        {"model": "claude-haiku-*", "targets": [{"provider": "oai", "model": "gpt-x"}]},
        {"model": "gpt-renamed", "targets": [{"provider": "openai", "model": "gpt-4o"}]},
        {"model": "gpt-claude", "targets": [{"provider": "anthropic", "model": "claude-x"}]},
    ],
}
ENV = {
    "RELAY_CLIENT_KEYS": "client",
    "ANTHROPIC_API_KEYS": "sk-ant-1,sk-ant-2",
    "OPENAI_API_KEYS": "sk-oa",
    "OAI_API_KEYS": "sk-oai",
    "RELAY_ROUTES": json.dumps(ROUTES),
}


COMPLETION = {
    "id": "c",
    "object": "chat.completion",
    "model": "gpt-x",
    "usage": {"prompt_tokens": 1},
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
}
MESSAGE = {
    "id": "m",
    "type": "message",
    "role": "assistant",
    "model": "claude-x",
    "stop_reason": "end_turn",
    "content": [{"type": "text", "text": "ok"}],
    "usage": {"input_tokens": 1, "output_tokens": 1},
}


class RecordingTransport:
    """Answers as the provider's API would (JSON), recording each body sent."""

    def __init__(self):
        self.bodies: list[bytes] = []

    async def send(self, method, url, headers, body, timeout=None):
        self.bodies.append(body)
        answer = COMPLETION if "chat/completions" in url else MESSAGE
        return Response(200, [("content-type", "application/json")], json.dumps(answer).encode())

    def chunks(self, body):
        async def whole():
            yield body

        return whole()

    async def discard(self, body):
        pass


def _send(path: str, body: bytes) -> tuple[Response, list[bytes]]:
    transport = RecordingTransport()
    headers = Headers(
        [("x-api-key", "client"), ("authorization", "Bearer client"), ("content-type", "application/json")]
    )
    request = Request("POST", path, "", headers, read_body(body))
    response = asyncio.run(handle(request, ENV, Services(transport=transport)))
    return response, transport.bodies


@pytest.mark.parametrize(
    "path, body",
    [
        (
            "/openai/v1/chat/completions",  # relay asks the stream for usage: the body is written again
            b'{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"a' + RAW + b' \xc3\xa9"}]}',
        ),
        (
            "/openai/v1/chat/completions",  # a route renames the model
            b'{"model":"gpt-renamed","messages":[{"role":"user","content":"a' + RAW + b'"}]}',
        ),
        (
            "/v1/messages",  # translated for an OpenAI-format provider
            b'{"model":"claude-haiku-4-5","max_tokens":8,"messages":[{"role":"user","content":"a' + RAW + b'"}]}',
        ),
        (
            "/openai/v1/chat/completions",  # translated for an Anthropic-format provider
            b'{"model":"gpt-claude","stream":true,"messages":[{"role":"user","content":"a' + RAW + b'"}]}',
        ),
    ],
)
def test_the_body_goes_on_with_the_surrogate_as_the_client_wrote_it(path, body):
    response, sent = _send(path, body)
    assert response.status == 200, response.body
    [forwarded] = sent
    assert RAW in forwarded  # escaped as the client sent it: the provider decides what it means
    assert ("a" + LONE) in json.dumps(json.loads(forwarded), ensure_ascii=False)
    assert ("é" in json.loads(forwarded)["messages"][-1]["content"]) == (b"\xc3\xa9" in body)


def test_a_session_id_holding_one_still_picks_a_key():
    """The session in metadata.user_id is hashed (as UTF-8) to choose the upstream key."""
    body = b'{"model":"claude-sonnet-4-5","max_tokens":8,"metadata":{"user_id":"' + RAW + b'"},"messages":[]}'
    response, sent = _send("/v1/messages", body)
    assert response.status == 200 and len(sent) == 1


def test_an_event_relay_writes_holding_one_is_utf_8():
    frame = sse.frame("content_block_delta", {"text": "a" + LONE + "é"})
    assert json.loads(frame.decode().split("data: ", 1)[1]) == {"text": "a" + LONE + "é"}
    assert sse.frame(None, {"text": "é"}) == 'data: {"text":"é"}\n\n'.encode()
