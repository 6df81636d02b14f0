"""Anthropic's prompt caching, as the fake upstream applies and bills it.

The rules (platform.claude.com prompt-caching docs), close enough to bill honestly:

- The prompt is the sequence tools -> system -> message content blocks (a string system
  or content counts as one text block). A block carrying `cache_control` is a breakpoint;
  a top-level `cache_control` (automatic caching) puts one on the last block.
- At a breakpoint the prefix up to and including that block is written to the cache,
  for its TTL ("5m" default, "1h"), if it has at least the model's minimum of tokens.
  Entries are per organisation (here: per upstream key) and model, keyed by the exact
  prefix content (markers themselves are not part of it). A read refreshes the TTL.
- A request reads the longest cached prefix that ends at one of its breakpoints or at
  one of the 19 blocks before each (the API's look-back of 20 blocks).
- usage: `cache_read_input_tokens` = the prefix read; `cache_creation_input_tokens` = the
  rest of the prompt up to the last cacheable breakpoint (split by TTL in
  `cache_creation`); `input_tokens` = everything after. Tokens: 1 per 4 bytes of the
  block's compact JSON.
- Refused with 400 invalid_request_error, as the API does: more than 4 breakpoints
  (nested ones in tool_result content count), markers on thinking, redacted_thinking
  or empty text blocks, an unknown TTL, or a 1h marker after a 5m one.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any

MAX_BREAKPOINTS = 4
LOOKBACK = 20
TTL_SECONDS = {"5m": 300, "1h": 3600}
# Minimum cacheable tokens by model name fragment; 1024 for the others.
MINIMUMS = {"haiku-4": 4096, "opus-4-5": 4096, "haiku": 2048}


class CacheRuleError(Exception):
    """A request the API refuses with invalid_request_error; the message is the API's."""


def minimum_tokens(model: str) -> int:
    return next((tokens for fragment, tokens in MINIMUMS.items() if fragment in model), 1024)


def _utf8(value: Any) -> bytes:
    """A value's compact JSON text in UTF-8; a lone surrogate (JSON lets a client send one)
    passes as its code point, as a tokenizer would take it."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")


def _tokens(value: Any) -> int:
    return len(_utf8(value)) // 4


def _unmarked(block: Any) -> Any:
    if isinstance(block, dict):
        return {key: _unmarked(value) for key, value in block.items() if key != "cache_control"}
    if isinstance(block, list):
        return [_unmarked(item) for item in block]
    return block


def _blocks(content: Any) -> list:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return content if isinstance(content, list) else []


def _units(request: dict) -> list[tuple[str, Any]]:
    """(where, block) for every block of the prompt, in cache-prefix order."""
    units = [(f"tools.{i}", tool) for i, tool in enumerate(request.get("tools") or [])]
    units += [(f"system.{i}", block) for i, block in enumerate(_blocks(request.get("system")))]
    for m, message in enumerate(request.get("messages") or []):
        if isinstance(message, dict):
            units += [
                (f"messages.{m}.content.{k}", {"role": message.get("role"), "block": block})
                for k, block in enumerate(_blocks(message.get("content")))
            ]
    return units


def _markers(where: str, block: Any) -> list[str]:
    """The TTLs of the markers on a block (and inside its tool_result content); refuses
    markers where the API does."""
    if not isinstance(block, dict):
        return []
    inner = block.get("block", block)
    if not isinstance(inner, dict):
        return []
    found = []
    control = inner.get("cache_control")
    if control is not None:
        if inner.get("type") in ("thinking", "redacted_thinking"):
            raise CacheRuleError(f"{where}: cache_control cannot be set on {inner['type']} blocks")
        if inner.get("type") == "text" and not inner.get("text"):
            raise CacheRuleError(f"{where}.text: cache_control cannot be set for empty text blocks")
        ttl = control.get("ttl", "5m") if isinstance(control, dict) else None
        if ttl not in TTL_SECONDS:
            raise CacheRuleError(f"{where}.cache_control.ttl: must be '5m' or '1h'")
        found.append(ttl)
    if inner.get("type") == "tool_result":
        for index, nested in enumerate(_blocks(inner.get("content"))):
            found += _markers(f"{where}.content.{index}", nested)
    return found


class PromptCache:
    """The cache of one fake provider; `advance` moves its clock (TTL tests)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._skew = 0.0
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], tuple[float, int]] = {}  # (org, digest) -> (expiry, ttl s)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._skew += seconds

    def bill(self, org: str, request: dict) -> dict:
        """The usage of one Messages request, after reading and writing the cache."""
        units = _units(request)
        breakpoints: list[tuple[int, str]] = []
        for index, (where, block) in enumerate(units):
            breakpoints += [(index, ttl) for ttl in _markers(where, block)]
        if isinstance(request.get("cache_control"), dict) and units:
            breakpoints.append((len(units) - 1, request["cache_control"].get("ttl", "5m")))
        if len(breakpoints) > MAX_BREAKPOINTS:
            raise CacheRuleError(
                f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. Found {len(breakpoints)}."
            )
        ranks = [TTL_SECONDS[ttl] for _, ttl in sorted(breakpoints, key=lambda b: b[0])]
        if ranks != sorted(ranks, reverse=True):
            raise CacheRuleError("a ttl='1h' cache_control block must not come after a ttl='5m' one")

        digest = hashlib.sha256(str(request.get("model")).encode())
        digests, totals, total = [], [], 0
        for _, block in units:
            content = _unmarked(block)
            digest.update(_utf8(content))
            digests.append(digest.copy().hexdigest())
            total += _tokens(content)
            totals.append(total)
        least = minimum_tokens(str(request.get("model")))

        with self._lock:
            now = self._clock() + self._skew
            hit = -1
            for index, _ in breakpoints:
                for candidate in range(index, max(-1, index - LOOKBACK), -1):
                    entry = self._entries.get((org, digests[candidate]))
                    if entry and entry[0] > now and candidate > hit:
                        hit = candidate
            read = totals[hit] if hit >= 0 else 0
            if hit >= 0:
                ttl = self._entries[(org, digests[hit])][1]
                self._entries[(org, digests[hit])] = (now + ttl, ttl)
            written = {"5m": 0, "1h": 0}
            covered = read
            for index, ttl in sorted(breakpoints):
                if totals[index] < least:
                    continue
                seconds = TTL_SECONDS[ttl]
                key = (org, digests[index])
                self._entries[key] = (max(now + seconds, self._entries.get(key, (0, 0))[0]), seconds)
                if totals[index] > covered:
                    written[ttl] += totals[index] - covered
                    covered = totals[index]
        creation = written["5m"] + written["1h"]
        return {
            "input_tokens": total - read - creation,
            "cache_creation_input_tokens": creation,
            "cache_read_input_tokens": read,
            "cache_creation": {"ephemeral_5m_input_tokens": written["5m"], "ephemeral_1h_input_tokens": written["1h"]},
        }


def upstream_org(key: str | None) -> str:
    """The organisation a key bills: the key's digest, so no key is kept in the cache."""
    return hashlib.sha256((key or "").encode()).hexdigest()[:16]
