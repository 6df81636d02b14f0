"""The fake upstream bills prompt caching by Anthropic's rules (the benchmark's numbers rest on it)."""

from __future__ import annotations

import pytest

from devtools.fake_prompt_cache import CacheRuleError, PromptCache

MARK = {"type": "ephemeral"}
SYSTEM = "Stable instructions. " * 400  # ~2,100 tokens at 4 bytes a token


def request(*turns: str, system_mark=MARK, tail_mark=None, model="claude-sonnet-4-5") -> dict:
    system = {"type": "text", "text": SYSTEM, **({"cache_control": system_mark} if system_mark else {})}
    messages = [
        {"role": ("user", "assistant")[i % 2], "content": [{"type": "text", "text": text}]}
        for i, text in enumerate(turns)
    ]
    if tail_mark:
        messages[-1]["content"][-1]["cache_control"] = tail_mark
    return {"model": model, "system": [system], "messages": messages}


def test_a_prefix_is_written_once_then_read_and_every_token_is_billed_once():
    cache = PromptCache(clock=lambda: 0.0)
    first = cache.bill("org", request("hello"))
    second = cache.bill("org", request("hello again"))

    assert first["cache_read_input_tokens"] == 0 and first["cache_creation_input_tokens"] > 2000
    assert second["cache_read_input_tokens"] == first["cache_creation_input_tokens"]
    assert second["cache_creation_input_tokens"] == 0
    total = sum(first[k] for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))
    assert second["input_tokens"] + second["cache_read_input_tokens"] > total - 5
    assert cache.bill("other-org", request("hello"))["cache_read_input_tokens"] == 0


def test_without_markers_nothing_is_cached():
    cache = PromptCache(clock=lambda: 0.0)
    for _ in range(2):
        usage = cache.bill("org", request("hi", system_mark=None))
    assert usage["cache_read_input_tokens"] == usage["cache_creation_input_tokens"] == 0


def test_entries_expire_after_their_ttl_and_one_hour_costs_its_own_line():
    cache = PromptCache(clock=lambda: 0.0)
    cache.bill("org", request("a"))
    cache.advance(301)
    assert cache.bill("org", request("a"))["cache_read_input_tokens"] == 0
    hour = {"type": "ephemeral", "ttl": "1h"}
    written = cache.bill("org-2", request("b", system_mark=hour))
    assert written["cache_creation"] == {
        "ephemeral_5m_input_tokens": 0,
        "ephemeral_1h_input_tokens": written["cache_creation_input_tokens"],
    }
    cache.advance(3000)
    assert cache.bill("org-2", request("c", system_mark=hour))["cache_read_input_tokens"] > 0
    cache.advance(3601)
    assert cache.bill("org-2", request("c", system_mark=hour))["cache_read_input_tokens"] == 0


def test_prefixes_below_the_models_minimum_are_not_cached():
    cache = PromptCache(clock=lambda: 0.0)
    for _ in range(2):
        usage = cache.bill("org", request("hi", model="claude-haiku-4-5"))  # needs 4,096 tokens
    assert usage["cache_read_input_tokens"] == usage["cache_creation_input_tokens"] == 0


def test_the_look_back_reaches_twenty_blocks_and_no_further():
    cache = PromptCache(clock=lambda: 0.0)
    turns = [f"turn {i}" for i in range(41)]
    cache.bill("org", request(*turns[:1], tail_mark=MARK))
    near = cache.bill("org", request(*turns[:19], system_mark=None, tail_mark=MARK))
    assert near["cache_read_input_tokens"] > 2000  # the 1-turn prefix is 18 blocks back
    far = cache.bill("org", request(*turns[:41], system_mark=None, tail_mark=MARK))
    assert far["cache_read_input_tokens"] == 0  # 22 blocks past the 19-turn prefix


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: [m["content"][0].update(cache_control=MARK) for m in r["messages"]], "A maximum of 4 blocks"),
        (
            lambda r: r["messages"].append(
                {
                    "role": "assistant",
                    "content": [{"type": "thinking", "thinking": "x", "signature": "s", "cache_control": MARK}],
                }
            ),
            "thinking",
        ),
        (
            lambda r: r["messages"][0]["content"].append({"type": "text", "text": "", "cache_control": MARK}),
            "empty text",
        ),
        (lambda r: r["messages"][0]["content"][0].update(cache_control={"type": "ephemeral", "ttl": "1h"}), "ttl='1h'"),
    ],
)
def test_requests_the_api_refuses_are_refused(change, message):
    body = request("a", "b", "c", "d")
    change(body)
    with pytest.raises(CacheRuleError, match=message):
        PromptCache().bill("org", body)
