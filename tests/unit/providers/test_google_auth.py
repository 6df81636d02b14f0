"""Vertex's credential: RS256 signatures that openssl verifies, the JWT the fake token
endpoint accepts, and one token exchange per isolate until shortly before expiry."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from devtools.fake_clouds import FakeClouds, generate_rsa_key
from relay.http.messages import Response
from relay.providers import google_auth


@pytest.fixture(scope="module")
def pem() -> str:
    return generate_rsa_key()


@pytest.fixture(scope="module")
def fake(pem):
    with FakeClouds({}, pem, ()) as clouds:
        yield clouds


def test_signatures_verify_with_openssl(pem):
    key = google_auth.rsa_key(pem)
    with tempfile.TemporaryDirectory() as folder:
        data, sig, public = Path(folder, "data"), Path(folder, "sig"), Path(folder, "public.pem")
        data.write_bytes(b"signed text")
        sig.write_bytes(key.sign_sha256(b"signed text"))
        public.write_text(
            subprocess.run(["openssl", "pkey", "-pubout"], input=pem, capture_output=True, text=True).stdout
        )
        verify = ["openssl", "dgst", "-sha256", "-verify", str(public), "-signature", str(sig), str(data)]
        assert subprocess.run(verify, capture_output=True).returncode == 0
        data.write_bytes(b"other text")
        assert subprocess.run(verify, capture_output=True).returncode != 0


def test_a_pkcs1_key_reads_as_the_same_key(pem):
    pkcs1 = subprocess.run(
        ["openssl", "pkey", "-traditional"], input=pem, capture_output=True, text=True, check=True
    ).stdout
    assert "BEGIN RSA PRIVATE KEY" in pkcs1
    assert google_auth.rsa_key(pkcs1) == google_auth.rsa_key(pem)


def test_the_assertion_claims(fake):
    account = google_auth.service_account(fake.service_account_json())
    token = google_auth.assertion(account, 1_700_000_000)
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims == {
        "iss": fake.client_email,
        "scope": google_auth.SCOPE,
        "aud": fake.url + "/token",
        "iat": 1_700_000_000,
        "exp": 1_700_003_600,
    }


class Loopback:
    """A transport that really calls the fake (urllib), counting the calls."""

    def __init__(self):
        self.calls = 0

    async def send(self, method, url, headers, body, timeout=None):
        self.calls += 1
        request = urllib.request.Request(url, data=body, headers=dict(headers), method=method)
        try:
            with urllib.request.urlopen(request) as answer:
                return Response(answer.status, list(answer.headers.items()), answer.read())
        except urllib.error.HTTPError as error:
            return Response(error.code, list(error.headers.items()), error.read())

    async def chunks(self, body):
        yield body


def test_a_token_is_exchanged_once_and_kept_until_shortly_before_it_expires(fake):
    transport, tokens = Loopback(), {}
    secret = fake.service_account_json()

    def token(now):
        return asyncio.run(google_auth.access_token("k1", secret, tokens, transport, now, 10))

    now = time.time()
    start = now - 3400  # the fake's token lives 3599 s: until now + 199, used until now - 101
    first = token(start)
    assert first in fake.tokens and token(start + 3000) == first and transport.calls == 1
    assert token(now) != first and transport.calls == 2


def test_a_refused_assertion_is_a_token_error_naming_no_secret(fake, pem):
    other = json.loads(fake.service_account_json())
    other["client_email"] = "someone-else@x.iam.gserviceaccount.com"
    with pytest.raises(google_auth.TokenError, match="answered 400 invalid_grant") as caught:
        asyncio.run(google_auth.access_token("k2", json.dumps(other), {}, Loopback(), time.time(), 10))
    assert pem.splitlines()[1] not in str(caught.value)
