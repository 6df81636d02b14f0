"""The per-session breaker: a session (X-Claude-Code-Session-Id, or the session in
metadata.user_id) that loops is stopped with a message saying why.

Two trips, each off unless set:

- RELAY_SESSION_MAX_REQUESTS requests in RELAY_SESSION_WINDOW_MINUTES: counted per session
  and UTC minute in D1 (one statement per request, which counts it and sums the window), so
  every isolate sees the same count. Refused attempts count too: a loop that keeps
  hammering stays stopped until it has been quiet for the window.
- RELAY_SESSION_MAX_USD in a UTC day: a spend cap of the session's own
  (spend_caps.Cap, owner kind "session"), held and settled as every cap is, so parallel
  requests of one session overspend it by at most one estimate.

Either answers 429 with `x-should-retry: false`: retrying is what a runaway loop does.
"""

from __future__ import annotations

import hashlib
import math

from relay.http.errors import Refused
from relay.limits.spend_caps import Cap, Owner
from relay.services import Database

# Session ids past this length are cut before hashing (they are the client's text).
SESSION_CHARS = 256


def session_key(session: str) -> str:
    return hashlib.sha256(session[:SESSION_CHARS].encode()).hexdigest()[:32]


def spend_cap(session: str, limit_usd: float) -> Cap:
    """The session's own daily spend cap (not stored: every session has it)."""
    return Cap(f"ses_{session_key(session)}", Owner("session", session[:SESSION_CHARS]), "day", limit_usd)


async def count(db: Database, session: str, limit: int, window_minutes: int, now: float) -> None:
    """Count one request of the session; Refused when it makes more than `limit` in the window."""
    minute = int(now // 60)
    rows = await db.all(
        "INSERT INTO session_requests (session_key, minute, requests) VALUES (?, ?, 1) "
        "ON CONFLICT (session_key, minute) DO UPDATE SET requests = requests + 1 "
        "RETURNING requests, "
        "(SELECT SUM(requests) FROM session_requests WHERE session_key = ? AND minute > ?) AS total",
        (session_key(session), minute, session_key(session), minute - window_minutes),
    )
    total = int(rows[0]["total"]) if rows else 0
    if rows and rows[0]["requests"] == 1:  # a session's first this minute: counts no window needs go
        await db.run("DELETE FROM session_requests WHERE minute <= ?", (minute - window_minutes,))
    if total > limit:
        wait = max(1, math.ceil((minute + 1) * 60 - now))
        raise Refused(
            429,
            f"session {session[:80]} sent {total} requests in {window_minutes} minutes, more than relay allows "
            f"one session ({limit}, RELAY_SESSION_MAX_REQUESTS): it looks like a loop, so relay stops it. "
            f"Pause it, or start a new session.",
            (("retry-after", str(wait)), ("x-should-retry", "false")),
        )
