"""The measurements: each scenario runs one batch of requests against one target, timed from
outside the Worker (timers do not advance inside a Worker while it runs).

A scenario is an entry in `SCENARIOS`: a title, what its numbers mean (printed in
BENCHMARKS.md), its kind (`latency`: samples in ms, compared by p50; `stream`: the same, and
each request's time to first byte too; `rate`: compared by requests per second) and a
function `(endpoint, client, requests) -> Batch`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from .cache_savings import sized_body
from .endpoint import Endpoint

ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01", "content-type": "application/json"}
TIMEOUT_S = 60.0
MODEL = "claude-haiku-4-5"
PACE_MS = 20
PACED_EVENTS = 20
CONCURRENCY = 16
LARGE_BODY_BYTES = 200_000


class BenchError(RuntimeError):
    """A target answered something other than 200: its numbers would mean nothing."""


@dataclass
class Batch:
    samples_ms: list[float]
    requests: int
    seconds: float  # wall time of the batch (what a rate is computed from)
    first_byte_ms: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    explanation: str
    kind: str  # "latency", "stream" (latency, with first bytes) or "rate"
    per_round: int  # requests per target per round
    run: Callable[[Endpoint, httpx.Client, int], Batch]


def _messages_body(messages: list[dict], stream: bool) -> bytes:
    return json.dumps({"model": MODEL, "max_tokens": 64, "stream": stream, "messages": messages}).encode()


SAY_HI = [{"role": "user", "content": "say hi"}]
SMALL = _messages_body(SAY_HI, stream=False)
SMALL_STREAM = _messages_body(SAY_HI, stream=True)
# A coding agent's request without cache markers: system prompt, 12 tools, tool-calling history.
LARGE = sized_body(LARGE_BODY_BYTES)


def scaled_body(size: int) -> bytes:
    """The large body with its history repeated until it holds about `size` bytes: the same
    shape at any size (sized_body itself grows quadratically slower past a few MB)."""
    body = json.loads(LARGE)
    history = body["messages"]
    repeats = max(1, round((size - len(LARGE)) / len(json.dumps(history))) + 1)
    body["messages"] = history * repeats
    return json.dumps(body, ensure_ascii=False).encode()


# Bodies of growing size for the CPU-per-KB rows (relay and the floors): linear work per
# request shows as the same CPU per KB at each size.
SCALED = {"body-1m": scaled_body(1_000_000), "body-8m": scaled_body(8_000_000)}
PACED = {"x-fake-events": str(PACED_EVENTS), "x-fake-pace-ms": str(PACE_MS)}


def _check(response: httpx.Response) -> None:
    if response.status_code != 200:
        response.read()
        raise BenchError(f"HTTP {response.status_code} from {response.request.url}: {response.text[:300]}")


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000


def _first_byte(endpoint: Endpoint, client: httpx.Client, requests: int) -> Batch:
    samples, began = [], time.perf_counter()
    for _ in range(requests):
        start = time.perf_counter()
        with client.stream("POST", "/v1/messages", content=SMALL_STREAM) as response:
            _check(response)
            chunks = response.iter_raw()
            next(chunks)
            samples.append(_ms_since(start))
            for _ in chunks:  # read to the end, so the connection is reused
                pass
    return Batch(samples, requests, time.perf_counter() - began)


def _event_gaps(endpoint: Endpoint, client: httpx.Client, requests: int) -> Batch:
    """Time between consecutive text deltas at the client (the upstream sends them PACE_MS
    apart), and each stream's time to its first byte."""
    samples, first_bytes, began = [], [], time.perf_counter()
    for _ in range(requests):
        arrivals, pending = [], b""
        start = time.perf_counter()
        with client.stream("POST", "/v1/messages", content=SMALL_STREAM, headers=PACED) as response:
            _check(response)
            for chunk in response.iter_raw():
                now = time.perf_counter()
                if len(first_bytes) == len(samples) // (PACED_EVENTS - 1):  # this stream's first chunk
                    first_bytes.append((now - start) * 1000)
                *events, pending = (pending + chunk).split(b"\n\n")
                arrivals += [now for event in events if event.startswith(b"event: content_block_delta")]
        if len(arrivals) != PACED_EVENTS:
            raise BenchError(f"{endpoint.url} delivered {len(arrivals)} of {PACED_EVENTS} events")
        samples += [(later - earlier) * 1000 for earlier, later in zip(arrivals, arrivals[1:])]
    return Batch(samples, requests, time.perf_counter() - began, first_bytes)


