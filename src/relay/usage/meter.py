"""Token usage read from responses as they pass, and the audit row each request leaves.

The adapter feeds a `Meter` (a Tap) with the bytes the client gets, from a copy of
the stream, so reading usage never delays or buffers the client. A Meter parses only the
frames that carry usage, the served model or an error (Anthropic `message_start`,
`message_delta`, `error`; OpenAI's usage chunk and `[DONE]`) and writes one row when the
body has ended, or the client has gone, in `ctx.waitUntil` (with the rows of requests that
end within WRITE_DELAY_SECONDS of it, in one D1 call).

Counts are kept in Anthropic's shape, which bills each input token once: `input_tokens`
excludes cache reads and writes. OpenAI's prompt tokens include cached ones, so those are
split out here (`cache_read_tokens`), and one cost formula serves both APIs.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from relay import times
from relay.http import sse
from relay.http.json_spans import dumps, loads_or_none
from relay.http.messages import content_kind
from relay.http.text_bounds import clip, stored
from relay.limits import key_limits, spend_gate, token_rates
from relay.log import log
from relay.services import Database, IsolateState, Services
from relay.usage import audit_log, estimate, pricing
from relay.usage.audit_log import UsageRow

# Frames worth parsing in an Anthropic stream; deltas and pings are skipped unread.
_ANTHROPIC_EVENTS = frozenset({b"message_start", b"message_delta", b"message_stop", b"error"})
_OPENAI_INTERESTING = re.compile(rb'"usage"\s*:\s*\{|"error"\s*:|"response\.completed"')
# A non-streamed body is parsed whole; past this size it is not parsed at all.
MAX_JSON_BYTES = 8 * 1024 * 1024
COUNTS = ("input_tokens", "output_tokens", "cache_creation_tokens", "cache_creation_1h_tokens", "cache_read_tokens")


def client_family(user_agent: str | None) -> str | None:
    """The client's name from its user-agent: "claude-cli/2.1.3 (external, cli)" ->
    "claude-cli", "Anthropic/Python 0.75.0" -> "Anthropic/Python"."""
    if not user_agent or not user_agent.strip():
        return None
    product = user_agent.split()[0]
    name, slash, version = product.rpartition("/")
    return name if slash and version[:1].isdigit() else product


@dataclass
class Exchange:
    """What the pipeline learns about one request, filled in as it goes, for its row."""

    started: float
    surface: str
    method: str
    path: str
    client: str | None = None
    key_id: str | None = None
    billing_tag: str | None = None
    session_id: str | None = None
    provider: str | None = None
    upstream_key_id: str | None = None
    model_requested: str | None = None
    stream: bool = False
    cache_markers_added: int = 0
    stream_slot: str | None = None  # limits.open_stream's, released when the body ends
    person_id: str | None = None  # a signed-in person (identity/gateway_sessions.py), their email and group
    person_email: str | None = None
    group_name: str | None = None
    spend_hold: Any = None  # limits.spend_caps.Hold, settled when the body ends
    token_hold: Any = None  # limits.token_rates.TokenHold, corrected when the body ends


@dataclass
class Reading:
    """What a response body said about usage, so far."""

    counts: dict[str, int | None] = field(default_factory=dict)
    model: str | None = None
    error_type: str | None = None
    complete: bool = False
    output_reported: bool = False  # the provider's final count of the output was read
    basis: str | None = None  # the row's usage_basis: None (as reported), estimated or unread

    def anthropic_usage(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        for source, name in (
            ("input_tokens", "input_tokens"),
            ("output_tokens", "output_tokens"),
            ("cache_creation_input_tokens", "cache_creation_tokens"),
            ("cache_read_input_tokens", "cache_read_tokens"),
        ):
            if isinstance(usage.get(source), int):
                self.counts[name] = usage[source]
        split = usage.get("cache_creation")
        if isinstance(split, dict) and isinstance(split.get("ephemeral_1h_input_tokens"), int):
            self.counts["cache_creation_1h_tokens"] = split["ephemeral_1h_input_tokens"]

    def openai_usage(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {}
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        cached = cached if isinstance(cached, int) else 0
        prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
        if isinstance(prompt, int):
            self.counts["input_tokens"] = max(0, prompt - cached)
            self.counts["cache_read_tokens"] = cached
        completion = usage.get("completion_tokens", usage.get("output_tokens"))
        if isinstance(completion, int):
            self.counts["output_tokens"] = completion

    def error(self, payload: Any) -> None:
        error = payload.get("error") if isinstance(payload, dict) else None
        if isinstance(error, dict):
            kind = error.get("type") or error.get("code")
            self.error_type = str(kind) if kind else "error"

    def model_from(self, value: Any) -> None:
        if self.model is None and isinstance(value, str):
            self.model = value


class _Reader:
    """Incremental parse of one body in one API's format (SSE or a JSON document)."""

    def __init__(self, surface: str, content_type: str | None):
        self.surface = surface
        self.stream = content_kind(content_type) == "events"
        self.reading = Reading()
        self._parts: list[bytes] = []  # a JSON body's chunks, joined once at the end
        self._size = 0
        self._frames = sse.Frames()
        self._too_big = False
        # A stream's output deltas, until the provider's final count arrives: a stream cut
        # short is billed for what passed of it (estimate.py).
        self._deltas: list[bytes] | None = []

    def feed(self, chunk: bytes) -> None:
        if not self.stream:
            if not self._too_big:
                self._parts.append(chunk)
                self._size += len(chunk)
                self._too_big = self._size > MAX_JSON_BYTES
                if self._too_big:
                    self._parts = []
            return
        for event, data in self._frames.feed(chunk):
            self._frame(event, data)

    def _frame(self, event: bytes, data: bytes) -> None:
        reading = self.reading
        if self.surface == "anthropic":
            if event == b"content_block_delta" and self._deltas is not None:
                self._deltas.append(data)
            if event not in _ANTHROPIC_EVENTS:
                return
            if event == b"message_stop":
                reading.complete = True
                return
            payload = loads_or_none(data)
            if event == b"message_start" and isinstance(payload, dict):
                message = payload.get("message") or {}
                reading.model_from(message.get("model"))
                reading.anthropic_usage(message.get("usage"))
            elif event == b"message_delta" and isinstance(payload, dict):
                reading.anthropic_usage(payload.get("usage"))
                self._reported(isinstance(payload.get("usage"), dict))
            elif event == b"error":
                reading.error(payload)
            return
        if data.strip() == b"[DONE]":
            reading.complete = True
            return
        if self._deltas is not None:
            self._deltas.append(data)
        if reading.model is not None and not _OPENAI_INTERESTING.search(data):
            return
        payload = loads_or_none(data)
        if not isinstance(payload, dict):
            return
        reading.model_from(payload.get("model"))
        if isinstance(payload.get("usage"), dict):
            reading.openai_usage(payload["usage"])
            self._reported(True)
        if payload.get("type") == "response.completed" and isinstance(payload.get("response"), dict):
            reading.model_from(payload["response"].get("model"))
            reading.openai_usage(payload["response"].get("usage"))
            reading.complete = True
            self._reported(isinstance(payload["response"].get("usage"), dict))
        reading.error(payload)

    def _reported(self, reported: bool) -> None:
        if reported:
            self.reading.output_reported, self._deltas = True, None

    def too_large(self) -> None:
        self.reading.basis = "unread"

    def close(self, status: int) -> Reading:
        reading = self.reading
        if self.stream:
            for event, data in self._frames.close():
                self._frame(event, data)
            if not (reading.complete or reading.output_reported) and self._deltas:
                counted = estimate.output_tokens(self.surface, self._deltas)
                reading.counts["output_tokens"] = max(reading.counts.get("output_tokens") or 0, counted)
                reading.basis = "estimated"
            return reading
        if self._too_big:
            self.too_large()
        payload = None if self._too_big else loads_or_none(b"".join(self._parts))
        if isinstance(payload, dict):
            reading.model_from(payload.get("model"))
            if self.surface == "anthropic":
                reading.anthropic_usage(payload.get("usage"))
            else:
                reading.openai_usage(payload.get("usage"))
            if status >= 400:
                reading.error(payload)
        reading.complete = True
        return reading


