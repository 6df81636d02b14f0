"""Fake Claude clouds for tests: Amazon Bedrock, Google Vertex AI (and its token endpoint)
and Microsoft Foundry, on one loopback server, each checking what the real one would.

- Bedrock (`POST /model/<id>/invoke`, `/invoke-with-response-stream`, `/count-tokens`): the SigV4
  signature is recomputed from the request as it arrived (path, query, signed fields, body
  hash) with the credentials the test gave, and a bad one is a 403 as AWS answers it. The
  body must have `anthropic_version: bedrock-2023-05-31` and no `model`. A stream is real
  AWS event-stream (prelude, CRCs, base64 `bytes` payloads), each message written in three
  pieces cut inside its prelude, headers and payload, two messages sharing one write.
- Vertex: `POST /token` checks the RS256 JWT (signature verified by `openssl` with the
  service account's public key; iss, aud, scope, lifetime) and issues an access token;
  `.../publishers/anthropic/models/<m>:rawPredict` / `:streamRawPredict` want one of its
  tokens and `anthropic_version: vertex-2023-10-16`, and answer as Anthropic does.
- Foundry (`POST /anthropic/v1/messages`): the Anthropic API behind an `api-key` field.

Behaviour per request, from header fields relay forwards: `x-fake-<cloud>-scenario:
status-<n>` (an error as that cloud words it, naming a made-up account), `midstream-throttle`
(Bedrock: a stream that starts, then a throttlingException message); `x-fake-tool-calls: on`
(call the first tool offered, then answer `Tool said: <result>`); `x-fake-events: N`;
`x-fake-cache-read: N` / `x-fake-cache-write: M` (usage reports them); `x-fake-gate: <id>`
(Bedrock: send the first message, then wait until the test calls `release(<id>)`).
"""

from __future__ import annotations

import base64
import binascii
import calendar
import hashlib
import hmac
import json
import secrets
import struct
import subprocess
import tempfile
import time
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote

from devtools.fake_upstream import GATE_TIMEOUT_S, REPLY_TEXT, FakeServer, Seen, _chunks

ACCOUNT_ARN = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/fake"  # in error messages only
GOOGLE_PROJECT_NUMBER = "987654321098"
CLOCK_SKEW_SECONDS = 300


def event_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message, string-valued header fields only."""
    encoded = b"".join(
        bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(value.encode())) + value.encode()
        for name, value in headers.items()
    )
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    head = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded + payload
    return head + struct.pack(">I", zlib.crc32(head))


def chunk_message(event: dict) -> bytes:
    payload = json.dumps({"bytes": base64.b64encode(json.dumps(event).encode()).decode()}).encode()
    return event_message(
        {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}, payload
    )


def exception_message(name: str, message: str) -> bytes:
    headers = {":exception-type": name, ":content-type": "application/json", ":message-type": "exception"}
    return event_message(headers, json.dumps({"message": message}).encode())


def sigv4_problem(aws: dict[str, tuple[str, str | None]], seen: Seen) -> str | None:
    """Why the request's SigV4 signature does not hold, or None (recomputed from the
    request as it arrived, per AWS's specification)."""
    authorization = seen.header("authorization") or ""
    if not authorization.startswith("AWS4-HMAC-SHA256 "):
        return "missing SigV4 authorization"
    fields = dict(part.strip().split("=", 1) for part in authorization[len("AWS4-HMAC-SHA256 ") :].split(","))
    key_id, date, region, service, terminator = fields["Credential"].split("/")
    known = aws.get(key_id)
    if known is None or service != "bedrock" or terminator != "aws4_request":
        return "The security token included in the request is invalid."
    secret, session_token = known
    if session_token is not None and seen.header("x-amz-security-token") != session_token:
        return "The security token included in the request is invalid."
    when = seen.header("x-amz-date") or ""
    stamp = calendar.timegm(time.strptime(when, "%Y%m%dT%H%M%SZ"))
    if abs(stamp - time.time()) > CLOCK_SKEW_SECONDS or when[:8] != date:
        return "Signature expired"
    payload_hash = hashlib.sha256(seen.body).hexdigest()
    if seen.header("x-amz-content-sha256") not in (None, payload_hash):
        return "The provided x-amz-content-sha256 header does not match what was computed."
    names = fields["SignedHeaders"].split(";")
    if "host" not in names or (session_token is not None and "x-amz-security-token" not in names):
        return "host and x-amz-security-token must be signed"
    path, _, query = seen.path.partition("?")
    canonical_uri = "/".join(quote(segment, safe="-_.~") for segment in path.split("/"))
    pairs = sorted(
        (quote(unquote(n), safe="-_.~"), quote(unquote(v), safe="-_.~"))
        for n, _, v in (p.partition("=") for p in query.split("&") if p)
    )
    canonical_headers = "".join(f"{n}:{' '.join((seen.header(n) or '').split())}\n" for n in names)
    canonical = "\n".join(
        [
            "POST",
            canonical_uri,
            "&".join(f"{n}={v}" for n, v in pairs),
            canonical_headers,
            ";".join(names),
            payload_hash,
        ]
    )
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{when}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, fields.get("Signature", "")):
        return "The request signature we calculated does not match the signature you provided."
    return None


