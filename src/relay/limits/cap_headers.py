"""How a spend cap's standing reaches the client: Claude Code's gateway contract.

On each answer to a capped caller, the `anthropic-ratelimit-unified-*` fields that
api.anthropic.com sends its subscribers, for the cap most used: Claude Code (>= 2.1.225)
shows "You've used NN% of your usage credits" from them. The upstream's own
`anthropic-ratelimit-*` fields are dropped first: they tell of the pooled upstream key's
quota, which is not the caller's. A caller without a cap gets the upstream's as before.

At the cap, relay answers 429 before going upstream, with `x-should-retry: false`, the
rejected status, the reset and period, and an Anthropic `billing_error` (OpenAI:
`insufficient_quota`) whose message names the cap, its window and when it resets. It
leaves `-representative-claim` and `-overage-status` off: with them, Claude Code puts its
own message in place of relay's. A cap several callers share (a tag's, relay's) says
`-overage-scope: group_pool`.
"""

from __future__ import annotations

import math

from relay import times
from relay.http.errors import Refused
from relay.http.messages import Response
from relay.limits.spend_caps import Cap, Hold, Standing

PREFIX = "anthropic-ratelimit-unified-"
# Fractions of a cap past which the answer says so (Claude Code's notice starts at 0.75).
THRESHOLDS = (0.75, 0.95)
PERIOD_NAMES = {"day": "daily", "week": "weekly", "month": "monthly"}


def _scope(standing: Standing) -> list[tuple[str, str]]:
    return [(PREFIX + "overage-scope", "group_pool")] if standing.cap.pooled else []


def _reset(standing: Standing) -> list[tuple[str, str]]:
    reset = str(int(standing.reset))
    return [(PREFIX + "reset", reset), (PREFIX + "overage-reset", reset)]


def standing_headers(held: Hold) -> list[tuple[str, str]]:
    """The fields for an answer the caller's caps allowed: the cap most used speaks."""
    standing = max(held.standings, key=lambda s: s.utilization)
    used = min(standing.utilization, 0.9999)  # a fraction below 1 while allowed
    passed = [threshold for threshold in THRESHOLDS if used >= threshold]
    status = "allowed_warning" if passed else "allowed"
    fields = [
        (PREFIX + "status", status),
        (PREFIX + "representative-claim", "overage"),
        (PREFIX + "overage-status", status),
        (PREFIX + "overage-utilization", f"{used:.4f}"),
        *_reset(standing),
        *_scope(standing),
    ]
    if passed:
        fields.append((PREFIX + "overage-surpassed-threshold", f"{passed[-1]:g}"))
    return fields


def with_standing(response: Response, held: Hold) -> Response:
    """The answer with the upstream's rate-limit fields replaced by the caller's standing."""
    kept = [(n, v) for n, v in response.headers if not n.lower().startswith("anthropic-ratelimit-")]
    return Response(response.status, kept + standing_headers(held), response.body)


def _spell(seconds: float) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days}d"] if days else []
    parts += [f"{hours}h"] if hours else []
    parts += [f"{minutes}m"] if minutes and not days else []
    return " ".join(parts)


def usd(amount: float) -> str:
    """Dollars to the cent, and a cap or spend below a cent to its first digits."""
    if amount == 0 or amount >= 0.01:
        return f"${amount:,.2f}"
    return f"${amount:.6f}".rstrip("0")


def _whose(cap: Cap) -> str:
    return " (relay's limit for each session, RELAY_SESSION_MAX_USD)" if cap.owner.kind == "session" else ""


def cap_reached(standing: Standing, now: float) -> Refused:
    """The refusal of a request whose cap has nothing left."""
    cap, wait = standing.cap, max(1, math.ceil(standing.reset - now))
    held = f", {usd(standing.held)} held by requests in flight" if standing.held > 0 else ""
    message = (
        f"{cap.owner} has reached its {PERIOD_NAMES[cap.period]} spend cap of {usd(cap.limit_usd)}{_whose(cap)} "
        f"({usd(standing.spent)} spent this {cap.period}{held}); it resets at "
        f"{times.iso(standing.reset)} (in {_spell(standing.reset - now)}). "
        f"Wait for the reset, or ask relay's administrator to raise the cap."
    )
    fields = (
        ("retry-after", str(wait)),
        ("x-should-retry", "false"),
        (PREFIX + "status", "rejected"),
        *_reset(standing),
        (PREFIX + "overage-utilization", "1"),
        (PREFIX + "overage-surpassed-threshold", "1"),
        (PREFIX + "overage-period", PERIOD_NAMES[cap.period]),
        (PREFIX + "overage-disabled-reason", "org_spend_cap_reached"),
        *_scope(standing),
    )
    return Refused(429, message, fields, error_type="billing_error")


def unreadable() -> Refused:
    """Failing closed: the caller's caps or their counters cannot be read."""
    return Refused(
        429,
        "relay cannot read the spend caps that apply to this request right now, so it does not send it; try again",
        (
            ("x-should-retry", "false"),
            (PREFIX + "status", "rejected"),
            (PREFIX + "overage-disabled-reason", "fetch_error"),
        ),
        error_type="billing_error",
    )