def _stored(text: str | None) -> str | None:
    return None if text is None else stored(text)


class Meter:
    """The Tap that turns a response into its audit row."""

    def __init__(
        self,
        exchange: Exchange,
        status: int,
        content_type: str | None,
        services: Services,
        prices: pricing.Prices = (),
    ):
        self.exchange = exchange
        self.status = status
        self._reader = _Reader(exchange.surface, content_type)
        self._services = services
        self._prices = prices
        self._first_byte: float | None = None
        self._broken = False

    def feed(self, chunk: bytes, at: float | None = None) -> None:
        if self._first_byte is None:
            self._first_byte = self._services.clock() if at is None else at
        self._reader.feed(chunk)

    def broke_off(self) -> None:
        self._broken = True

    def too_large(self) -> None:
        self._reader.too_large()

    def row(self, client_gone: bool, now: float) -> UsageRow:
        ex = self.exchange
        reading = self._reader.close(self.status)
        error_type = reading.error_type
        if error_type is None and client_gone:
            error_type = "client_disconnected"
        elif error_type is None and self._broken:
            error_type = "connection_lost"
        elif error_type is None and not reading.complete:
            error_type = "upstream_disconnected"
        model = reading.model or ex.model_requested
        counts = {name: reading.counts.get(name) for name in COUNTS}
        priced = any(value is not None for value in counts.values())
        # Priced by the model name as stored: price_of keeps an isolate-wide cache by name.
        cost, savings = (
            pricing.cost(pricing.price_of(model and stored(model), self._prices, ex.provider), counts)
            if priced
            else (None, None)
        )
        first = self._first_byte if self._first_byte is not None else now
        created_at = times.iso(ex.started)
        return UsageRow(  # its text bounded (text_bounds.stored)
            created_at=created_at,
            day=created_at[:10],
            key_id=_stored(ex.key_id),
            billing_tag=_stored(ex.billing_tag),
            session_id=_stored(ex.session_id),
            client=_stored(ex.client),
            surface=stored(ex.surface),
            provider=_stored(ex.provider),
            upstream_key_id=_stored(ex.upstream_key_id),
            method=stored(ex.method),
            path=stored(ex.path),
            model_requested=_stored(ex.model_requested),
            model_served=_stored(reading.model),
            stream=int(ex.stream),
            status=self.status,
            error_type=_stored(error_type),
            input_tokens=counts["input_tokens"],
            output_tokens=counts["output_tokens"],
            cache_creation_tokens=counts["cache_creation_tokens"],
            cache_creation_1h_tokens=counts["cache_creation_1h_tokens"],
            cache_read_tokens=counts["cache_read_tokens"],
            usage_basis=reading.basis,
            cache_markers_added=ex.cache_markers_added,
            ttfb_ms=round((first - ex.started) * 1000),
            total_ms=round((now - ex.started) * 1000),
            cost_usd=pricing.usd(cost),
            cache_savings_usd=pricing.usd(savings),
            cost_nanos=cost,
            cache_savings_nanos=savings,
            person_id=_stored(ex.person_id),
            person_email=_stored(ex.person_email),
            group_name=_stored(ex.group_name),
        )

    async def finish(self, client_gone: bool) -> None:
        """Free the stream slot, count the cost against the key's budget, write the row."""
        work = self.close(client_gone)
        if work is not None:
            await work

    def close(self, client_gone: bool) -> Awaitable[None] | None:
        """`finish`, done at once as far as it can be: the row is made and joins the group
        of rows being written; what is left to await (freeing a stream slot first, or
        writing the group this row opens) is returned, else None. The adapter defers that
        work only when there is some: each deferred task costs the isolate CPU."""
        db = self._services.db
        if db is None:
            return None
        slot = self.exchange.stream_slot
        if slot is not None:  # first, so the slot is free once the row is there
            return self._free_slot_then_record(db, slot, client_gone)
        return self._record(db, client_gone)

    async def _free_slot_then_record(self, db: Database, slot: str, client_gone: bool) -> None:
        try:
            await key_limits.close_stream(db, slot, self._services.clock())
        except Exception as exc:
            log(f"stream slot not released ({type(exc).__name__}); it lapses by itself")
        work = self._record(db, client_gone)
        if work is not None:
            await work

    def _record(self, db: Database, client_gone: bool) -> Awaitable[None] | None:
        services = self._services
        row = self.row(client_gone, services.clock())
        key_limits.note_spend(services.state, self.exchange.key_id, row["cost_usd"])
        work = _join_group(services.state, db, row)
        if self.exchange.spend_hold is not None or self.exchange.token_hold is not None:
            return _settled_then(services, self.exchange, row, work)
        return work