def generate_rsa_key() -> str:
    """A fresh 2048-bit RSA private key, PKCS #8 PEM (as Google issues them), from openssl."""
    done = subprocess.run(
        ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        capture_output=True,
        check=True,
        text=True,
    )
    return done.stdout


def _public_key(private_pem: str) -> str:
    done = subprocess.run(["openssl", "pkey", "-pubout"], input=private_pem, capture_output=True, check=True, text=True)
    return done.stdout


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def anthropic_reply(request: dict, seen: Seen, model: str) -> tuple[dict, list[dict]]:
    """(the message, its stream's events) the fake model answers `request` with."""
    messages = request.get("messages") or [{}]
    last = messages[-1] if isinstance(messages[-1], dict) else {}
    content = last.get("content")
    results = (
        [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]
        if isinstance(content, list)
        else []
    )
    tools = request.get("tools") or []
    block: dict
    if seen.header("x-fake-tool-calls") == "on" and results:
        result = results[0].get("content")
        if isinstance(result, list):
            result = "".join(part.get("text", "") for part in result)
        text, block = f"Tool said: {result}", {}
    elif seen.header("x-fake-tool-calls") == "on" and tools:
        required = (tools[0].get("input_schema") or {}).get("required") or []
        block = {
            "type": "tool_use",
            "id": "toolu_fake_1",
            "name": tools[0]["name"],
            "input": {k: "fake" for k in required},
        }
        text = ""
    else:
        text, block = REPLY_TEXT, {}
    usage = {
        "input_tokens": max(1, len(seen.body) // 4),
        "cache_creation_input_tokens": int(seen.header("x-fake-cache-write") or 0),
        "cache_read_input_tokens": int(seen.header("x-fake-cache-read") or 0),
        "output_tokens": 12,
    }
    stop = "tool_use" if block else "end_turn"
    message = {
        "id": "msg_fake_cloud",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [block] if block else [{"type": "text", "text": text}],
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage,
    }
    events: list[dict] = [
        {
            "type": "message_start",
            "message": {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}},
        }
    ]
    if block:
        arguments = json.dumps(block["input"])
        events.append({"type": "content_block_start", "index": 0, "content_block": {**block, "input": {}}})
        half = len(arguments) // 2
        for part in (arguments[:half], arguments[half:]):
            events.append(
                {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": part}}
            )
    else:
        events.append({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        for piece in _chunks(text, int(seen.header("x-fake-events") or 1)):
            events.append({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}})
    events.append({"type": "content_block_stop", "index": 0})
    events.append(
        {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": 12}}
    )
    events.append({"type": "message_stop"})
    return message, events


def _no_cooldown(status: int) -> tuple:
    """`retry-after: 0` on a throttle, so relay does not cool the test's key for later tests."""
    return (("retry-after", "0"),) if status in (429, 529) else ()


@dataclass
class CloudSeen(Seen):
    cloud: str = ""
    region: str | None = None  # Bedrock: the region the request was signed for
    model: str | None = None  # the model id in the path


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, *args):
        pass

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        seen = CloudSeen(self.command, self.path, list(self.headers.items()), body)
        path = self.path.split("?", 1)[0]
        fake = self.server.fake
        try:
            if path == "/token":
                seen.cloud = "google-token"
                fake._record(seen)
                return self._token(seen)
            if path.startswith("/model/"):
                seen.cloud = "bedrock"
                fake._record(seen)
                return self._bedrock(seen, path)
            if "/publishers/anthropic/models/" in path:
                seen.cloud = "vertex"
                fake._record(seen)
                return self._vertex(seen, path)
            if path == "/anthropic/v1/messages":
                seen.cloud = "foundry"
                fake._record(seen)
                return self._foundry(seen)
            fake._record(seen)
            self._json(404, {"message": "no such route"})
        except (BrokenPipeError, ConnectionResetError):
            seen.cut_off = True
            self.close_connection = True

    # --- plumbing -------------------------------------------------------------------
    def _json(self, status: int, payload, headers: tuple = ()) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _start(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("content-type", content_type)
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()

    def _write(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _end(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _scenario(self, seen: CloudSeen) -> str:
        return seen.header(f"x-fake-{seen.cloud}-scenario") or ""

    # --- Bedrock --------------------------------------------------------------------
    def _bedrock_error(self, status: int, name: str, message: str, retry: int = 0) -> None:
        fields = [("x-amzn-errortype", f"{name}:http://internal.amazon.com/coral/com.amazon.bedrock/")]
        self._json(status, {"message": message}, (*fields, *_no_cooldown(retry)))

    def _bedrock(self, seen: CloudSeen, path: str) -> None:
        problem = sigv4_problem(self.server.fake.aws, seen)
        if problem:
            return self._bedrock_error(403, "InvalidSignatureException", problem)
        seen.region = (seen.header("authorization") or "").split("Credential=", 1)[1].split("/")[2]
        parts = path.split("/")
        seen.model = unquote(parts[2])
        request = seen.json()
        if parts[3] == "count-tokens":
            return self._bedrock_count(seen, request)
        if request.get("anthropic_version") != "bedrock-2023-05-31" or "model" in request:
            return self._bedrock_error(400, "ValidationException", "malformed input request")
        scenario = self._scenario(seen)
        if scenario.startswith("status-"):
            status = int(scenario.split("-", 1)[1])
            name = {429: "ThrottlingException", 503: "ServiceUnavailableException", 400: "ValidationException"}.get(
                status, "InternalServerException"
            )
            return self._bedrock_error(status, name, f"Too many requests for {ACCOUNT_ARN}, please wait.", status)
        model = (
            "claude-" + seen.model.split("claude-", 1)[-1].split("-v", 1)[0] if "claude-" in seen.model else seen.model
        )
        message, events = anthropic_reply(request, seen, model)
        if parts[3] == "invoke":
            return self._json(200, message, (("x-amzn-requestid", "fake-request-id"),))
        self._start("application/vnd.amazon.eventstream")
        frames = [chunk_message(event) for event in events]
        if scenario == "midstream-throttle":
            frames = frames[:3] + [exception_message("throttlingException", f"Too many tokens for {ACCOUNT_ARN}")]
        # Message 1 and 2 share one write; every other message goes in three pieces, cut
        # inside its prelude, its headers and its payload.
        self._write(frames[0] + frames[1][:5])
        gate = seen.header("x-fake-gate")
        if gate:  # hold the rest until the test has seen the first event arrive
            self.server.fake._gate(gate).wait(GATE_TIMEOUT_S)
        rest = [frames[1][5:], *frames[2:]]
        for frame in rest:
            cuts = sorted({min(7, len(frame) - 1), min(40, len(frame) - 1), max(1, len(frame) - 9)})
            pieces = [frame[a:b] for a, b in zip([0, *cuts], [*cuts, len(frame)])]
            for piece in pieces:
                if piece:
                    self._write(piece)
        self._end()

    def _bedrock_count(self, seen: CloudSeen, request: dict) -> None:
        """CountTokens: foundation model ids only; the InvokeModel body as a base64 blob."""
        if not seen.model.startswith("anthropic."):
            return self._bedrock_error(400, "ValidationException", "The provided model doesn't support counting tokens")
        try:
            invoke = json.loads(base64.b64decode(request["input"]["invokeModel"]["body"], validate=True))
        except (KeyError, TypeError, ValueError, binascii.Error):
            return self._bedrock_error(400, "ValidationException", "input.invokeModel.body must be a base64 blob")
        if invoke.get("anthropic_version") != "bedrock-2023-05-31" or "max_tokens" not in invoke:
            return self._bedrock_error(400, "ValidationException", "malformed input request")
        self._json(200, {"inputTokens": max(1, len(json.dumps(invoke["messages"])) // 4)})

    # --- Vertex ---------------------------------------------------------------------
    def _token(self, seen: CloudSeen) -> None:
        form = dict(part.split("=", 1) for part in seen.body.decode().split("&"))
        problem = self.server.fake._jwt_problem(unquote(form.get("grant_type", "")), unquote(form.get("assertion", "")))
        if problem:
            return self._json(400, {"error": "invalid_grant", "error_description": problem})
        token = "ya29.fake-" + secrets.token_urlsafe(24)
        self.server.fake._issue(token)
        self._json(200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    def _vertex(self, seen: CloudSeen, path: str) -> None:
        token = (seen.header("authorization") or "").removeprefix("Bearer ")
        if not self.server.fake._issued(token):
            return self._json(
                401,
                {
                    "error": {
                        "code": 401,
                        "message": "Request had invalid authentication credentials.",
                        "status": "UNAUTHENTICATED",
                    }
                },
            )
        model, _, method = path.rsplit("/", 1)[1].partition(":")
        seen.model = unquote(model)
        request = seen.json()
        if request.get("anthropic_version") != "vertex-2023-10-16" or "model" in request:
            return self._json(400, {"error": {"code": 400, "message": "invalid request", "status": "INVALID_ARGUMENT"}})
        scenario = self._scenario(seen)
        if scenario.startswith("status-"):
            status = int(scenario.split("-", 1)[1])
            message = f"Quota exceeded for aiplatform.googleapis.com in project {GOOGLE_PROJECT_NUMBER}"
            error = {"code": status, "message": message, "status": "RESOURCE_EXHAUSTED"}
            return self._json(status, {"error": error}, _no_cooldown(status))
        self._anthropic(seen, request, seen.model.split("@", 1)[0], method == "streamRawPredict")

    # --- Foundry --------------------------------------------------------------------
    def _foundry(self, seen: CloudSeen) -> None:
        if seen.header("api-key") not in self.server.fake.foundry_keys or seen.header("x-api-key"):
            return self._json(
                401, {"type": "error", "error": {"type": "authentication_error", "message": "invalid api-key"}}
            )
        scenario = self._scenario(seen)
        request = seen.json()
        if scenario.startswith("status-"):
            status = int(scenario.split("-", 1)[1])
            kind = {400: "invalid_request_error", 429: "rate_limit_error", 529: "overloaded_error"}.get(
                status, "api_error"
            )
            message = f"resource /subscriptions/00000000-fake/resourceGroups/rg answered {status}"
            return self._json(
                status, {"type": "error", "error": {"type": kind, "message": message}}, _no_cooldown(status)
            )
        self._anthropic(seen, request, request.get("model", "unknown"), request.get("stream") is True)

    def _anthropic(self, seen: CloudSeen, request: dict, model: str, stream: bool) -> None:
        message, events = anthropic_reply(request, seen, model)
        if not stream:
            return self._json(200, message)
        self._start("text/event-stream")
        for event in events:
            self._write(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
        self._end()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    fake: FakeClouds


class FakeClouds(FakeServer):
    """The fake clouds on 127.0.0.1. `aws` maps access key ids to (secret, session token or
    None); `service_account` is the Vertex key file's JSON (its token_uri is set to this
    fake's `/token`: see `service_account_json`); `foundry_keys` the valid api-keys."""

    def __init__(self, aws: dict[str, tuple[str, str | None]], private_key_pem: str, foundry_keys: tuple[str, ...]):
        self.aws = aws
        self.foundry_keys = foundry_keys
        self.client_email = "relay-test@relay-test.iam.gserviceaccount.com"
        self._private_key_pem = private_key_pem
        self._folder = tempfile.TemporaryDirectory(prefix="fake-clouds-")
        self._public_key = Path(self._folder.name, "public.pem")
        self._public_key.write_text(_public_key(private_key_pem))
        super().__init__(_Server(("127.0.0.1", 0), _Handler))
        self.tokens: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def service_account_json(self, project: str | None = "relay-test") -> str:
        return json.dumps(
            {
                "type": "service_account",
                "project_id": project,
                "private_key_id": "fake0001",
                "private_key": self._private_key_pem,
                "client_email": self.client_email,
                "token_uri": self.url + "/token",
            }
        )

    def requests(self, tag: str | None = None, cloud: str | None = None) -> list[CloudSeen]:
        with self._lock:
            seen = list(self._seen)
        return [
            s for s in seen if (tag is None or s.header("x-test-tag") == tag) and (cloud is None or s.cloud == cloud)
        ]

    def _issue(self, token: str) -> None:
        with self._lock:
            self.tokens.append(token)

    def _issued(self, token: str) -> bool:
        with self._lock:
            return token in self.tokens

    # --- the checks a real cloud makes (Bedrock's: sigv4_problem) ----------------------
    def _jwt_problem(self, grant_type: str, assertion: str) -> str | None:
        if grant_type != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return "unsupported grant type"
        try:
            head, claims, signature = assertion.split(".")
            header, payload = json.loads(_b64url_decode(head)), json.loads(_b64url_decode(claims))
            raw_signature = _b64url_decode(signature)
        except (ValueError, binascii.Error):
            return "malformed JWT"
        if header.get("alg") != "RS256":
            return "alg must be RS256"
        with tempfile.TemporaryDirectory(dir=self._folder.name) as folder:
            data, sig = Path(folder, "data"), Path(folder, "sig")
            data.write_bytes(f"{head}.{claims}".encode())
            sig.write_bytes(raw_signature)
            verified = subprocess.run(
                ["openssl", "dgst", "-sha256", "-verify", str(self._public_key), "-signature", str(sig), str(data)],
                capture_output=True,
            )
        if verified.returncode != 0:
            return "Invalid JWT Signature."
        now = time.time()
        if payload.get("iss") != self.client_email or payload.get("aud") != self.url + "/token":
            return "iss or aud is wrong"
        if payload.get("scope") != "https://www.googleapis.com/auth/cloud-platform":
            return "scope is wrong"
        if not (payload["iat"] - 60 <= now <= payload["exp"]) or payload["exp"] - payload["iat"] > 3600:
            return "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe."
        return None

    def stop(self) -> None:
        super().stop()
        self._folder.cleanup()
