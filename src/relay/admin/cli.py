"""`python -m relay keys ...` / `caps ...`: manage virtual relay keys and spend caps
through a relay's admin API.

Talks HTTP to a local (`make dev`) or deployed relay; stdlib only. Prints the JSON
answer to stdout; on an error prints the message to stderr and exits 1. The admin token
is sent only in the Authorization header of requests to --url, and never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from email.message import Message
from typing import IO, Any

from relay.prompt_cache.markers import POLICIES

DEFAULT_URL = "http://127.0.0.1:8787"
TIMEOUT_SECONDS = 30


class CliError(Exception):
    """A failure to report on stderr (exit status 1)."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: following one would turn a POST into a GET, and a hop to another
    host is not where the admin token was meant to go."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


def _call(url: str, token: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """One admin API call; the decoded JSON answer, or CliError with relay's message."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, method=method)
    request.add_header("accept", "application/json")
    if data is not None:
        request.add_header("content-type", "application/json")
    request.add_unredirected_header("authorization", f"Bearer {token}")
    opener = urllib.request.build_opener(_NoRedirects)
    try:
        with opener.open(request, timeout=TIMEOUT_SECONDS) as answer:
            return json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as exc:
        raise CliError(_http_error(exc)) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CliError(f"cannot reach relay at {url}: {reason}") from None
    except ValueError:
        raise CliError(f"{url} did not answer with JSON: is it a relay?") from None


def _http_error(exc: urllib.error.HTTPError) -> str:
    if 300 <= exc.code < 400:
        return f"HTTP {exc.code}: relay redirects to {exc.headers.get('location')}; pass that address as --url"
    try:
        message = json.loads(exc.read())["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = exc.reason
    return f"HTTP {exc.code}: {message}"


def _base_url(value: str | None) -> str:
    url = (value or os.environ.get("RELAY_URL") or DEFAULT_URL).strip().rstrip("/")
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise CliError(f"--url must be an http(s) URL, not {url!r}")
    if parsed.scheme == "http" and parsed.hostname not in ("127.0.0.1", "localhost", "::1"):
        print(f"relay: warning: sending the admin token unencrypted to {parsed.hostname}", file=sys.stderr)
    return url


def _token(value: str | None) -> str:
    token = (value or os.environ.get("RELAY_ADMIN_TOKEN") or "").strip()
    if not token:
        raise CliError("no admin token: set RELAY_ADMIN_TOKEN (or pass --admin-token)")
    return token


def _create_body(args: argparse.Namespace) -> dict[str, Any]:
    fields = {
        "name": args.name,
        "billing_tag": args.tag,
        "allowed_models": args.models,
        "rpm_limit": args.rpm,
        "max_concurrent_streams": args.streams,
        "monthly_budget_usd": args.budget,
        "cache_policy": args.cache_policy,
        "expires_at": args.expires,
    }
    return {name: value for name, value in fields.items() if value is not None}


def _key_path(key_id: str) -> str:
    return "/admin/keys/" + urllib.parse.quote(key_id, safe="")


def _cap_body(args: argparse.Namespace) -> dict[str, Any]:
    if args.relay:
        owner = {"owner_kind": "relay"}
    elif args.key:
        owner = {"owner_kind": "key", "owner_id": args.key}
    elif args.person:
        owner = {"owner_kind": "person", "owner_id": args.person}
    elif args.idp_group:
        owner = {"owner_kind": "group", "owner_id": args.idp_group}
    else:
        owner = {"owner_kind": "tag", "owner_id": args.tag}
    return {**owner, "period": args.period, "limit_usd": args.usd}


def _caps(args: argparse.Namespace, url: str, token: str) -> Any:
    if args.action == "set":
        return _call(url, token, "POST", "/admin/caps", _cap_body(args))
    if args.action == "list":
        return _call(url, token, "GET", "/admin/caps")
    if args.action == "tokens":
        body = {"owner_kind": "key", "owner_id": args.key, "input_per_minute": args.input}
        return _call(url, token, "POST", "/admin/token-limits", {**body, "output_per_minute": args.output})
    if args.action == "token-limits":
        return _call(url, token, "GET", "/admin/token-limits")
    return _call(url, token, "DELETE", "/admin/caps/" + urllib.parse.quote(args.id, safe=""))


def _run(args: argparse.Namespace) -> Any:
    url, token = _base_url(args.url), _token(args.admin_token)
    if args.group == "caps":
        return _caps(args, url, token)
    if args.action == "create":
        answer = _call(url, token, "POST", "/admin/keys", _create_body(args))
        print("relay: store this key now; relay keeps only its hash and cannot show it again", file=sys.stderr)
        return answer
    if args.action == "list":
        return _call(url, token, "GET", "/admin/keys")
    if args.action == "show":
        return _call(url, token, "GET", _key_path(args.id))
    if args.action == "cache-policy":
        policy = None if args.policy == "default" else args.policy
        return _call(url, token, "PATCH", _key_path(args.id), {"cache_policy": policy})
    return _call(url, token, "POST", _key_path(args.id) + "/revoke")


def _parser() -> argparse.ArgumentParser:
    # --url and --admin-token are accepted before or after the subcommand; SUPPRESS keeps
    # a subparser from overwriting a value given earlier with its default.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url", default=argparse.SUPPRESS, help=f"relay's base URL (default: $RELAY_URL, else {DEFAULT_URL})"
    )
    common.add_argument(
        "--admin-token",
        default=argparse.SUPPRESS,
        help="admin token (default: $RELAY_ADMIN_TOKEN; prefer the variable, "
        "a command-line value is visible to other local users)",
    )
    parser = argparse.ArgumentParser(
        prog="python -m relay", parents=[common], description="Manage relay's virtual keys through its admin API."
    )
    groups = parser.add_subparsers(dest="group", required=True, metavar="{keys,caps}")
    keys = groups.add_parser("keys", parents=[common], help="create, list, show or revoke relay keys")
    actions = keys.add_subparsers(dest="action", required=True)

    create = actions.add_parser("create", parents=[common], help="create a key (shown once)")
    create.add_argument("--name", required=True, help="who or what the key is for")
    create.add_argument("--tag", help="billing tag")
    create.add_argument(
        "--models",
        nargs="+",
        action="extend",
        metavar="GLOB",
        help="models the key may use, as globs (e.g. 'claude-haiku-*'); default all",
    )
    create.add_argument("--rpm", type=int, help="requests per minute (at least 10, the lowest rate-limit tier)")
    create.add_argument("--streams", type=int, help="most concurrent streams")
    create.add_argument("--budget", type=float, metavar="USD", help="monthly budget in US dollars")
    create.add_argument("--expires", metavar="ISO", help="expiry, ISO 8601 (e.g. 2026-12-31T23:59:59Z)")
    create.add_argument(
        "--cache-policy", choices=POLICIES, help="prompt-cache markers relay adds (default: relay's RELAY_CACHE_POLICY)"
    )
    policy = actions.add_parser("cache-policy", parents=[common], help="set a key's prompt-cache policy")
    policy.add_argument("id", help="key id, e.g. rk_1a2b3c4d")
    policy.add_argument("policy", choices=POLICIES + ("default",), help="'default' follows RELAY_CACHE_POLICY")
    actions.add_parser("list", parents=[common], help="list every key (no key material)")
    for name, text in (("show", "show one key"), ("revoke", "revoke a key (idempotent)")):
        actions.add_parser(name, parents=[common], help=text).add_argument("id", help="key id, e.g. rk_1a2b3c4d")
    _caps_parser(groups, common)
    return parser


def _caps_parser(groups: Any, common: argparse.ArgumentParser) -> None:
    caps = groups.add_parser("caps", parents=[common], help="set, list or delete spend caps")
    actions = caps.add_subparsers(dest="action", required=True)
    cap = actions.add_parser(
        "set",
        parents=[common],
        help="set the cap of a key, a billing tag, a person, a group or relay for a UTC day, week or month",
    )
    owner = cap.add_mutually_exclusive_group(required=True)
    owner.add_argument("--key", metavar="ID", help="a relay key's id, e.g. rk_1a2b3c4d")
    owner.add_argument("--tag", help="a billing tag: every key that carries it shares the cap")
    owner.add_argument("--person", metavar="EMAIL", help="a signed-in person, by email (see Sign-in)")
    owner.add_argument("--group", dest="idp_group", help="an IdP group: its signed-in people share the cap")
    owner.add_argument("--relay", action="store_true", help="relay as a whole")
    cap.add_argument(
        "--period", required=True, choices=("day", "week", "month"), help="UTC window (weeks start on Monday)"
    )
    cap.add_argument("--usd", required=True, type=float, help="the limit in US dollars")
    actions.add_parser("list", parents=[common], help="list every cap with its spend this window")
    tokens = actions.add_parser(
        "tokens", parents=[common], help="set a key's tokens per minute (neither --input nor --output: no limit)"
    )
    tokens.add_argument("--key", required=True, metavar="ID", help="a relay key's id")
    tokens.add_argument("--input", type=int, metavar="N", help="input tokens per minute")
    tokens.add_argument("--output", type=int, metavar="N", help="output tokens per minute")
    actions.add_parser("token-limits", parents=[common], help="list the keys' tokens-per-minute limits")
    delete = actions.add_parser("delete", parents=[common], help="delete a cap")
    delete.add_argument("id", help="cap id, e.g. cap_1a2b3c4d")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.url = getattr(args, "url", None)
    args.admin_token = getattr(args, "admin_token", None)
    try:
        answer = _run(args)
    except CliError as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2))
    return 0