async def _settled_then(services: Services, exchange: Exchange, row: UsageRow, work: Awaitable[None] | None) -> None:
    """Count what the request used against its spend caps and tokens-per-minute limit,
    then write its row (if this request opens a group)."""
    if exchange.spend_hold is not None:
        await spend_gate.settle(services, exchange.spend_hold, row["cost_usd"])
    if exchange.token_hold is not None:
        await token_rates.settle_safely(services, exchange.token_hold, row)
    if work is not None:
        await work


# How long the first of a group of audit rows waits for others to join it, and how many
# rows one write takes at most (one statement, whose JSON parameter grows with its rows,
# about half a KB each, at most 43 KB with every text column at its bound in escaped
# emoji: D1 takes a value of up to 2 MB, and a group it refuses is written in halves).
# A D1 call costs the Worker far more than a row in it (measured on workerd: 1 CPU ms a call, 0.02 a row); at 500
# requests a second, groups of at most 20 rows after 50 ms cost 0.12 CPU ms a request
# more than these (A/B).
WRITE_DELAY_SECONDS = 0.25
MAX_ROWS_PER_WRITE = 100


def _join_group(state: IsolateState, db: Database, row: UsageRow) -> Awaitable[None] | None:
    """Write the row together with those of requests that end soon after it.

    A D1 call costs far more than the rows in it, so rows are written in groups: the
    request whose row opens a group waits WRITE_DELAY_SECONDS (in its waitUntil, off the
    client's path), then writes every row that joined it in one D1 statement; requests that
    join a group return at once. No request waits on another's work, so none resumes in
    another request's context. A row alone (one request at a time) goes in one statement,
    WRITE_DELAY_SECONDS after its request ended. Returns the write of the group this row
    opens, or None when it joined one."""
    group = state.usage_group
    if group is not None and len(group) < MAX_ROWS_PER_WRITE:
        group.append(row)
        return None
    state.usage_group = [row]
    return _write_group(state, db, state.usage_group)


