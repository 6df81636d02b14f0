"""Prompt-cache markers: relay adds `cache_control` breakpoints to Anthropic Messages requests.

Anthropic bills input read from its prompt cache at a tenth of the price, but only up to
a block that carries `cache_control`, and most clients mark none. Relay adds markers per
the relay key's policy, following the API's rules (platform.claude.com, prompt caching):

- the cached prefix runs tools -> system -> messages, up to and including a marked block;
- at most 4 markers per request (a 5th is a 400): the client's own count first;
- a prefix shorter than the model's minimum is not cached (MINIMUM_TOKENS);
- thinking, redacted_thinking and empty text blocks may not carry a marker;
- 1-hour markers must come before 5-minute ones;
- a cache hit is looked for at a marker and up to 20 blocks before it (LOOKBACK_BLOCKS).

Policies: `off`; `system` marks the end of the stable prefix (the last system block, else
the last tool); `auto` also marks the conversation tail (from the second message on, so
one-shot requests pay no write premium), the previous turn's tail when a turn added more
blocks than the look-back reaches, and the last tool (tools outlive a changing system
prompt). `-1h` gives the prefix markers a 1-hour TTL; tail markers stay at 5 minutes,
since the next turn supersedes them. Markers go in that order of value while the budget
lasts; a place whose section the client already marked is left to the client.

The body is changed by splicing the markers into the client's text (see layout.py); when
there is nothing to add, the original bytes go on untouched. Tokens are estimated as
characters of JSON text / 4: cheap, and close enough to decide whether a prefix passes a
minimum (CJK-heavy text is underestimated, so relay errs towards not marking).

Cost: every request runs this, so it is linear in the body's size whatever the body holds
(test_cache.py counts the steps). The client's markers are found by one search of the text
in C and at most MAX_MARKERS of them are read (with that many relay adds nothing); every
other step reads each part of the body a bounded number of times. (Reading every marker,
each up to the next brace, took 13.7 s of CPU for 20,000 keys in `metadata`.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from relay.http.json_spans import Layout, Span, items, last_items, members, value_after
from relay.log import log

POLICIES = ("off", "system", "auto", "system-1h", "auto-1h")
MAX_MARKERS = 4
LOOKBACK_BLOCKS = 20
CHARS_PER_TOKEN = 4
# Minimum cacheable prompt length by model, first match wins (Anthropic docs and gateway
# docs that track them, 2026-11; where sources disagree the larger value is kept).
MINIMUM_TOKENS = (
    (re.compile(r"haiku-4"), 4096),
    (re.compile(r"haiku"), 2048),
    (re.compile(r"opus-4-[5-7]"), 4096),
    (re.compile(r"sonnet-4-6"), 2048),
)
DEFAULT_MINIMUM_TOKENS = 1024
# A marked prefix is part of the body's text, which is no longer in characters than in bytes:
# a body shorter than this is never marked, and its layout is not needed (may_mark).
SHORTEST_MARKED_BYTES = min(DEFAULT_MINIMUM_TOKENS, *(tokens for _, tokens in MINIMUM_TOKENS)) * CHARS_PER_TOKEN
# Blocks that may carry a marker (others, e.g. thinking, may not, or are not known to).
_MARKABLE = frozenset({"text", "image", "document", "tool_use", "tool_result", "search_result"})


def _json_key(name: str) -> re.Pattern[str]:
    """A pattern for `name` written as an object key in JSON text: each character as itself
    or as its `\\uXXXX` escape (either case of hex digit), then the colon."""

    def character(c: str) -> str:
        digits = "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in f"{ord(c):04x}")
        return f"(?:{re.escape(c)}|\\\\u{digits})"

    return re.compile('"' + "".join(map(character, name)) + '"[ \\t\\n\\r]*:')


_CLIENT_MARKER = _json_key("cache_control")
_HOUR, _FIVE = 2, 1  # TTL ranks: a longer TTL may only precede a shorter or equal one


@dataclass(frozen=True)
class Injection:
    """The body to send upstream and how many markers relay added to it (0: the original)."""

    body: bytes
    markers_added: int


def minimum_tokens(model: Any) -> int:
    if isinstance(model, str):
        for pattern, tokens in MINIMUM_TOKENS:
            if pattern.search(model):
                return tokens
    return DEFAULT_MINIMUM_TOKENS


# Where a place stands in the cache prefix: (section, text offset), see _Spot.
Rank = tuple[int, int]


@dataclass
class _Spot:
    """A block relay may mark. `rank` orders places as the cache prefix does: (section,
    text offset), sections tools 0, system 1, messages 2. `span` is the block object, or
    the string relay turns into one; `prefix_chars` the JSON length of the prefix up to it."""

    rank: Rank
    span: Span
    prefix_chars: int
    ttl: int = _FIVE


class _Body:
    """The parts of a Messages body that planning needs, read lazily from its layout."""

    def __init__(self, parsed: dict[str, Any], layout: Layout):
        self.parsed, self.layout, self.text = parsed, layout, layout.text
        self.spans = [layout.values.get(name, (0, 0)) for name in ("tools", "system", "messages")]
        self.tools_chars = self.spans[0][1] - self.spans[0][0]
        self.system_chars = self.spans[1][1] - self.spans[1][0]
        self.markers = self._client_markers()
        self.messages: dict[int, Span] = {}  # spans of the messages read so far, by index

    def _client_markers(self) -> list[tuple[Rank, int]]:
        """(rank, TTL) of the first MAX_MARKERS `cache_control` keys in the text (with more,
        relay adds nothing, and reads no further). Counting keys in the text, by their
        decoded names, not known fields, never undercounts markers nested anywhere (it may
        overcount a schema property of that name: relay then adds fewer, which is safe).
        In a valid JSON text the pattern can only match a whole key, never inside a string."""
        found: list[tuple[Rank, int]] = []
        for match in _CLIENT_MARKER.finditer(self.text):
            offset = match.start()
            section = next((n for n, (start, end) in enumerate(self.spans) if start <= offset < end), 3)
            found.append(((section, offset), _marker_ttl(self.text, match.end())))
            if len(found) == MAX_MARKERS:
                break
        return found

    def marked(self, section: int, span: Span | None = None) -> bool:
        """Whether the client marked anything in a section (or in a span of it)."""
        return any(rank[0] == section and (span is None or span[0] <= rank[1] < span[1]) for rank, _ in self.markers)

    def read_messages(self, first: int) -> None:
        """Note the spans of the messages from index `first` to the last."""
        values = self.parsed["messages"]
        spans = last_items(self.text, self.spans[2], values, len(values) - first)
        self.messages = dict(zip(range(first, len(values)), spans))

    def message_chars(self, offset: int) -> int:
        """Prefix length up to a text offset inside the messages."""
        return self.tools_chars + self.system_chars + offset - self.spans[2][0]

    def last_tool(self) -> _Spot | None:
        tools = self.parsed.get("tools")
        spans = self.layout.items.get("tools")
        if not isinstance(tools, list) or not spans:
            return None
        for index in range(len(tools) - 1, -1, -1):
            if isinstance(tools[index], dict) and tools[index] and not tools[index].get("defer_loading"):
                span = spans[index]
                return _Spot((0, span[1]), span, span[1] - self.spans[0][0])
        return None

    def system_end(self) -> _Spot | None:
        system = self.parsed.get("system")
        if isinstance(system, str):
            span = self.spans[1]
            return _Spot((1, span[1]), span, self.tools_chars + self.system_chars) if system else None
        spans = self.layout.items.get("system")
        if not isinstance(system, list) or not spans:
            return None
        for index in range(len(system) - 1, -1, -1):
            if _markable(system[index]):
                span = spans[index]
                return _Spot((1, span[1]), span, self.tools_chars + span[1] - self.spans[1][0])
        return None

    def message_end(self, index: int) -> _Spot | None:
        """The last block of message `index` (read with read_messages) that may take a marker."""
        if not isinstance(self.parsed["messages"][index], dict):
            return None
        parts = Layout(self.text)  # read the message alone again, for its content's span
        message, _ = members(self.text, self.messages[index][0], parts)
        content, span = message.get("content"), parts.values.get("content")
        if span is None:  # no content
            return None
        if isinstance(content, str) and content:
            return _Spot((2, span[1]), span, self.message_chars(span[1]))
        if not isinstance(content, list) or not self.text.startswith("[", span[0]):
            return None
        _, spans, _ = items(self.text, span[0])
        for block in range(len(content) - 1, -1, -1):
            if _markable(content[block]):
                start, end = spans[block]
                return _Spot((2, end), (start, end), self.message_chars(end))
        return None


def _markable(block: Any) -> bool:
    if not isinstance(block, dict) or block.get("type") not in _MARKABLE or "cache_control" in block:
        return False
    return block["type"] != "text" or (isinstance(block.get("text"), str) and block["text"] != "")


def _marker_ttl(text: str, index: int) -> int:
    """The TTL rank of the marker whose value starts at `index` (after its key's colon)."""
    value = value_after(text, index)
    return _HOUR if isinstance(value, dict) and value.get("ttl") == "1h" else _FIVE


def _blocks(message: Any) -> int:
    content = message.get("content") if isinstance(message, dict) else None
    return len(content) if isinstance(content, list) else 1


def _previous_tail(messages: list[Any]) -> int | None:
    """The last message of the previous request: the one before the latest assistant turn."""
    for index in range(len(messages) - 2, 0, -1):
        if isinstance(messages[index], dict) and messages[index].get("role") == "assistant":
            return index - 1
    return None


def _anchor(body: _Body, previous: int, tail: _Spot | None) -> _Spot | None:
    """A marker on the previous request's tail, when the next marker after it is more
    blocks away than the API looks back (a turn with many parallel tool calls): without
    it that turn's history would be written to the cache again instead of read."""
    messages = body.parsed["messages"]
    later = [index for index, span in body.messages.items() if index > previous and body.marked(2, span)] + (
        [len(messages) - 1] if tail else []
    )
    if body.marked(2, body.messages[previous]) or not later:
        return None
    blocks = sum(_blocks(message) for message in messages[previous + 1 : min(later) + 1])
    return body.message_end(previous) if blocks >= LOOKBACK_BLOCKS else None


def _candidates(body: _Body, mode: str, long_ttl: bool) -> list[_Spot]:
    """Places worth a marker, most valuable first."""
    messages = body.parsed.get("messages")
    conversation = messages if mode == "auto" and isinstance(messages, list) and len(messages) >= 2 else None
    previous = _previous_tail(conversation) if conversation is not None else None
    if conversation is not None:
        body.read_messages(len(conversation) - 1 if previous is None else previous)
    wanted: list[_Spot | None] = []
    tail = None
    if conversation is not None and not body.marked(2, body.messages[len(conversation) - 1]):
        tail = body.message_end(len(conversation) - 1)
        wanted.append(tail)
    has_system = body.system_chars > 0 and bool(body.parsed.get("system"))
    prefix = body.system_end() if has_system else body.last_tool()
    if prefix is not None and not body.marked(prefix.rank[0]):
        prefix.ttl = _HOUR if long_ttl else _FIVE
        wanted.append(prefix)
    if previous is not None:
        wanted.append(_anchor(body, previous, tail))
    if mode == "auto" and has_system and not body.marked(0):
        tools = body.last_tool()
        if tools is not None:
            tools.ttl = _HOUR if long_ttl else _FIVE
            wanted.append(tools)
    return [spot for spot in wanted if spot is not None]


def _ordered(chosen: list[_Spot], client: list[tuple[Rank, int]]) -> list[_Spot]:
    """The chosen spots with TTLs that keep 1-hour markers before 5-minute ones (a spot that
    cannot fit is dropped); none at all when the client's own markers break that rule."""
    client_ttls = [ttl for _, ttl in sorted(client)]
    if client_ttls != sorted(client_ttls, reverse=True):
        return []
    kept: list[_Spot] = []
    for spot in sorted(chosen, key=lambda s: s.rank):
        others = [(rank, ttl) for rank, ttl in client] + [(s.rank, s.ttl) for s in kept]
        earlier = min([ttl for rank, ttl in others if rank < spot.rank], default=_HOUR)
        later = max([ttl for rank, ttl in others if rank > spot.rank], default=_FIVE)
        spot.ttl = min(spot.ttl, earlier)
        if spot.ttl >= later:
            kept.append(spot)
    return kept


def _marker(ttl: int) -> str:
    return '"cache_control":{"type":"ephemeral","ttl":"1h"}' if ttl == _HOUR else '"cache_control":{"type":"ephemeral"}'


def _splice(text: str, spots: list[_Spot]) -> str:
    pieces = []
    last = 0
    for spot in sorted(spots, key=lambda s: s.span[0]):
        start, end = spot.span
        if text[start] == "{":  # a block object: the marker goes before its closing brace
            pieces += [text[last : end - 1], ",", _marker(spot.ttl), "}"]
        else:  # a string: it becomes one text block carrying the marker
            pieces += [text[last:start], '[{"type":"text","text":', text[start:end], ",", _marker(spot.ttl), "}]"]
        last = end
    pieces.append(text[last:])
    return "".join(pieces)


def may_mark(size: int, policy: str) -> bool:
    """Whether relay might add markers to a body of `size` bytes under `policy`; only then
    does `plan` need the body's layout, whose parse costs Python per top-level field."""
    return policy.partition("-")[0] in ("system", "auto") and size >= SHORTEST_MARKED_BYTES


def plan(parsed: Any, layout: Layout | None, policy: str) -> list[_Spot]:
    """Where relay would add markers to this body under this policy (empty: nowhere)."""
    mode, _, ttl = policy.partition("-")
    if mode not in ("system", "auto") or not isinstance(parsed, dict) or layout is None:
        return []
    if "cache_control" in parsed or layout.repeated & {"tools", "system", "messages", "cache_control"}:
        return []  # the API's automatic caching, or a body whose parts are ambiguous
    messages = layout.values.get("messages")
    if messages is not None and not (isinstance(parsed["messages"], list) and layout.text.startswith("[", messages[0])):
        return []
    body = _Body(parsed, layout)
    budget = MAX_MARKERS - len(body.markers)
    if budget == 0:
        return []
    least = minimum_tokens(parsed.get("model")) * CHARS_PER_TOKEN
    chosen = [spot for spot in _candidates(body, mode, ttl == "1h") if spot.prefix_chars >= least][:budget]
    return _ordered(chosen, body.markers)


def add_markers(body: bytes, parsed: Any, layout: Layout | None, policy: str) -> Injection:
    """The body with relay's markers, or the original bytes when there is nothing to add.
    Never raises: a shape relay does not understand goes on untouched."""
    try:
        spots = plan(parsed, layout, policy)
        if not spots or layout is None:
            return Injection(body, 0)
        return Injection(_splice(layout.text, spots).encode("utf-8"), len(spots))
    except Exception as exc:  # a body shape not foreseen: forwarding it as sent is always safe
        log(f"prompt-cache markers skipped ({type(exc).__name__})")
        return Injection(body, 0)