def _under_load(endpoint: Endpoint, client: httpx.Client, requests: int) -> Batch:
    return asyncio.run(_load(endpoint, requests))


async def _load(endpoint: Endpoint, requests: int) -> Batch:
    samples: list[float] = []
    todo = iter(range(requests))
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(
        base_url=endpoint.url, headers={**ANTHROPIC_HEADERS, **endpoint.headers}, limits=limits, timeout=TIMEOUT_S
    ) as client:

        async def worker() -> None:
            for _ in todo:  # the workers share one iterator: `requests` in all
                start = time.perf_counter()
                response = await client.post("/v1/messages", content=SMALL)
                _check(response)
                samples.append(_ms_since(start))

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return Batch(samples, requests, time.perf_counter() - began)


def _posting(body: bytes) -> Callable[[Endpoint, httpx.Client, int], Batch]:
    def run(endpoint: Endpoint, client: httpx.Client, requests: int) -> Batch:
        samples, began = [], time.perf_counter()
        for _ in range(requests):
            start = time.perf_counter()
            _check(client.post("/v1/messages", content=body))
            samples.append(_ms_since(start))
        return Batch(samples, requests, time.perf_counter() - began)

    return run


SCENARIOS = (
    Scenario(
        "ttfb",
        "Time to first byte, streaming `/v1/messages` (burst)",
        "From sending a small streaming request to the first body byte at the client (the "
        "upstream's `message_start` event; the upstream sends the whole stream at once), one "
        "request at a time on a kept-alive connection.",
        "latency",
        20,
        _first_byte,
    ),
    Scenario(
        "sse",
        f"SSE events paced {PACE_MS} ms apart upstream",
        f"The fake upstream sends {PACED_EVENTS} text deltas {PACE_MS} ms apart; each sample is the "
        "time between two consecutive deltas at the client, so + vs direct is the delay a hop adds "
        f"per event. A pass-through that buffers or delays events shows gaps above {PACE_MS} ms (or "
        "bunched near 0 ms and a long one). The first-byte columns time the same paced streams.",
        "stream",
        4,
        _event_gaps,
    ),
    Scenario(
        "load",
        f"Small requests at concurrency {CONCURRENCY}",
        f"{CONCURRENCY} connections send small non-streaming requests back to back; requests/s "
        "over the batch, and each request's latency under that load.",
        "rate",
        160,
        _under_load,
    ),
    Scenario(
        "large",
        f"{LARGE_BODY_BYTES // 1000} KB request body, non-streaming",
        f"A {len(LARGE) // 1000} KB `/v1/messages` body shaped like a coding agent's (system prompt, "
        "12 tools, tool-calling history; `bench.cache_savings.sized_body`) without cache markers, and "
        "its whole answer, one request at a time. relay's cache policy `auto` adds its markers to it; "
        "`relay, cache off` forwards it as it is: their difference is what adding the markers costs.",
        "latency",
        10,
        _posting(LARGE),
    ),
    *(
        Scenario(
            key,
            f"{len(body) / 1e6:.0f} MB request body, non-streaming (CPU per KB)",
            f"The 200 KB body's shape with its history repeated to {len(body) / 1e6:.1f} MB, one "
            "request at a time, for relay and the floors: CPU ms/req divided by the body's KB is "
            "relay's work per KB, flat across the sizes when that work is linear in the body.",
            "latency",
            per_round,
            _posting(body),
        )
        for (key, body), per_round in zip(SCALED.items(), (4, 1))
    ),
)
