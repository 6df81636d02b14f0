"""Cap alerts: each threshold of a window sent once, retried, in either body shape."""

from __future__ import annotations

import asyncio
import json

from relay.http.messages import Response
from relay.limits import alerts, spend_caps
from relay.limits.alerts import Alerting
from relay.limits.spend_caps import Owner
from relay.services import Services
from tests.fakes.platform import SqliteDatabase

NOW = 1_800_000_000.0


class Webhook:
    """Answers the statuses given in turn (then 200), recording each POST."""

    def __init__(self, *statuses):
        self.statuses = list(statuses)
        self.posts: list[tuple[str, dict]] = []

    async def send(self, method, url, headers, body, timeout=None):
        assert method == "POST" and dict(headers)["content-type"] == "application/json"
        self.posts.append((url, json.loads(body)))
        status = self.statuses.pop(0) if self.statuses else 200
        if status == 0:
            raise ConnectionError("unreachable")
        return Response(status, [], b"")

    async def discard(self, body):
        pass


def _spend(services, cap, cost):
    async def run():
        held = await spend_caps.hold(services.db, [cap], 0.01, NOW)
        settled = await spend_caps.settle(services.db, held, cost, NOW)
        await alerts.after_settlement(services, ALERTING, settled)

    asyncio.run(run())


ALERTING = Alerting(("https://hooks.example/a", "https://hooks.example/b"), (50, 80, 100))


def _cap(services, limit=1.0):
    asyncio.run(spend_caps.set_cap(services.db, Owner("tag", "team-a"), "week", limit, NOW))
    return asyncio.run(spend_caps.all_caps(services.db))[0]


def test_each_threshold_is_sent_once_per_window_to_every_webhook(monkeypatch):
    services = Services(transport=Webhook(), db=SqliteDatabase())
    cap = _cap(services)
    _spend(services, cap, 0.3)
    assert services.transport.posts == []
    _spend(services, cap, 0.3)  # 60%: crosses 50
    _spend(services, cap, 0.1)  # 70%: nothing new
    _spend(services, cap, 0.5)  # 120%: crosses 80 and 100 at once
    sent = [(url, post["threshold_percent"]) for url, post in services.transport.posts]
    assert sorted(sent) == sorted((url, t) for url in ALERTING.webhooks for t in (50, 80, 100))
    event = services.transport.posts[-1][1]
    assert event["type"] == "spend_cap_threshold" and event["owner"] == {"kind": "tag", "id": "team-a"}
    assert (event["period"], event["limit_usd"]) == ("week", 1.0) and event["spent_usd"] >= 1.0
    assert event["resets_at"] > event["window_start"]


def test_another_isolate_finds_the_threshold_taken():
    db = SqliteDatabase()
    first, second = Services(transport=Webhook(), db=db), Services(transport=Webhook(), db=db)
    cap = _cap(first)
    _spend(first, cap, 0.6)
    _spend(second, cap, 0.01)
    assert len(first.transport.posts) == 2 and second.transport.posts == []


def test_a_failing_webhook_is_tried_again_and_a_refusing_one_is_not(monkeypatch):
    monkeypatch.setattr(alerts, "ATTEMPT_DELAY_SECONDS", 0)
    services = Services(transport=Webhook(503, 0, 200), db=SqliteDatabase())
    one = Alerting(("https://hooks.example/a",), (50,))
    cap = _cap(services)

    async def spend():
        held = await spend_caps.hold(services.db, [cap], 0.01, NOW)
        await alerts.after_settlement(services, one, await spend_caps.settle(services.db, held, 0.6, NOW))

    asyncio.run(spend())
    assert len(services.transport.posts) == 3  # 503, unreachable, then delivered
    refusing = Services(transport=Webhook(404), db=SqliteDatabase())
    cap = _cap(refusing)
    services = refusing
    asyncio.run(spend())
    assert len(refusing.transport.posts) == 1


def test_the_slack_shape_is_one_line_of_text():
    standing = spend_caps.Standing(spend_caps.Cap("cap_1", Owner("key", "rk_1"), "day", 10.0), NOW, NOW + 86400, 8.2, 0)
    text = json.loads(alerts.body(standing, 80, "slack"))["text"]
    assert text.startswith("relay: relay key rk_1 has used 80% of its daily spend cap ($8.20 of $10.00")


def test_the_alert_and_breaker_settings_are_read_and_checked():
    from relay.config import ConfigError, Settings

    settings = Settings.from_env(
        {
            "RELAY_ALERT_WEBHOOKS": "https://hooks.example/a, https://hooks.example/b",
            "RELAY_ALERT_THRESHOLDS": "100,25,80",
            "RELAY_ALERT_FORMAT": "Slack",
            "RELAY_SESSION_MAX_USD": "2.5",
        }
    )
    assert settings.alerting == Alerting(("https://hooks.example/a", "https://hooks.example/b"), (25, 80, 100), "slack")
    assert settings.session_max_usd == 2.5 and Settings.from_env({}).alerting is None
    for env, problem in (
        ({"RELAY_ALERT_WEBHOOKS": "hooks.example"}, "RELAY_ALERT_WEBHOOKS must be http(s) URLs"),
        ({"RELAY_ALERT_THRESHOLDS": "50,eighty"}, "RELAY_ALERT_THRESHOLDS must be whole percentages"),
        ({"RELAY_ALERT_THRESHOLDS": "0"}, "from 1 to 1000"),
        ({"RELAY_ALERT_FORMAT": "xml"}, "RELAY_ALERT_FORMAT must be one of json, slack"),
        ({"RELAY_SESSION_MAX_USD": "-1"}, "non-negative"),
        ({"RELAY_SESSION_MAX_USD": "nan"}, "non-negative"),
    ):
        try:
            Settings.from_env(env)
        except ConfigError as exc:
            assert problem in str(exc)
        else:
            raise AssertionError(f"{env} was accepted")
