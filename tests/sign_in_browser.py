"""The person's browser in sign-in tests: it opens relay's verification page, confirms the
code Claude Code shows, signs in at the fake IdP's login form and follows the redirect back
to relay's callback (httpx with cookies, as a browser keeps them)."""

from __future__ import annotations

import re

import httpx

from devtools.fake_oidc import FakeIdp


def sign_in(verification_uri: str, user_code: str, idp: FakeIdp, user: str, prefilled: bool = True) -> httpx.Response:
    """Relay's answer to the callback (200 "Signed in as ..." when all went well)."""
    base = verification_uri.rsplit("/", 1)[0]
    with httpx.Client(timeout=60) as browser:
        page = browser.get(verification_uri, params={"user_code": user_code} if prefilled else None)
        assert page.status_code == 200 and (user_code in page.text) == prefilled
        csrf = re.search(r'name=csrf value="([^"]+)"', page.text).group(1)
        to_idp = browser.post(verification_uri, data={"csrf": csrf, "user_code": user_code})
        assert to_idp.status_code == 302, to_idp.text
        assert to_idp.headers["location"].startswith(idp.issuer + "/authorize?")
        login = browser.get(to_idp.headers["location"])
        hidden = dict(re.findall(r'type=hidden name="([^"]+)" value="([^"]*)"', login.text))
        assert hidden["code_challenge_method"] == "S256" and hidden["nonce"]
        back = browser.post(idp.issuer + "/authorize", data={**hidden, "username": user})
        assert back.status_code == 302 and back.headers["location"].startswith(base + "/oauth/callback?")
        return browser.get(back.headers["location"])
