"""Spend caps of signed-in people and IdP groups, through sign-in on workerd. A Worker of its
own (the fixtures of test_sign_in.py, made again for this module): sign-in's per-IP limit on
user-code tries would otherwise be shared with that module's sign-ins."""

from __future__ import annotations

import time

import anthropic
import httpx

from devtools.fake_upstream import REPLY_TEXT

from .conftest import ADMIN_TOKEN
from .test_sign_in import CACHE_SECONDS, _ask, _client, collector, gateway, idp, sign_in

__all__ = ["collector", "gateway", "idp"]  # module-scoped fixtures, made for this module


def test_a_persons_and_a_groups_spend_caps_stop_them_and_not_the_others(gateway, idp):
    """Caps for signed-in people: carol's own, then the sales group's (bob's), each refused
    with billing_error once spent, while the others go on."""
    admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    carol, bob, alice = (
        _client(gateway, sign_in(gateway, idp, name)["access_token"]) for name in ("carol", "bob", "alice")
    )
    for owner_kind, owner_id in (("person", "carol@example.com"), ("group", "sales")):
        made = httpx.post(
            gateway.url + "/admin/caps",
            json={"owner_kind": owner_kind, "owner_id": owner_id, "period": "day", "limit_usd": 0.000001},
            headers=admin,
            timeout=30,
        )
        assert made.status_code == 200, made.text
    time.sleep(CACHE_SECONDS + 0.5)
    for client, model, owner in (
        (carol, "claude-sonnet-4-5", "person carol@example.com"),
        (bob, "claude-haiku-4-5", "group sales"),
    ):
        assert _ask(client, model=model).content[0].text == REPLY_TEXT  # nothing spent yet: it goes
        deadline = time.monotonic() + 15
        while True:  # its cost is settled after the answer, off the client's path
            try:
                _ask(client, model=model)
            except anthropic.RateLimitError as refused:
                error = refused.body["error"]
                assert error["type"] == "billing_error" and owner in error["message"], error
                assert refused.response.headers["x-should-retry"] == "false"
                break
            assert time.monotonic() < deadline, f"{owner}'s cap never refused"
            time.sleep(0.5)
    assert _ask(alice).content[0].text == REPLY_TEXT  # engineering has no cap, nor alice
