"""Spend caps: a limit in US dollars on what an owner may spend in a UTC day, week or month.

An owner is a kind and an id (`Owner`): a relay key, a billing tag (every key that carries
it shares the cap, a pool), a signed-in person (by email), an IdP group (its people share it,
a pool), or relay as a whole. A request is held to every cap of its key, its tag, its person
and group when signed in, and relay at once.
Windows are UTC: a day starts at midnight, a week on Monday at midnight, a month on its
first day at midnight; a cap resets when its next window starts.

Counting once, across isolates and locations, is D1's: a single primary database runs
every statement in one order, so the statement that admits a request sees every hold and
settlement committed before it, wherever they were made. (KV counts nothing: it is
eventually consistent and takes one write a second per key. A Durable Object would count
as exactly, at the price of a JavaScript class beside the Python Worker and its own
deployment; D1 is already bound, and a capped request costs one D1 call before it goes
upstream and two after it ended (its cost, then its hold let go), off the client's path.)

Before a request goes upstream, relay holds its estimated cost (`estimate`: its input at
the prompt-cache write price, which is above the plain input price, and its max_tokens of
output) against each of its caps, in one statement that admits it only if every cap has
something left (settled spend plus others' holds below the limit), and refuses it
otherwise. When its answer has ended (the client hung up or not: the meter counts what
passed), its real cost is added to each cap's counter and its hold removed.

How far over a cap concurrent requests can go: a request is admitted only while the cap's
settled spend plus everything held stays below the limit, and its own hold is then added;
settling replaces a hold with the real cost. So spend plus holds never passes the limit by
more than one request's estimate, and the spend of a window ends at most

    limit + the largest single estimate + what requests cost above their estimates

whatever the number of isolates or parallel streams. A request costs above its estimate
only when its input is denser than BYTES_PER_TOKEN (CJK text), it writes the 1-hour prompt
cache, or it names no output bound (OpenAI's max_tokens is optional: token_rates.DEFAULT_OUTPUT_TOKENS
is assumed). A hold whose settlement never ran (the isolate died mid-request) lapses after
HOLD_SECONDS, its cost unknown to the cap.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from relay import times
from relay.limits import token_rates
from relay.services import Database, IsolateState
from relay.usage import pricing

PERIODS = ("day", "week", "month")
# Kinds of owner a cap may have now; "person" and "group" arrive with sign-in.
OWNER_KINDS = ("key", "tag", "person", "group", "relay")
# A hold older than this no longer counts (the longest request relay expects).
HOLD_SECONDS = 3600
# The output a request that gives no max_tokens is assumed to ask for, in tokens.
_ID_BYTES = 4


@dataclass(frozen=True)
class Owner:
    kind: str
    id: str  # "" for relay

    def __str__(self) -> str:
        if self.kind == "relay":
            return "relay"
        name = {"key": "relay key", "tag": "billing tag", "session": "session"}.get(self.kind, self.kind)
        return f"{name} {self.id}"


@dataclass(frozen=True)
class Cap:
    id: str
    owner: Owner
    period: str
    limit_usd: float

    @property
    def pooled(self) -> bool:
        """Whether several callers share it (a tag's, relay's): Claude Code says so."""
        return self.owner.kind in ("tag", "relay", "group")


def window(period: str, now: float) -> tuple[float, float]:
    """The UTC window of `period` that holds `now`: (its start, the next one's)."""
    moment = datetime.fromtimestamp(now, UTC)
    day = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    if period == "day":
        start, end = day, day + timedelta(days=1)
    elif period == "week":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    else:
        start = day.replace(day=1)
        end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start.timestamp(), end.timestamp()


def owners(
    key_id: str, billing_tag: str | None, person_email: str | None = None, group: str | None = None
) -> tuple[Owner, ...]:
    """Whose caps a request of this caller counts against (a signed-in person's key_id is
    their person id)."""
    tag = (Owner("tag", billing_tag),) if billing_tag else ()
    person = (Owner("person", person_email),) if person_email else ()
    team = (Owner("group", group),) if group else ()
    return (Owner("key", key_id), *tag, *person, *team, Owner("relay", ""))


def _cap(row: dict[str, Any]) -> Cap:
    return Cap(row["id"], Owner(row["owner_kind"], row["owner_id"]), row["period"], float(row["limit_usd"]))


async def all_caps(db: Database) -> list[Cap]:
    rows = await db.all("SELECT id, owner_kind, owner_id, period, limit_usd FROM spend_caps ORDER BY id")
    return [_cap(row) for row in rows]


async def current_caps(db: Database, state: IsolateState, now: float, cache_seconds: float) -> list[Cap]:
    """Every cap, read at once, at most once per cache_seconds per isolate (they are few, and
    the admin API's to change): a new or changed cap holds everywhere within that time, at
    once in the isolate that changed it."""
    cached = state.spend_caps
    if cached is None or now - cached[0] >= cache_seconds:
        cached = state.spend_caps = (now, await all_caps(db))
    return cached[1]


def forget_caps(state: IsolateState) -> None:
    state.spend_caps = None


def estimate(parsed: Any, body_bytes: int, model: str | None, prices: tuple[Any, ...] = ()) -> float | None:
    """An upper bound, in dollars, on what a request can cost (see the module's docstring);
    None when its model has no price."""
    price = pricing.price_of(model, prices)
    if price is None:
        return None
    written, output = token_rates.estimate(parsed, body_bytes)  # the request's tokens, as its TPM limit counts them
    counts = {"cache_creation_tokens": written, "output_tokens": output}
    return pricing.usd(pricing.cost(price, counts)[0])


@dataclass(frozen=True)
class Standing:
    """A cap in its current window: settled spend and what requests in flight hold."""

    cap: Cap
    start: float
    reset: float
    spent: float
    held: float

    @property
    def spent_out(self) -> bool:
        return self.spent + self.held >= self.cap.limit_usd

    @property
    def utilization(self) -> float:
        """Settled spend as a fraction of the limit (a cap of 0 is fully used)."""
        return 1.0 if self.cap.limit_usd <= 0 else self.spent / self.cap.limit_usd


@dataclass
class Hold:
    """A request's estimate held against its caps, until it is settled."""

    id: str
    amount: float
    standings: list[Standing]  # each cap as it stood when the hold was taken
    alerts: Any = None  # alerts.Alerting, when webhooks are configured


class CapReached(Exception):
    """A request's cap has nothing left; `standing` is the cap that stops it."""

    def __init__(self, standing: Standing) -> None:
        super().__init__(str(standing.cap.owner))
        self.standing = standing


def _windows(caps: list[Cap], now: float) -> dict[str, tuple[float, float]]:
    return {cap.id: window(cap.period, now) for cap in caps}


_STANDING = """
standing AS (
    SELECT json_extract(j.value, '$[0]') AS cap_id,
           json_extract(j.value, '$[1]') AS window_start,
           json_extract(j.value, '$[2]') AS limit_usd,
           COALESCE((SELECT c.spent_usd FROM spend_counters c
                     WHERE c.cap_id = json_extract(j.value, '$[0]')
                       AND c.window_start = json_extract(j.value, '$[1]')), 0) AS spent_usd,
           COALESCE((SELECT SUM(h.amount_usd) FROM spend_holds h
                     WHERE h.cap_id = json_extract(j.value, '$[0]')
                       AND h.window_start = json_extract(j.value, '$[1]')
                       AND h.created_at > ?), 0) AS held_usd
    FROM json_each(?) j
)"""


async def hold(db: Database, caps: list[Cap], amount: float, now: float, again: bool = True) -> Hold:
    """Hold `amount` against every cap, or raise CapReached naming the one with nothing
    left (the most used, if several). One D1 statement admits and holds, so no request
    is admitted on a standing another has changed meanwhile."""
    windows = _windows(caps, now)
    spec = json.dumps([[cap.id, windows[cap.id][0], cap.limit_usd] for cap in caps])
    hold_id = secrets.token_hex(8)
    rows = await db.all(
        f"WITH {_STANDING} "
        "INSERT INTO spend_holds (id, cap_id, window_start, amount_usd, created_at, spent_usd, held_usd) "
        "SELECT ?, cap_id, window_start, ?, ?, spent_usd, held_usd FROM standing "
        "WHERE NOT EXISTS (SELECT 1 FROM standing WHERE spent_usd + held_usd >= limit_usd) "
        "RETURNING cap_id, spent_usd, held_usd",
        (now - HOLD_SECONDS, spec, hold_id, amount, now),
    )
    by_id = {cap.id: cap for cap in caps}
    if rows:
        taken = [
            Standing(by_id[row["cap_id"]], *windows[row["cap_id"]], float(row["spent_usd"]), float(row["held_usd"]))
            for row in rows
        ]
        return Hold(hold_id, amount, taken)
    now_standing = await standings(db, caps, now)
    spent = [standing for standing in now_standing if standing.spent_out]
    if not spent and again:  # holds let go between the two statements: one more try
        return await hold(db, caps, amount, now, again=False)
    raise CapReached(max(spent or now_standing, key=lambda s: (s.spent + s.held) / max(s.cap.limit_usd, 1e-12)))


async def standings(db: Database, caps: list[Cap], now: float) -> list[Standing]:
    """Each cap as it stands in its current window."""
    if not caps:
        return []
    windows = _windows(caps, now)
    spec = json.dumps([[cap.id, windows[cap.id][0], cap.limit_usd] for cap in caps])
    rows = await db.all(
        f"WITH {_STANDING} SELECT cap_id, spent_usd, held_usd FROM standing", (now - HOLD_SECONDS, spec)
    )
    by_id = {cap.id: cap for cap in caps}
    return [
        Standing(by_id[row["cap_id"]], *windows[row["cap_id"]], float(row["spent_usd"]), float(row["held_usd"]))
        for row in rows
    ]


async def settle(db: Database, held: Hold, cost: float | None, now: float) -> list[Standing]:
    """Count a request's real cost (None: unpriced or no usage, nothing) against the
    windows it was held in, then let its hold go (and any that have lapsed). In that
    order: between the two, the cost counts twice, never not at all. Returns the caps'
    settled spend after it (held: 0), for the alerts; none when it cost nothing."""
    settled = await add_cost(db, held, cost)
    await release(db, held, now)
    return settled


async def add_cost(db: Database, held: Hold, cost: float | None) -> list[Standing]:
    """The first half of `settle` (each half may be made again on its own if it fails)."""
    rows: list[dict[str, Any]] = []
    if cost:
        rows = await db.all(
            "INSERT INTO spend_counters (cap_id, window_start, spent_usd) "
            "SELECT cap_id, window_start, ? FROM spend_holds WHERE id = ? AND 1 "
            "ON CONFLICT (cap_id, window_start) DO UPDATE SET spent_usd = spent_usd + excluded.spent_usd "
            "RETURNING cap_id, spent_usd",
            (float(cost), held.id),
        )
    by_id = {standing.cap.id: standing for standing in held.standings}
    return [
        Standing(
            by_id[row["cap_id"]].cap,
            by_id[row["cap_id"]].start,
            by_id[row["cap_id"]].reset,
            float(row["spent_usd"]),
            0.0,
        )
        for row in rows
        if row["cap_id"] in by_id
    ]


async def release(db: Database, held: Hold, now: float) -> None:
    """The second half of `settle`: the hold goes, and any that have lapsed."""
    await db.run("DELETE FROM spend_holds WHERE id = ? OR created_at < ?", (held.id, now - HOLD_SECONDS))


def new_cap_id() -> str:
    return "cap_" + secrets.token_hex(_ID_BYTES)


async def set_cap(db: Database, owner: Owner, period: str, limit_usd: float, now: float) -> dict[str, Any]:
    """Create the owner's cap for `period`, or change its limit: one cap per owner and period."""
    await db.run(
        "INSERT INTO spend_caps (id, owner_kind, owner_id, period, limit_usd, created_at) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (owner_kind, owner_id, period) DO UPDATE SET limit_usd = excluded.limit_usd",
        (new_cap_id(), owner.kind, owner.id, period, float(limit_usd), times.iso(now)),
    )
    rows = await db.all(
        "SELECT id, owner_kind, owner_id, period, limit_usd FROM spend_caps "
        "WHERE owner_kind = ? AND owner_id = ? AND period = ?",
        (owner.kind, owner.id, period),
    )
    return record((await standings(db, [_cap(rows[0])], now))[0])


async def delete_cap(db: Database, cap_id: str) -> bool:
    rows = await db.all("DELETE FROM spend_caps WHERE id = ? RETURNING id", (cap_id,))
    if rows:
        await db.run("DELETE FROM spend_counters WHERE cap_id = ?", (cap_id,))
    return bool(rows)


def record(standing: Standing) -> dict[str, Any]:
    """A cap and its standing as the admin API shows them."""
    cap = standing.cap
    return {
        "id": cap.id,
        "owner_kind": cap.owner.kind,
        "owner_id": cap.owner.id,
        "period": cap.period,
        "limit_usd": cap.limit_usd,
        "window_start": times.iso(standing.start),
        "resets_at": times.iso(standing.reset),
        "spent_usd": round(standing.spent, 6),
        "held_usd": round(standing.held, 6),
    }
