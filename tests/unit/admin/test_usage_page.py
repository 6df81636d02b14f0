"""The usage page's files: served without the admin token, with headers that keep them
(and the data the script fetches) from being framed, cached or extended by injected code."""

from __future__ import annotations

import re

import pytest

from relay.admin.usage_page_script import SCRIPT
from relay.config import Settings
from tests.unit.admin.test_api import TOKEN, call, services

FILES = {"/admin/": "text/html", "/admin/ui.js": "text/javascript", "/admin/ui.css": "text/css"}


@pytest.mark.parametrize("path, kind", FILES.items())
def test_page_files_need_no_token_and_carry_strict_headers(path, kind):
    response = call(services(), "GET", path, headers=())
    headers = dict(response.headers)
    assert response.status == 200 and headers["content-type"].startswith(kind)
    csp = headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert headers["x-frame-options"] == "DENY" and headers["cache-control"] == "no-store"
    assert headers["x-content-type-options"] == "nosniff"
    assert TOKEN.encode() not in response.body


def test_the_page_is_served_even_before_an_admin_token_is_set():
    # It holds nothing; its requests for data then show the API's own 503 message.
    assert call(services(), "GET", "/admin/", headers=(), settings=Settings.from_env({})).status == 200


def test_the_page_has_no_inline_script_or_style():
    html = call(services(), "GET", "/admin/", headers=()).body.decode()
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/admin/ui.js" defer>']
    tags = re.findall(r"<[a-z][^>]*>", html)
    assert not [tag for tag in tags if re.search(r"\s(on[a-z]+|style)=", tag)] and "<style" not in html


def test_head_answers_without_a_body():
    response = call(services(), "HEAD", "/admin/ui.js", headers=())
    assert response.status == 200 and response.body == b""


def test_other_methods_on_the_page_still_need_the_token():
    assert call(services(), "POST", "/admin/", headers=()).status == 401


def test_the_script_never_builds_html_from_strings():
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "Function("):
        assert sink not in SCRIPT
    assert "localStorage" not in SCRIPT  # the token stays in this tab only
