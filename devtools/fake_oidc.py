"""A fake OpenID Connect identity provider for tests and demos, on loopback.

It serves discovery, a JWKS (one RSA key it makes at start), an authorization endpoint
with a one-field login form (the person types their user name), and a token endpoint
(authorization code with PKCE S256 and client_secret_basic or _post; refresh tokens that
rotate). ID tokens are RS256, signed here with this module's own code, independent of
relay's verifier. The test manages the directory: `add_user`, `set_groups` and
`remove_user` (whose refresh tokens then get `invalid_grant`, as at a real IdP when
someone leaves). Every token it issues is listed in `issued` (for the suite's scan for
secrets), and each request it served in `seen` (path, form).

Run standalone: `python -m devtools.fake_oidc` (port 8790; users alice and bob).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

CLIENT_ID = "relay-test-client"
_SHA256_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _probable_prime(bits: int) -> int:
    while True:
        candidate = secrets.randbits(bits) | (1 << (bits - 1)) | (1 << (bits - 2)) | 1
        if all(candidate % p for p in (3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)) and _miller_rabin(candidate):
            return candidate


def _miller_rabin(n: int, rounds: int = 32) -> bool:
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for _ in range(rounds):
        x = pow(secrets.randbelow(n - 3) + 2, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


@dataclass
class RsaKey:
    n: int
    e: int
    d: int
    kid: str

    @classmethod
    def generate(cls, bits: int = 2048) -> RsaKey:
        e = 65537
        while True:
            p, q = _probable_prime(bits // 2), _probable_prime(bits // 2)
            phi = (p - 1) * (q - 1)
            if p != q and phi % e and (p * q).bit_length() == bits:
                return cls(p * q, e, pow(e, -1, phi), secrets.token_hex(4))

    def sign(self, message: bytes) -> bytes:
        size = (self.n.bit_length() + 7) // 8
        digest = _SHA256_PREFIX + hashlib.sha256(message).digest()
        encoded = b"\x00\x01" + b"\xff" * (size - 3 - len(digest)) + b"\x00" + digest
        return pow(int.from_bytes(encoded, "big"), self.d, self.n).to_bytes(size, "big")

    def jwk(self) -> dict:
        size = (self.n.bit_length() + 7) // 8
        return {
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": _b64(self.n.to_bytes(size, "big")),
            "e": _b64(self.e.to_bytes(3, "big")),
        }


def jws(key: RsaKey, claims: dict, header: dict | None = None) -> str:
    head = _b64(json.dumps(header or {"alg": "RS256", "typ": "JWT", "kid": key.kid}).encode())
    body = _b64(json.dumps(claims).encode())
    return f"{head}.{body}.{_b64(key.sign(f'{head}.{body}'.encode()))}"


@dataclass
class User:
    name: str
    email: str
    groups: list[str]


@dataclass
class _Code:
    user: str
    client_id: str
    redirect_uri: str
    nonce: str | None
    challenge: str | None
    expires: float


@dataclass
class FakeIdp:
    client_secret: str
    client_id: str = CLIENT_ID
    port: int = 0
    users: dict[str, User] = field(default_factory=dict)
    issued: list[str] = field(default_factory=list)
    seen: list[tuple[str, dict]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.key = RsaKey.generate()
        self._codes: dict[str, _Code] = {}
        self._refresh: dict[str, str] = {}  # refresh token -> user name
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # --- the directory, as an admin changes it ---------------------------------------

    def add_user(self, name: str, email: str, groups: list[str]) -> None:
        self.users[name] = User(name, email, list(groups))

    def set_groups(self, name: str, groups: list[str]) -> None:
        self.users[name].groups = list(groups)

    def remove_user(self, name: str) -> None:
        with self._lock:
            self.users.pop(name, None)
            self._refresh = {token: user for token, user in self._refresh.items() if user != name}

    # --- the server --------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeIdp:
        idp = self

        class Handler(_Handler):
            provider = idp

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeIdp:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- what the handler asks ----------------------------------------------------------

    def _token(self, kept: bool = True) -> str:
        """A new random token; `kept` ones (refresh and access tokens, not one-time codes,
        which a request URL carries into logs) are listed in `issued`."""
        token = secrets.token_urlsafe(24)
        if kept:
            self.issued.append(token)
        return token

    def id_token(self, user: User, nonce: str | None) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.client_id,
            "sub": "sub-" + user.name,
            "email": user.email,
            "email_verified": True,
            "name": user.name.title(),
            "groups": user.groups,
            "iat": now,
            "exp": now + 300,
        }
        if nonce is not None:
            claims["nonce"] = nonce
        return jws(self.key, claims)

    def new_code(self, user: str, query: dict) -> str:
        code = self._token(kept=False)
        with self._lock:
            self._codes[code] = _Code(
                user,
                query.get("client_id", ""),
                query.get("redirect_uri", ""),
                query.get("nonce"),
                query.get("code_challenge"),
                time.time() + 60,
            )
        return code

    def grant(self, form: dict, client: tuple[str, str] | None) -> tuple[int, dict]:
        if client != (self.client_id, self.client_secret):
            return 401, {"error": "invalid_client"}
        kind = form.get("grant_type")
        with self._lock:
            if kind == "authorization_code":
                code = self._codes.pop(form.get("code", ""), None)
                if code is None or code.expires < time.time() or code.redirect_uri != form.get("redirect_uri"):
                    return 400, {"error": "invalid_grant"}
                verifier = form.get("code_verifier", "")
                if code.challenge != _b64(hashlib.sha256(verifier.encode()).digest()):
                    return 400, {"error": "invalid_grant", "error_description": "PKCE verification failed"}
                user, nonce = self.users.get(code.user), code.nonce
            elif kind == "refresh_token":
                name = self._refresh.pop(form.get("refresh_token", ""), None)
                user, nonce = (self.users.get(name) if name else None), None
            else:
                return 400, {"error": "unsupported_grant_type"}
            if user is None:
                return 400, {"error": "invalid_grant"}
            refresh = self._token()
            self._refresh[refresh] = user.name
        access = self._token()
        return 200, {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": 300,
            "refresh_token": refresh,
            "id_token": self.id_token(user, nonce),
        }


class _Handler(BaseHTTPRequestHandler):
    provider: FakeIdp

    def log_message(self, *args):
        pass

    def _send(self, status: int, body: bytes, content_type: str, *extra: tuple[str, str]) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: dict) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", ("cache-control", "no-store"))

    def _form(self) -> dict:
        size = int(self.headers.get("content-length") or 0)
        return dict(parse_qsl(self.rfile.read(size).decode(), keep_blank_values=True))

    def do_GET(self):
        idp, url = self.provider, urlsplit(self.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        idp.seen.append((f"GET {url.path}", query))
        if url.path == "/.well-known/openid-configuration":
            self._json(
                200,
                {
                    "issuer": idp.issuer,
                    "authorization_endpoint": idp.issuer + "/authorize",
                    "token_endpoint": idp.issuer + "/token",
                    "jwks_uri": idp.issuer + "/jwks",
                    "response_types_supported": ["code"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "code_challenge_methods_supported": ["S256"],
                    "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                },
            )
        elif url.path == "/jwks":
            self._json(200, {"keys": [idp.key.jwk()]})
        elif url.path == "/authorize":
            if query.get("client_id") != idp.client_id or query.get("response_type") != "code":
                self._send(400, b"unknown client or response type", "text/plain")
                return
            fields = "".join(
                f'<input type=hidden name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in query.items()
            )
            page = f'<form method=post action="/authorize">{fields}<input name=username><button>Sign in</button></form>'
            self._send(200, page.encode(), "text/html; charset=utf-8")
        else:
            self._send(404, b"not found", "text/plain")

    def do_POST(self):
        idp, path = self.provider, urlsplit(self.path).path
        form = self._form()
        idp.seen.append((f"POST {path}", {k: v for k, v in form.items() if k not in ("code", "refresh_token")}))
        if path == "/authorize":
            user = form.get("username", "")
            if user not in idp.users:
                self._send(403, b"no such user", "text/plain")
                return
            code = idp.new_code(user, form)
            target = form["redirect_uri"] + "?" + urlencode({"code": code, "state": form.get("state", "")})
            self._send(302, b"", "text/plain", ("location", target))
        elif path == "/token":
            status, payload = idp.grant(form, self._client(form))
            self._json(status, payload)
        else:
            self._send(404, b"not found", "text/plain")

    def _client(self, form: dict) -> tuple[str, str] | None:
        scheme, _, value = (self.headers.get("authorization") or "").partition(" ")
        if scheme.lower() == "basic":
            user, _, password = base64.b64decode(value).decode().partition(":")
            return unquote(user), unquote(password)
        if "client_id" in form:
            return form["client_id"], form.get("client_secret", "")
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--client-secret", default="relay-demo-oidc-secret")
    args = parser.parse_args()
    idp = FakeIdp(args.client_secret, port=args.port).start()
    idp.add_user("alice", "alice@example.com", ["engineering"])
    idp.add_user("bob", "bob@example.com", ["sales"])
    print(f"fake IdP at {idp.issuer} (client id {idp.client_id}); users alice, bob")
    threading.Event().wait()


if __name__ == "__main__":
    main()
