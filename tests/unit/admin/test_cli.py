"""The key-management CLI against the real admin API, served by a stdlib HTTP server
(the admin API over SQLite) on a local port."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from relay.admin import cli
from relay.http.messages import Headers, Request
from relay.pipeline.app import handle
from relay.services import Services
from tests.fakes.platform import SqliteDatabase
from tests.fakes.streams import read_body

TOKEN = "cli-admin-token-0001"


class AdminServer:
    """The admin API (through pipeline.app.handle) on 127.0.0.1; paths under /moved/ answer 307 elsewhere. Records
    every request's (method, path, authorization)."""

    def __init__(self):
        self.seen: list[tuple[str, str, str]] = []
        self.log = io.StringIO()  # admin's log lines, kept out of the CLI's stdout
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self):
        # SQLite connections belong to their thread: make it in the one that serves.
        services = Services(transport=None, db=SqliteDatabase())
        env = {"RELAY_ADMIN_TOKEN": TOKEN}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                outer.seen.append((self.command, self.path, self.headers.get("authorization", "")))
                if self.path.startswith("/moved/"):
                    self.send_response(307)
                    self.send_header("location", "http://127.0.0.1:9/elsewhere" + self.path[6:])
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                body = self.rfile.read(int(self.headers.get("content-length") or 0))

                fields = Headers(self.headers.items())
                request = Request(self.command, self.path, "", fields, read_body(body, fields))
                with contextlib.redirect_stdout(outer.log):
                    response = asyncio.run(handle(request, env, services))
                self.send_response(response.status)
                for name, value in response.headers:
                    self.send_header(name, value)
                self.send_header("content-length", str(len(response.body)))
                self.end_headers()
                self.wfile.write(response.body)

            do_GET = do_POST = do_PATCH = do_DELETE = _answer

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.ready.set()
        self.server.serve_forever()

    def __enter__(self):
        self.thread.start()
        self.ready.wait(10)
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def server():
    with AdminServer() as running:
        yield running


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    monkeypatch.delenv("RELAY_URL", raising=False)
    monkeypatch.delenv("RELAY_ADMIN_TOKEN", raising=False)


def assert_hidden(secret, *texts):
    """Fails without printing the secret (pytest would show the operands of `in`)."""
    leaked = any(secret in text for text in texts)
    assert not leaked, "secret material in output"


def run(capsys, *argv):
    """(exit status, parsed stdout or None, stderr); the token must appear in neither."""
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert_hidden(TOKEN, out, err)
    return status, (json.loads(out) if out else None), err


def test_create_list_show_revoke(server, capsys):
    auth = ["--url", server.url, "--admin-token", TOKEN]
    status, created, err = run(
        capsys,
        "keys",
        "create",
        "--name",
        "ci bot",
        "--tag",
        "team-a",
        "--models",
        "claude-haiku-*",
        "gpt-4o*",
        "--models",
        "o3",
        "--rpm",
        "60",
        "--streams",
        "2",
        "--budget",
        "9.5",
        "--expires",
        "2099-01-01T00:00:00Z",
        *auth,
    )
    assert status == 0
    key = created.pop("key")
    assert "store this key now" in err
    assert_hidden(key, err)
    shaped = key.startswith("rk-") and len(key) == 43
    assert shaped
    assert created["name"] == "ci bot" and created["billing_tag"] == "team-a"
    assert created["allowed_models"] == ["claude-haiku-*", "gpt-4o*", "o3"]
    assert (created["rpm_limit"], created["max_concurrent_streams"], created["monthly_budget_usd"]) == (60, 2, 9.5)
    assert created["expires_at"] == "2099-01-01T00:00:00Z"

    status, listed, _ = run(capsys, "keys", "list", *auth)
    assert status == 0 and created in listed["data"]
    assert_hidden(key, json.dumps(listed))

    status, shown, _ = run(capsys, "keys", "show", created["id"], *auth)
    assert status == 0 and shown == created

    status, revoked, _ = run(capsys, "keys", "revoke", created["id"], *auth)
    assert status == 0 and revoked["revoked_at"] is not None
    sent = ("POST", f"/admin/keys/{created['id']}/revoke", f"Bearer {TOKEN}") in server.seen
    assert sent
    assert_hidden(key, server.log.getvalue())


def test_cache_policy_at_creation_and_afterwards(server, capsys):
    auth = ["--url", server.url, "--admin-token", TOKEN]
    status, created, _ = run(capsys, "keys", "create", "--name", "cached", "--cache-policy", "system", *auth)
    assert status == 0 and created["cache_policy"] == "system"

    status, changed, _ = run(capsys, "keys", "cache-policy", created["id"], "auto-1h", *auth)
    assert status == 0 and changed["cache_policy"] == "auto-1h"
    assert ("PATCH", f"/admin/keys/{created['id']}", f"Bearer {TOKEN}") in server.seen
    status, reset, _ = run(capsys, "keys", "cache-policy", created["id"], "default", *auth)
    assert status == 0 and reset["cache_policy"] is None


def test_an_unknown_cache_policy_is_refused_before_any_request(server, capsys):
    before = len(server.seen)
    with pytest.raises(SystemExit):
        cli.main(["keys", "cache-policy", "rk_00000000", "always", "--url", server.url, "--admin-token", TOKEN])
    assert "invalid choice" in capsys.readouterr().err
    assert len(server.seen) == before


