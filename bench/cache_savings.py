"""What relay's prompt-cache markers save, measured from outside.

    python -m bench.cache_savings [--turns 50]

Runs relay on workerd (devtools/local_worker.py) in front of the fake Anthropic upstream, which
caches and bills like the API (devtools/fake_prompt_cache.py), with two virtual keys made
through the admin API: one with cache policy `off`, one per policy measured.

Savings: a 50-turn tool-calling session (a ~17K-token system prompt and 12 tools of ~8K
tokens in all; one tool call per turn, and 11 parallel calls every 10th turn; a 10-minute
pause after turn 25) is replayed by (a) a client that sends no markers and (b) a client
shaped like Claude Code (3 system blocks, 2 marked; its last message block marked).
Billed input is priced with Anthropic's multipliers of the base input price: 1 for input,
1.25 for 5-minute cache writes, 2 for 1-hour writes, 0.1 for cache reads.

What adding the markers costs in latency is measured by `python -m bench.run` (its 200 KB
scenario: relay with cache policy `auto` against `relay, cache off`), on `sized_body` below.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx

from devtools.fake_upstream import FakeUpstream
from devtools.local_worker import LocalWorker

ADMIN_TOKEN = "bench-admin-token"
UPSTREAM_KEY = "sk-ant-bench-upstream"
MODEL = "claude-sonnet-4-5"
PRICE = {
    "input_tokens": 1.0,
    "ephemeral_5m_input_tokens": 1.25,
    "ephemeral_1h_input_tokens": 2.0,
    "cache_read_input_tokens": 0.1,
}
MARK = {"type": "ephemeral"}
PAUSE_AFTER_TURN, PAUSE_SECONDS = 25, 600
WORDS = (
    "file",
    "module",
    "change",
    "test",
    "error",
    "function",
    "value",
    "request",
    "cache",
    "build",
    "the",
    "a",
    "when",
    "never",
    "always",
    "check",
    "return",
    "read",
    "write",
    "user",
    "project",
    "line",
)


def prose(rng: random.Random, size: int) -> str:
    words: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(WORDS)
        words.append(word)
        length += len(word) + 1
    return " ".join(words)


def tools(rng: random.Random, nonce: str) -> list[dict]:
    return [
        {
            "name": f"Tool{i}",
            "description": f"[{nonce}] " + prose(rng, 2600),
            "input_schema": {
                "type": "object",
                "properties": {"path": {"type": "string"}, "pattern": {"type": "string"}},
                "required": ["path"],
            },
        }
        for i in range(12)
    ]


def history(rng: random.Random, turns: int) -> Iterator[list[dict]]:
    """The messages of each request of a tool-calling session, turn by turn."""
    messages: list[dict] = [{"role": "user", "content": "Find why the build fails and fix it."}]
    yield list(messages)
    for turn in range(1, turns):
        calls = 11 if turn % 10 == 0 else 1
        ids = [f"toolu_{turn}_{i}" for i in range(calls)]
        messages.append(
            {
                "role": "assistant",
                "content": [{"type": "text", "text": "Let me look."}]
                + [
                    {"type": "tool_use", "id": tool_id, "name": "Tool1", "input": {"path": f"src/f{turn}.py"}}
                    for tool_id in ids
                ],
            }
        )
        messages.append(
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": tool_id, "content": prose(rng, 1500 if calls == 1 else 300)}
                    for tool_id in ids
                ],
            }
        )
        yield list(messages)


def bodies(shape: str, turns: int) -> Iterator[dict]:
    """Request bodies of one session: `plain` sends no markers, `claude-code` its own three."""
    rng = random.Random(7)
    nonce = uuid.uuid4().hex  # a fresh session: nothing cached by an earlier run
    system_text = f"[{nonce}] " + prose(rng, 68_000)
    tool_list = tools(rng, nonce)
    for messages in history(rng, turns):
        if shape == "plain":
            yield {"model": MODEL, "max_tokens": 1024, "system": system_text, "tools": tool_list, "messages": messages}
            continue
        last = dict(messages[-1])
        content = last["content"] if isinstance(last["content"], list) else [{"type": "text", "text": last["content"]}]
        last["content"] = content[:-1] + [{**content[-1], "cache_control": MARK}]
        yield {
            "model": MODEL,
            "messages": messages[:-1] + [last],
            "system": [
                {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1"},
                {
                    "type": "text",
                    "text": "You are Claude Code, Anthropic's official CLI for Claude.",
                    "cache_control": MARK,
                },
                {"type": "text", "text": system_text, "cache_control": MARK},
            ],
            "tools": tool_list,
            "max_tokens": 32000,
        }


def cost(usage: dict) -> float:
    created = usage.get("cache_creation") or {"ephemeral_5m_input_tokens": usage["cache_creation_input_tokens"]}
    billed = {
        "input_tokens": usage["input_tokens"],
        "cache_read_input_tokens": usage["cache_read_input_tokens"],
        **created,
    }
    return sum(PRICE[name] * tokens for name, tokens in billed.items())


def replay(client: httpx.Client, fake: FakeUpstream, key: str, shape: str, turns: int) -> dict:
    total, refused, read = 0.0, 0, 0
    for turn, body in enumerate(bodies(shape, turns), start=1):
        answer = client.post(
            "/v1/messages", content=json.dumps(body, ensure_ascii=False).encode(), headers={"x-api-key": key}
        )
        if answer.status_code != 200:
            refused += 1
            continue
        usage = answer.json()["usage"]
        total += cost(usage)
        read += usage["cache_read_input_tokens"]
        if turn == PAUSE_AFTER_TURN:
            fake.advance(PAUSE_SECONDS)
    return {"cost": total, "refused": refused, "read": read}


def sized_body(size: int) -> bytes:
    """A marker-free Messages body of about `size` bytes: system, tools, then history."""
    rng = random.Random(size)
    body = {
        "model": MODEL,
        "max_tokens": 1024,
        "system": prose(rng, 8000),
        "tools": tools(rng, "latency"),
        "messages": [],
    }
    messages = history(rng, 10_000)
    while len(json.dumps(body)) < size:
        body["messages"] = next(messages)
    return json.dumps(body, ensure_ascii=False).encode()


def create_key(client: httpx.Client, policy: str) -> str:
    answer = client.post(
        "/admin/keys",
        json={"name": f"bench {policy}", "cache_policy": policy},
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    answer.raise_for_status()
    return answer.json()["key"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=50)
    args = parser.parse_args()
    print(
        f"# relay prompt-cache bench, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{platform.machine()} {platform.processor() or platform.system()}, Python {platform.python_version()}"
    )
    with (
        FakeUpstream("anthropic") as fake,
        LocalWorker(
            {
                "ANTHROPIC_API_KEYS": UPSTREAM_KEY,
                "UPSTREAM_ANTHROPIC_URL": fake.url,
                "RELAY_ADMIN_TOKEN": ADMIN_TOKEN,
                "RELAY_CACHE_POLICY": "off",
            }
        ) as worker,
        httpx.Client(
            base_url=worker.url,
            timeout=120,
            headers={"anthropic-version": "2023-06-01", "content-type": "application/json"},
        ) as client,
    ):
        keys = {policy: create_key(client, policy) for policy in ("off", "auto", "auto-1h")}
        savings(client, fake, keys, args.turns)


def savings(client: httpx.Client, fake: FakeUpstream, keys: dict[str, str], turns: int) -> None:
    print(f"\n## Billed input of a {turns}-turn tool-calling session (units of base input price)\n")
    print("| client | policy | billed input | vs off | cache read tokens | refused (400) |")
    print("|---|---|---:|---:|---:|---:|")
    for shape in ("plain", "claude-code"):
        results = {policy: replay(client, fake, key, shape, turns) for policy, key in keys.items()}
        for policy, result in results.items():
            change = result["cost"] / results["off"]["cost"] - 1
            print(
                f"| {shape} | {policy} | {result['cost']:,.0f} | {change:+.1%} | {result['read']:,} "
                f"| {result['refused']} |"
            )


if __name__ == "__main__":
    main()
