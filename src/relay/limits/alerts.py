"""Alerts: a JSON event POSTed to the configured webhooks when a spend cap's window crosses
a threshold (RELAY_ALERT_THRESHOLDS, percent of the limit: 50, 80, 100 by default).

Checked when a request's cost is settled, which runs after its answer has ended
(ctx.waitUntil), never on the client's path. Each threshold of each cap's window is sent
once: the settlement that crosses it claims a row in D1 (`cap_alerts`, one per cap, window
and threshold; the insert that finds it there claims nothing), so two isolates crossing at
once send it once between them. A webhook that fails (no answer, 429 or 5xx) is tried again
up to ATTEMPTS times, ATTEMPT_DELAY_SECONDS apart and longer each time; each outcome is
logged (the webhook by its host only: an incoming-webhook URL is a credential).

The body is relay's JSON event, or with RELAY_ALERT_FORMAT=slack, a Slack incoming-webhook
message (`{"text": ...}`).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from urllib.parse import urlsplit

from relay import times
from relay.limits.cap_headers import PERIOD_NAMES, usd
from relay.limits.spend_caps import Standing
from relay.log import log
from relay.services import Services

ATTEMPTS = 3
ATTEMPT_DELAY_SECONDS = 1.0
TIMEOUT_SECONDS = 10.0
FORMATS = ("json", "slack")


@dataclass(frozen=True)
class Alerting:
    webhooks: tuple[str, ...]
    thresholds: tuple[int, ...]  # percent, ascending
    format: str = "json"


def event(standing: Standing, threshold: int) -> dict[str, object]:
    cap = standing.cap
    return {
        "type": "spend_cap_threshold",
        "cap": cap.id,
        "owner": {"kind": cap.owner.kind, "id": cap.owner.id},
        "period": cap.period,
        "window_start": times.iso(standing.start),
        "resets_at": times.iso(standing.reset),
        "threshold_percent": threshold,
        "spent_usd": round(standing.spent, 6),
        "limit_usd": cap.limit_usd,
    }


def body(standing: Standing, threshold: int, form: str) -> bytes:
    if form == "slack":
        cap = standing.cap
        text = (
            f"relay: {cap.owner} has used {threshold}% of its {PERIOD_NAMES[cap.period]} spend cap "
            f"({usd(standing.spent)} of {usd(cap.limit_usd)}; resets {times.iso(standing.reset)})"
        )
        return json.dumps({"text": text}).encode()
    return json.dumps(event(standing, threshold)).encode()


def crossed(standing: Standing, thresholds: tuple[int, ...]) -> list[int]:
    limit = standing.cap.limit_usd
    return [t for t in thresholds if limit > 0 and standing.spent >= limit * t / 100]


async def after_settlement(services: Services, alerting: Alerting, settled: list[Standing]) -> None:
    """Send each threshold the settled spend has crossed and no one has sent yet."""
    if services.db is None:
        return
    for standing in settled:
        for threshold in crossed(standing, alerting.thresholds):
            claimed = await services.db.all(
                "INSERT INTO cap_alerts (cap_id, window_start, threshold, sent_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING RETURNING cap_id",
                (standing.cap.id, standing.start, threshold, times.iso(services.clock())),
            )
            if claimed:
                payload = body(standing, threshold, alerting.format)
                await asyncio.gather(*(_post(services, url, payload, standing, threshold) for url in alerting.webhooks))


async def _post(services: Services, url: str, payload: bytes, standing: Standing, threshold: int) -> None:
    host = urlsplit(url).hostname or "?"
    what = f"alert {standing.cap.id} {threshold}%"
    for attempt in range(1, ATTEMPTS + 1):
        problem = None
        try:
            answer = await services.transport.send(
                "POST", url, [("content-type", "application/json")], payload, TIMEOUT_SECONDS
            )
            await services.transport.discard(answer.body)
            if answer.status < 300:
                log(f"{what} sent to {host}")
                return
            problem = f"status {answer.status}"
            if answer.status < 500 and answer.status != 429:  # the webhook refuses it: again will not help
                break
        except Exception as exc:
            problem = type(exc).__name__
        if attempt < ATTEMPTS:
            await asyncio.sleep(ATTEMPT_DELAY_SECONDS * attempt)
    log(f"{what} not delivered to {host} ({problem})")