# A group that D1 refuses is written again in halves, and a refused half in halves again,
# down to the rows D1 will not take, so one bad row costs no other row its place. A group
# may take at most WRITE_ATTEMPTS D1 calls (while D1 is down every one fails): enough to
# single out one bad row of MAX_ROWS_PER_WRITE (the group, then two calls per halving).
WRITE_ATTEMPTS = 24


async def _write_group(state: IsolateState, db: Database, group: list[UsageRow]) -> None:
    await asyncio.sleep(WRITE_DELAY_SECONDS)
    if state.usage_group is group:
        state.usage_group = None
    pending, calls = [group], 0
    cause: Exception | None = None
    while pending:
        rows = pending.pop()
        if calls == WRITE_ATTEMPTS and cause is not None:  # only after failures: the last one
            _lost(state, rows + [row for rest in pending for row in rest], cause)
            return
        calls += 1
        try:
            await audit_log.insert_usage(db, *rows)
        except Exception as exc:
            cause = exc
            if len(rows) == 1:
                _lost(state, rows, exc)
            else:
                pending += [rows[len(rows) // 2 :], rows[: len(rows) // 2]]


def _lost(state: IsolateState, rows: list[UsageRow], cause: Exception) -> None:
    """The requests were served; their rows are not written: count them and say why."""
    state.usage_write_failures += len(rows)
    log(
        f"usage row not written ({type(cause).__name__}: {clip(str(cause), 200)}): {len(rows)} "
        f"of a group; {state.usage_write_failures} lost in this isolate"
    )


def ask_for_usage(body: bytes, parsed: dict[str, Any]) -> bytes:
    """A Chat Completions stream reports usage only when asked (`stream_options.include_usage`), so
    relay asks when the client did not say either way: its last chunk (empty `choices`,
    then `usage`) is the documented form every OpenAI SDK parses. A client that set
    `include_usage: false` is left as it is, and its row has no token counts."""
    options = parsed.get("stream_options")
    if options is not None and (not isinstance(options, dict) or "include_usage" in options):
        return body
    changed = {**parsed, "stream_options": {**(options or {}), "include_usage": True}}
    return dumps(changed).encode()