def test_url_and_token_come_from_the_environment_and_go_anywhere_on_the_line(server, capsys, monkeypatch):
    monkeypatch.setenv("RELAY_URL", server.url + "/")
    monkeypatch.setenv("RELAY_ADMIN_TOKEN", TOKEN)
    assert run(capsys, "keys", "list")[0] == 0
    monkeypatch.setenv("RELAY_URL", "http://127.0.0.1:9")
    assert run(capsys, "--url", server.url, "keys", "list")[0] == 0
    assert run(capsys, "keys", "--url", server.url, "list")[0] == 0


def test_a_refusal_prints_relays_message_to_stderr_and_exits_1(server, capsys):
    status, out, err = run(capsys, "keys", "list", "--url", server.url, "--admin-token", "not-the-token")
    assert (status, out) == (1, None)
    assert err == "relay: HTTP 401: invalid admin token\n"


def test_a_bad_field_is_reported_by_relay(server, capsys):
    status, out, err = run(
        capsys, "keys", "create", "--name", "x", "--rpm", "0", "--url", server.url, "--admin-token", TOKEN
    )
    assert (status, out) == (1, None)
    assert "HTTP 400: rpm_limit must be a positive whole number" in err


def test_an_unknown_id_is_a_404(server, capsys):
    status, _, err = run(capsys, "keys", "show", "rk_00000000", "--url", server.url, "--admin-token", TOKEN)
    assert status == 1 and "HTTP 404: no relay key with id rk_00000000" in err


def test_without_a_token_nothing_is_sent(server, capsys):
    before = len(server.seen)
    status, _, err = run(capsys, "keys", "list", "--url", server.url)
    assert status == 1 and "no admin token" in err
    assert len(server.seen) == before


def test_an_unreachable_relay_exits_1(capsys):
    status, _, err = run(capsys, "keys", "list", "--url", "http://127.0.0.1:9", "--admin-token", TOKEN)
    assert status == 1 and err.startswith("relay: cannot reach relay at http://127.0.0.1:9")


def test_redirects_are_not_followed(server, capsys):
    status, _, err = run(capsys, "keys", "list", "--url", server.url + "/moved", "--admin-token", TOKEN)
    assert status == 1
    assert "HTTP 307: relay redirects to http://127.0.0.1:9/elsewhere/admin/keys" in err
    assert not [seen for seen in server.seen if "elsewhere" in seen[1]]


def test_a_bad_url_is_refused(capsys):
    status, _, err = run(capsys, "keys", "list", "--url", "ftp://relay", "--admin-token", TOKEN)
    assert status == 1 and "--url must be an http(s) URL" in err


def test_plain_http_to_another_host_warns(capsys):
    assert cli._base_url("http://relay.example") == "http://relay.example"
    assert "unencrypted" in capsys.readouterr().err
    assert cli._base_url("https://relay.example/") == "https://relay.example"
    assert capsys.readouterr().err == ""


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main(["keys", "create"])  # --name is required
    assert caught.value.code == 2


def test_caps_set_list_and_delete(server, capsys):
    auth = ["--url", server.url, "--admin-token", TOKEN]
    status, by_key, _ = run(capsys, "caps", "set", "--key", "rk_0000abcd", "--period", "day", "--usd", "5", *auth)
    assert status == 0
    assert (by_key["owner_kind"], by_key["owner_id"], by_key["period"], by_key["limit_usd"]) == (
        "key",
        "rk_0000abcd",
        "day",
        5.0,
    )
    assert by_key["window_start"].endswith("T00:00:00Z") and by_key["spent_usd"] == 0
    status, raised, _ = run(capsys, "caps", "set", "--key", "rk_0000abcd", "--period", "day", "--usd", "7.5", *auth)
    assert raised["id"] == by_key["id"] and raised["limit_usd"] == 7.5  # one cap per owner and period
    run(capsys, "caps", "set", "--tag", "team-a", "--period", "week", "--usd", "50", *auth)
    status, relay_wide, _ = run(capsys, "caps", "set", "--relay", "--period", "month", "--usd", "900", *auth)
    assert (relay_wide["owner_kind"], relay_wide["owner_id"]) == ("relay", "")

    status, listed, _ = run(capsys, "caps", "list", *auth)
    kinds = {(cap["owner_kind"], cap["period"]) for cap in listed["data"]}
    assert {("key", "day"), ("tag", "week"), ("relay", "month")} <= kinds

    status, deleted, _ = run(capsys, "caps", "delete", by_key["id"], *auth)
    assert status == 0 and deleted == {"id": by_key["id"], "deleted": True}
    status, _, err = run(capsys, "caps", "delete", by_key["id"], *auth)
    assert status == 1 and "no spend cap" in err


def test_caps_tokens_sets_lists_and_removes_a_keys_tokens_per_minute(server, capsys):
    auth = ["--url", server.url, "--admin-token", TOKEN]
    status, limit, _ = run(
        capsys, "caps", "tokens", "--key", "rk_0000beef", "--input", "200000", "--output", "8000", *auth
    )
    assert status == 0 and (limit["input_per_minute"], limit["output_per_minute"]) == (200000, 8000)
    status, listed, _ = run(capsys, "caps", "token-limits", *auth)
    assert limit in listed["data"]
    run(capsys, "caps", "tokens", "--key", "rk_0000beef", *auth)
    status, listed, _ = run(capsys, "caps", "token-limits", *auth)
    assert all(row["owner_id"] != "rk_0000beef" for row in listed["data"])
    status, _, err = run(capsys, "caps", "tokens", "--key", "rk_0000beef", "--input", "0", *auth)
    assert status == 1 and "input_per_minute must be a positive whole number" in err
