"""The usage page under /admin/: cost per day by tag, top sessions, unpriced models, cache
savings, cost by group and person, recent requests.

A browser cannot send a bearer token when it opens a page, so the page and its style,
script and icon are served without the admin token: they hold no data and no secret. The
page asks for the token, keeps it in sessionStorage (this tab only) and fetches the JSON
reports with `Authorization: Bearer`. Script and style are files of their own (/admin/ui.js,
/admin/ui.css), so the Content-Security-Policy allows no inline code at all; the script
puts every value in the page as text, never as HTML (tags and session ids are the
clients' own). Everything is in Python constants because the Worker bundles .py modules
only.
"""

from __future__ import annotations

from relay.admin.usage_page_script import SCRIPT
from relay.http.messages import Response

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>relay · usage</title>
<link rel="icon" href="/admin/favicon.svg">
<link rel="stylesheet" href="/admin/ui.css">
<script src="/admin/ui.js" defer></script>
</head>
<body>
<header>
  <h1>relay <span>usage</span></h1>
  <div class="controls" id="controls" hidden>
    <label>Range
      <select id="range">
        <option value="7">last 7 days</option>
        <option value="30" selected>last 30 days</option>
        <option value="90">last 90 days</option>
      </select>
    </label>
    <button type="button" id="reload">Reload</button>
    <button type="button" id="csv">Download CSV (day × tag)</button>
    <button type="button" id="sign-out" class="quiet">Sign out</button>
  </div>
</header>

<section id="login" class="panel" hidden>
  <form id="login-form">
    <h2>Admin token</h2>
    <p>Enter <code>RELAY_ADMIN_TOKEN</code>. It stays in this browser tab only (sessionStorage)
       and is sent only to this relay, as a bearer token.</p>
    <input type="password" id="token" autocomplete="off" spellcheck="false" required
           aria-label="admin token">
    <button type="submit">Show usage</button>
    <p id="login-error" class="error"></p>
  </form>
</section>

<main id="report" hidden>
  <p id="status" class="status">Loading…</p>
  <section class="cards" id="cards"></section>

  <section class="panel">
    <h2>Cost per day by tag</h2>
    <div id="chart" class="chart"></div>
    <ul id="legend" class="legend"></ul>
  </section>

  <section class="panel">
    <h2>Top sessions by cost</h2>
    <table id="sessions">
      <thead><tr><th>session</th><th class="num">requests</th><th class="num">tokens in / out</th>
        <th class="num">cache read</th><th class="num">cost</th><th class="num">cache savings</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section class="panel" id="unpriced-panel" hidden>
    <h2>Unpriced models</h2>
    <p class="status">Requests to these models have token counts but no price, so their cost is
       not in the totals. Give them one in <code>RELAY_PRICES</code> (README "Prices").</p>
    <table id="unpriced">
      <thead><tr><th>model</th><th class="num">unpriced requests</th><th class="num">tokens in / out</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section class="panel">
    <h2>Cost and cache savings by tag</h2>
    <table id="tags">
      <thead><tr><th>tag</th><th class="num">requests</th><th class="num">errors</th>
        <th class="num">cost</th><th class="num">unpriced</th><th class="num">cache read</th>
        <th class="num">cache savings</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>

  <section class="panel">
    <h2>Cost by group and person (signed-in people)</h2>
    <table id="people">
      <thead><tr><th>group</th><th>person</th><th class="num">requests</th><th class="num">errors</th>
        <th class="num">cost</th><th class="num">cache savings</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>

  <section class="panel">
    <h2>Recent requests</h2>
    <table id="recent">
      <thead><tr><th>time (UTC)</th><th>key</th><th>tag</th><th>session</th><th>model</th>
        <th class="num">status</th><th class="num">in / out</th><th class="num">cache w / r</th>
        <th class="num">cost</th><th class="num">ms</th></tr></thead>
      <tbody></tbody>
    </table>
    <button type="button" id="older" class="quiet" hidden>Load older requests</button>
  </section>
