"""`POST /v1/metrics`, `/v1/logs`, `/v1/traces`: the OTLP/HTTP telemetry of signed-in
clients, relayed verbatim to the collectors RELAY_TELEMETRY_COLLECTORS names.

The client always gets 200 (a failure would make Claude Code log an error on every
flush): the body is forwarded to each collector after the answer, in `waitUntil`, with
its content-type and content-encoding and nothing else; a collector that fails is
counted in the isolate (`/admin/status` `telemetry_failures`) and logged by its status,
never its body. With no collector the telemetry is accepted and dropped.
"""

from __future__ import annotations

from relay.http.messages import Headers, Response, UpstreamUnreachable
from relay.log import log
from relay.services import Services

PATHS = frozenset({"/v1/metrics", "/v1/logs", "/v1/traces"})
MAX_BODY_BYTES = 4 * 1024 * 1024
TIMEOUT_SECONDS = 10
_PASSED = ("content-type", "content-encoding")


def accepted(headers: Headers) -> Response:
    """OTLP's success answer: an empty Export*ServiceResponse in the request's encoding."""
    if "json" in (headers.get("content-type") or "").lower():
        return Response(200, [("content-type", "application/json")], b"{}")
    return Response(200, [("content-type", "application/x-protobuf")], b"")


def relay(path: str, headers: Headers, body: bytes, collectors: tuple[str, ...], services: Services) -> None:
    fields = [(name, value) for name in _PASSED if (value := headers.get(name)) is not None]
    for collector in collectors:
        services.defer(_send(collector + path, fields, body, services))


async def _send(url: str, fields: list[tuple[str, str]], body: bytes, services: Services) -> None:
    try:
        answer = await services.transport.send("POST", url, fields, body, TIMEOUT_SECONDS)
    except UpstreamUnreachable as exc:
        _failed(services, url, type(exc).__name__)
        return
    await services.transport.discard(answer.body)
    if not 200 <= answer.status < 300:
        _failed(services, url, f"status {answer.status}")


def _failed(services: Services, url: str, why: str) -> None:
    services.state.telemetry_failures += 1
    log(f"telemetry not relayed to {url.split('?')[0]} ({why}); {services.state.telemetry_failures} so far")
