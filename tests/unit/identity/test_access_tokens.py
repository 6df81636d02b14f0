"""relay's access tokens: what they claim, and every way a token that is not one is refused."""

from __future__ import annotations

import json

import pytest

from relay.identity import access_tokens, sealed
from relay.identity.access_tokens import BadToken, Claims, b64url, mint, verify

SECRET = "s" * 40
NOW = 1_800_000_000.0
CLAIMS = Claims("p_00000001", "s_0000000000000001", "a@example.com", "A", ("eng",), int(NOW) + 3600)


def _forged(header: dict, payload: dict, signature: bytes = b"x") -> str:
    return ".".join(b64url(json.dumps(part).encode()) for part in (header, payload)) + "." + b64url(signature)


def test_a_minted_token_verifies_to_its_claims_with_the_gateway_audience():
    token = mint(SECRET, "https://relay.example", CLAIMS, NOW)
    assert verify(SECRET, token, NOW) == CLAIMS
    payload = json.loads(access_tokens.unb64url(token.split(".")[1]))
    assert payload["aud"] == ["claude-gateway", "relay"] and payload["exp"] == int(NOW) + 3600


@pytest.mark.parametrize(
    ("token", "why"),
    [
        (mint(SECRET, "x", CLAIMS, NOW), "expired"),  # checked an hour later, below
        (mint("t" * 40, "x", CLAIMS, NOW), "does not verify"),
        (_forged({"alg": "none"}, {"sub": "p", "sid": "s", "aud": ["claude-gateway", "relay"], "exp": 2**40}), "HS256"),
        (_forged({"alg": "RS256"}, {"sub": "p"}), "HS256"),
        ("eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.AAAA", "malformed"),
        ("not a token", "not a relay access token"),
    ],
)
def test_tokens_relay_did_not_sign_or_that_expired_are_refused(token, why):
    with pytest.raises(BadToken, match=why):
        verify(SECRET, token, NOW + 3600)


def test_a_token_for_another_audience_is_refused_even_when_signed_with_the_same_key():
    head = b64url(json.dumps({"alg": "HS256"}).encode())
    body = b64url(json.dumps({"sub": "p", "sid": "s", "aud": "claude-gateway", "exp": 2**40}).encode())
    token = f"{head}.{body}.{b64url(access_tokens._signature(SECRET, head + '.' + body))}"
    with pytest.raises(BadToken, match="not for relay"):
        verify(SECRET, token, NOW)


def test_revocation_reads_an_expired_token():
    token = mint(SECRET, "x", CLAIMS, NOW)
    assert verify(SECRET, token, NOW + 7200, check_expiry=False).session_id == CLAIMS.session_id


def test_stored_hashes_are_keyed():
    assert access_tokens.keyed_hash(SECRET, "BCDFGHJK") != access_tokens.keyed_hash("t" * 40, "BCDFGHJK")
    assert "BCDFGHJK" not in access_tokens.keyed_hash(SECRET, "BCDFGHJK")


def test_a_sealed_token_opens_only_with_its_secret_and_unaltered():
    box = sealed.seal(SECRET, "idp-refresh-token-1")
    assert "idp-refresh-token-1" not in box and sealed.unseal(SECRET, box) == "idp-refresh-token-1"
    assert sealed.unseal("t" * 40, box) is None
    altered = box[:30] + ("A" if box[30] != "A" else "B") + box[31:]
    assert sealed.unseal(SECRET, altered) is None
    assert sealed.unseal(SECRET, "!!") is None