</main>
</body>
</html>
"""

STYLE = """
:root { --ink: #1d2430; --muted: #667085; --line: #e4e7ec; --bg: #f5f6f8; --card: #fff;
        --accent: #3456c8; --bad: #b42318; --good: #067647; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
       font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header { display: flex; align-items: center; justify-content: space-between; gap: 16px; flex-wrap: wrap;
         padding: 12px 28px; background: var(--ink); color: #fff; }
header h1 { margin: 0; font-size: 18px; letter-spacing: .02em; }
header h1 span { font-weight: 400; color: #b8c0cc; }
.controls { display: flex; align-items: center; gap: 8px; }
.controls label { color: #d0d5dd; }
select, button, input { font: inherit; border-radius: 6px; border: 1px solid var(--line); padding: 5px 10px; }
button { background: var(--accent); color: #fff; border-color: var(--accent); cursor: pointer; }
button.quiet { background: transparent; color: inherit; border-color: #98a2b3; }
main, #login { max-width: 1320px; margin: 0 auto; padding: 18px 28px 40px; }
.panel { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 16px 18px;
         margin-top: 16px; overflow-x: auto; }
.panel h2 { margin: 0 0 10px; font-size: 15px; }
#login form { max-width: 460px; margin: 40px auto; display: grid; gap: 10px; }
#login p { margin: 0; color: var(--muted); }
.error { color: var(--bad); min-height: 1.2em; }
.status { color: var(--muted); margin: 0; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px; margin-top: 12px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 12px 14px; }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card .value { font-size: 22px; font-weight: 600; font-variant-numeric: tabular-nums; margin-top: 2px; }
.card .note { color: var(--muted); font-size: 12px; }
table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
th { text-align: left; font-weight: 600; color: var(--muted); font-size: 12px; border-bottom: 1px solid var(--line);
     padding: 6px 8px; white-space: nowrap; }
td { padding: 5px 8px; border-bottom: 1px solid #f0f2f5; white-space: nowrap; }
tbody tr:nth-child(even) { background: #fafbfc; }
.num { text-align: right; }
.id { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px;
      display: inline-block; max-width: 44ch; overflow: hidden; text-overflow: ellipsis; white-space: nowrap;
      vertical-align: bottom; }
#recent .id { max-width: 24ch; }
.missing { color: var(--muted); font-style: italic; }
.saving { color: var(--good); }
.negative, .failed { color: var(--bad); }
.chart svg { width: 100%; height: auto; display: block; }
.chart text { fill: var(--muted); font-size: 11px; }
.chart .grid { stroke: var(--line); }
.chart .empty { font-size: 14px; }
.legend { list-style: none; display: flex; flex-wrap: wrap; gap: 6px 18px; padding: 0; margin: 8px 0 0; }
.legend li { display: flex; align-items: center; gap: 6px; }
.swatch { width: 12px; height: 12px; border-radius: 3px; display: inline-block; }
#older { margin-top: 10px; }
"""

ICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" '
    'fill="#1d2430"/><path d="M3 12h2V8H3zm4 0h2V4H7zm4 0h2V6h-2z" fill="#8ea6ff"/></svg>'
)

_FILES = {
    "/admin/": ("text/html; charset=utf-8", HTML),
    "/admin/ui.js": ("text/javascript; charset=utf-8", SCRIPT),
    "/admin/ui.css": ("text/css; charset=utf-8", STYLE),
    "/admin/favicon.svg": ("image/svg+xml", ICON),
}


def serve(method: str, path: str) -> Response | None:
    """The page file at `path` (GET or HEAD), or None when `path` is not one of them."""
    found = _FILES.get(path)
    if found is None or method not in ("GET", "HEAD"):
        return None
    content_type, text = found
    headers = [
        ("content-type", content_type),
        ("content-security-policy", CSP),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ]
    return Response(200, headers, b"" if method == "HEAD" else text.encode())
