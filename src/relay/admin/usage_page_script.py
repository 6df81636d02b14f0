"""The usage page's script, served as /admin/ui.js (see usage_page.py).

It never builds HTML from strings: every value reaches the page through text nodes,
`textContent` or a DOM property, so a session id or billing tag holding markup shows
as text. The admin token lives in sessionStorage and goes only into fetch headers.
"""

SCRIPT = r"""
"use strict";
(function () {
  const TOKEN = "relay-admin-token";
  const SVG = "http://www.w3.org/2000/svg";
  const COLORS = ["#3456c8", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1", "#edc948"];
  const OTHER_COLOR = "#98a2b3";
  const DAY = 86400000;
  const $ = (id) => document.getElementById(id);
  let olderThan = null;

  function node(tag, className, ...children) {
    const made = document.createElement(tag);
    if (className) made.className = className;
    for (const child of children) made.append(child instanceof Node ? child : String(child));
    return made;
  }

  function svg(tag, attributes, text) {
    const made = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes)) made.setAttribute(name, String(value));
    if (text !== undefined) made.textContent = text;
    return made;
  }

  const count = (n) => Number(n).toLocaleString("en-US");

  function usd(x) {
    if (x === null || x === undefined) return "—";
    const digits = x !== 0 && Math.abs(x) < 1 ? 6 : 2;
    return (x < 0 ? "-$" : "$") + Math.abs(x).toFixed(digits);
  }

  function label(value, missing) {
    if (value === null || value === undefined) return node("span", "missing", missing);
    const shown = node("span", "id", value);
    shown.title = value;
    return shown;
  }

  function cell(content, className) {
    return node("td", className || "", content);
  }

  function money(x) {
    return cell(usd(x), x < 0 ? "num negative" : "num");
  }

  function savings(x) {
    return cell(usd(x), x > 0 ? "num saving" : x < 0 ? "num negative" : "num");
  }

  async function api(path) {
    const response = await fetch(path, {
      headers: {authorization: "Bearer " + sessionStorage.getItem(TOKEN)},
      cache: "no-store", credentials: "omit",
    });
    const body = await response.json().catch(() => null);
    const message = body && body.error ? body.error.message : "HTTP " + response.status;
    if (response.status === 401) {
      signOut(message);
      throw new Error("signed out");
    }
    if (!response.ok) throw new Error(message);
    return body;
  }

  function rangeStart() {
    const days = Number($("range").value);
    return new Date(Date.now() - (days - 1) * DAY).toISOString().slice(0, 10);
  }

  function renderCards(total) {
    const cards = [
      ["cost_usd", "Cost", usd(total.cost_usd),
       total.unpriced_requests ? count(total.unpriced_requests) + " unpriced requests not included" : "all requests priced"],
      ["requests", "Requests", count(total.requests), count(total.errors) + " errors"],
      ["input_tokens", "Input tokens", count(total.input_tokens), "not counting cache"],
      ["output_tokens", "Output tokens", count(total.output_tokens), ""],
      ["cache_read_tokens", "Cache reads", count(total.cache_read_tokens),
       count(total.cache_creation_tokens) + " tokens written"],
      ["cache_savings_usd", "Cache savings", usd(total.cache_savings_usd), "reads vs full input price, less write premium"],
    ];
    $("cards").replaceChildren(...cards.map(([measure, title, value, note]) => {
      const card = node("div", "card", node("div", "label", title), node("div", "value", value),
                        node("div", "note", note));
      card.dataset.measure = measure;
      return card;
    }));
  }

  function niceCeiling(x) {
    // The axis top: the first of 1, 2, 2.5, 5 times a power of ten that is at least x.
    const power = Math.pow(10, Math.floor(Math.log10(x)));
    return [1, 2, 2.5, 5, 10].map((m) => m * power).find((top) => top >= x * (1 - 1e-9));
  }

  function renderChart(report) {
    const days = [];
    const end = Date.parse(report.to);
    for (let t = Date.parse(report.from.slice(0, 10) + "T00:00:00Z"); t < end; t += DAY) {
      days.push(new Date(t).toISOString().slice(0, 10));
    }
    const byTag = new Map();
    for (const group of report.groups) {
      byTag.set(group.tag, (byTag.get(group.tag) || 0) + group.cost_usd);
    }
    const ranked = [...byTag.entries()].sort((a, b) => b[1] - a[1]);
    const colored = new Map(ranked.slice(0, COLORS.length).map(([tag], n) => [tag, COLORS[n]]));
    const color = (tag) => colored.get(tag) || OTHER_COLOR;
    const perDay = new Map(days.map((day) => [day, []]));
    for (const group of report.groups) {
      if (perDay.has(group.day) && group.cost_usd > 0) perDay.get(group.day).push(group);
    }
    const highest = Math.max(0, ...[...perDay.values()].map((groups) => groups.reduce((s, g) => s + g.cost_usd, 0)));
    const top = highest > 0 ? niceCeiling(highest) : 0;

    const width = 1000, height = 240, left = 78, bottom = 24, plot = height - bottom - 8;
    const chart = svg("svg", {viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "cost per day by tag"});
    const slot = (width - left) / Math.max(days.length, 1);
    for (let step = 0; step <= 4; step++) {
      const y = 8 + plot - (plot * step) / 4;
      chart.append(svg("line", {x1: left, x2: width, y1: y, y2: y, class: "grid"}));
      if (top > 0) chart.append(svg("text", {x: left - 8, y: y + 4, "text-anchor": "end"}, usd((top * step) / 4)));
    }
    const every = Math.ceil(days.length / 12);
    days.forEach((day, n) => {
      const x = left + n * slot;
      if (n % every === 0) {
        chart.append(svg("text", {x: x + slot / 2, y: height - 6, "text-anchor": "middle"}, day.slice(5)));
      }
      let y = 8 + plot;
      for (const group of perDay.get(day).sort((a, b) => b.cost_usd - a.cost_usd)) {
        const h = (group.cost_usd / top) * plot;
        y -= h;
        const bar = svg("rect", {x: x + slot * 0.15, y: y, width: slot * 0.7, height: Math.max(h, 0.5),
                                 fill: color(group.tag)});
        bar.append(svg("title", {}, `${day} · ${group.tag === null ? "(no tag)" : group.tag}: ${usd(group.cost_usd)}`));
        chart.append(bar);
      }
    });
    if (top === 0) {
      chart.append(svg("text", {x: (width + left) / 2, y: height / 2, "text-anchor": "middle", class: "empty"},
                       "No priced usage in this range"));
    }
    $("chart").replaceChildren(chart);

    const legend = ranked.slice(0, COLORS.length).map(([tag, cost]) => [label(tag, "(no tag)"), cost, color(tag)]);
    if (ranked.length > COLORS.length) {
      const rest = ranked.slice(COLORS.length).reduce((s, [, cost]) => s + cost, 0);
      legend.push([node("span", "missing", `${ranked.length - COLORS.length} more tags`), rest, OTHER_COLOR]);
    }
    $("legend").replaceChildren(...legend.map(([name, cost, swatchColor]) => {
      const swatch = node("span", "swatch");
      swatch.style.background = swatchColor;
      return node("li", "", swatch, name, node("span", "missing", usd(cost)));
    }));
  }

  function fill(id, rows) {
    $(id).tBodies[0].replaceChildren(...rows.map((cells) => node("tr", "", ...cells)));
  }

  function renderSessions(report) {
    const rows = report.groups.map((g) => [cell(label(g.session, "(no session)")), ...sessionCells(g)]);
    if (report.other) rows.push([cell(node("span", "missing", "(other sessions)")), ...sessionCells(report.other)]);
    fill("sessions", rows);
  }

  function sessionCells(g) {
    return [cell(count(g.requests), "num"), cell(count(g.input_tokens) + " / " + count(g.output_tokens), "num"),
            cell(count(g.cache_read_tokens), "num"), money(g.cost_usd), savings(g.cache_savings_usd)];
  }

  function renderTags(report) {
    fill("tags", report.groups.map((g) => [
      cell(label(g.tag, "(no tag)")), cell(count(g.requests), "num"),
      cell(count(g.errors), g.errors ? "num failed" : "num"), money(g.cost_usd),
      cell(count(g.unpriced_requests), "num"), cell(count(g.cache_read_tokens), "num"),
      savings(g.cache_savings_usd),
    ]));
  }

  function renderUnpriced(report) {
    const unpriced = report.groups.filter((g) => g.unpriced_requests > 0);
    $("unpriced-panel").hidden = unpriced.length === 0;
    fill("unpriced", unpriced.map((g) => [
      cell(label(g.model, "(no model)")), cell(count(g.unpriced_requests), "num failed"),
      cell(count(g.input_tokens) + " / " + count(g.output_tokens), "num"),
    ]));
  }

  function renderPeople(report) {
    fill("people", report.groups.map((g) => [
      cell(label(g.group, "(no group)")), cell(label(g.person, "(relay keys)")), cell(count(g.requests), "num"),
      cell(count(g.errors), g.errors ? "num failed" : "num"), money(g.cost_usd), savings(g.cache_savings_usd),
    ]));
  }

  function requestRow(r) {
    const failed = r.status >= 400 || r.error_type !== null;
    const status = cell(r.error_type ? `${r.status} ${r.error_type}` : String(r.status), failed ? "num failed" : "num");
    const tokens = (a, b) => (a === null && b === null ? "—" : count(a || 0) + " / " + count(b || 0));
    return node("tr", "", cell(r.created_at.replace("T", " ").replace("Z", "")), cell(label(r.key_id, "(none)")),
                cell(label(r.billing_tag, "(no tag)")), cell(label(r.session_id, "(no session)")),
                cell(label(r.model_served || r.model_requested, "—")), status,
                cell(tokens(r.input_tokens, r.output_tokens), "num"),
                cell(tokens(r.cache_creation_tokens, r.cache_read_tokens), "num"), money(r.cost_usd),
                cell(r.total_ms === null ? "—" : count(r.total_ms), "num"));
  }

  async function loadOlder(first) {
    const page = await api("/admin/usage/requests?limit=25" + (first ? "" : "&before_id=" + olderThan));
    const rows = page.data.map(requestRow);
    if (first) $("recent").tBodies[0].replaceChildren(...rows);
    else $("recent").tBodies[0].append(...rows);
    olderThan = page.next_before_id;
    $("older").hidden = olderThan === null;
  }

  async function load() {
    document.body.dataset.loaded = "false";
    $("status").textContent = "Loading…";
    const range = "from=" + rangeStart();
    try {
      const [byDay, sessions, tags, models, people] = await Promise.all([
        api("/admin/usage?group_by=day,tag&" + range),
        api("/admin/usage?group_by=session&limit=10&" + range),
        api("/admin/usage?group_by=tag&" + range),
        api("/admin/usage?group_by=model&" + range),
        api("/admin/usage?group_by=group,person&limit=50&" + range),
        loadOlder(true),
      ]);
      renderCards(tags.total);
      renderChart(byDay);
      renderSessions(sessions);
      renderUnpriced(models);
      renderTags(tags);
      renderPeople(people);
      $("status").textContent = `${tags.from.slice(0, 10)} to ${tags.to.replace("T", " ").replace("Z", "")} UTC` +
        ` · audit rows up to #${tags.through_id}`;
      document.body.dataset.loaded = "true";
    } catch (error) {
      if (error.message !== "signed out") $("status").textContent = "Could not load the reports: " + error.message;
    }
  }

  async function downloadCsv() {
    const response = await fetch("/admin/usage?group_by=day,tag&format=csv&from=" + rangeStart(), {
      headers: {authorization: "Bearer " + sessionStorage.getItem(TOKEN)}, cache: "no-store", credentials: "omit",
    });
    if (!response.ok) {
      $("status").textContent = "Could not download the CSV (HTTP " + response.status + ")";
      return;
    }
    const named = /filename="([^"]+)"/.exec(response.headers.get("content-disposition") || "");
    const link = node("a");
    link.href = URL.createObjectURL(await response.blob());
    link.download = named ? named[1] : "relay-usage.csv";
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN);
    $("report").hidden = true;
    $("controls").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    $("token").value = "";
    $("token").focus();
  }

  function signedIn() {
    $("login").hidden = true;
    $("report").hidden = false;
    $("controls").hidden = false;
    load();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(TOKEN, $("token").value.trim());
      $("token").value = "";
      signedIn();
    });
    $("sign-out").addEventListener("click", () => signOut(""));
    $("reload").addEventListener("click", load);
    $("range").addEventListener("change", load);
    $("csv").addEventListener("click", downloadCsv);
    $("older").addEventListener("click", () => loadOlder(false));
    if (sessionStorage.getItem(TOKEN)) signedIn();
    else signOut("");
  });
})();
"""
