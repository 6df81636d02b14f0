"""The ID token check against the provider's JWKS, with a key and signer of the fake IdP's
(devtools/fake_oidc.py), independent of relay's verifier."""

from __future__ import annotations

import asyncio
import json

import pytest

from devtools.fake_oidc import RsaKey, jws
from relay.http.messages import Response
from relay.identity import oidc, rsa_signatures
from relay.identity.gateway_settings import GatewaySettings
from relay.services import Services

ISSUER = "https://idp.example"
KEY = RsaKey.generate()
OTHER = RsaKey.generate()
SETTINGS = GatewaySettings(issuer=ISSUER, client_id="relay", client_secret="cs", session_secret="s" * 40)


class Idp:
    """A transport that answers discovery and the JWKS."""

    def __init__(self, keys):
        self.keys, self.sent = keys, []

    async def send(self, method, url, headers, body, timeout=None):
        self.sent.append(url)
        if url.endswith("/.well-known/openid-configuration"):
            document = {
                "issuer": ISSUER,
                "authorization_endpoint": ISSUER + "/authorize",
                "token_endpoint": ISSUER + "/token",
                "jwks_uri": ISSUER + "/jwks",
            }
        else:
            document = {"keys": [key.jwk() for key in self.keys]}
        return Response(200, [("content-type", "application/json")], json.dumps(document).encode())


# One moment for every token and check (tokens are made at collection, checked later).
NOW = 1_800_000_000


def _claims(**changes):
    now = NOW
    claims = {"iss": ISSUER, "aud": "relay", "sub": "u1", "email": "a@example.com", "groups": ["eng"]}
    return {**claims, "iat": now, "exp": now + 300, "nonce": "n1", **changes}


def _check(token, nonce="n1", keys=(KEY,)):
    services = Services(transport=Idp(list(keys)))
    return asyncio.run(oidc.check_id_token(SETTINGS, services, token, NOW, nonce))


def test_a_good_id_token_gives_the_person_and_groups():
    identity = _check(jws(KEY, _claims()))
    assert identity == oidc.Identity(f"{ISSUER} u1", "a@example.com", None, ("eng",))


@pytest.mark.parametrize(
    ("token", "why"),
    [
        (jws(OTHER, _claims(), {"alg": "RS256", "kid": KEY.kid}), "signature does not verify"),
        (jws(KEY, _claims(), {"alg": "HS256", "kid": KEY.kid}), "RS256 only"),
        (jws(KEY, _claims(), {"alg": "none"}), "RS256 only"),
        (jws(KEY, _claims(iss="https://evil.example")), "another issuer"),
        (jws(KEY, _claims(aud="someone-else")), "client id"),
        (jws(KEY, _claims(aud=["relay", "other"])), "authorized party"),
        (jws(KEY, _claims(exp=NOW - 600)), "expired"),
        (jws(KEY, _claims(nonce="n2")), "nonce"),
        (jws(KEY, _claims(email_verified=False)), "not verified"),
        (jws(OTHER, _claims()), "does not publish"),
        ("a.b", "not a JWS"),
        ("bm90.e30.AAAA", "malformed"),
    ],
)
def test_id_tokens_failing_a_check_are_refused(token, why):
    with pytest.raises(oidc.InvalidIdToken, match=why):
        _check(token)


def test_an_unknown_kid_fetches_the_keys_again_once_it_is_allowed():
    services = Services(transport=Idp([KEY]))
    now = NOW
    asyncio.run(oidc.check_id_token(SETTINGS, services, jws(KEY, _claims()), now, "n1"))
    services.transport.keys = [KEY, OTHER]  # the provider rotates in a new key
    identity = asyncio.run(oidc.check_id_token(SETTINGS, services, jws(OTHER, _claims()), now + 61, "n1"))
    assert identity.subject == f"{ISSUER} u1"
    assert sum(url.endswith("/jwks") for url in services.transport.sent) == 2


def test_rsa_verification_refuses_short_keys_and_wrong_lengths():
    small = RsaKey.generate(1024)
    assert not rsa_signatures.verify(small.n, small.e, b"m", small.sign(b"m"))
    assert rsa_signatures.verify(KEY.n, KEY.e, b"m", KEY.sign(b"m"))
    assert not rsa_signatures.verify(KEY.n, KEY.e, b"m", KEY.sign(b"m")[1:])
