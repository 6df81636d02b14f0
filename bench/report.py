"""BENCHMARKS.md from a run's results: one table per scenario with a row per target, then
memory, header fidelity, and relay against each peer; a hand-written part below a marker is
kept from the previous file."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from . import header_fidelity
from .scenarios import Scenario
from .stats import Summary, ratio
from .targets import CCR, DIRECT, JS_FLOOR, PY_FLOOR, RELAY, Target

if TYPE_CHECKING:
    from .run import Results

HAND_WRITTEN = "<!-- Everything below this line is written by hand; `make bench` keeps it as it is. -->"

READING = f"""\
## How to read the tables

- **p50 / p99** are the median and the 99th percentile (nearest rank: an observed sample) of
  every sample a target gave in that scenario, over all rounds.
- **+ vs {DIRECT}** is the target's p50 minus the direct p50: the time the hop adds.
  **+ vs {JS_FLOOR}** is the target's p50 minus the JS floor's: for relay, the cost of relay's
  own code (Python on Pyodide, auth, routing, key choice, rate-limit check) above the cheapest
  Worker the same runtime can run.
- **× {DIRECT}** / **× {JS_FLOOR}** divide the target's p50 (latency rows) or requests/s (the
  concurrency row) by the reference's.
- Everything runs on loopback on one machine: client, fake upstream, the gateways and
  the Workers share its CPUs (and other people's jobs, see the load average), so the
  absolute numbers are a local development setup's, not Cloudflare's edge. The direct row is
  bounded by the Python fake upstream and the Python client, so its requests/s is a ceiling of
  this harness, not of a provider.
- The Worker targets (the two floors and relay) run on the pinned workerd through miniflare,
  the library `wrangler dev` uses, with the same bindings (D1, KV, rate limits, from the same
  wrangler.toml), but without `wrangler dev`'s development tooling
  (`bench/miniflare_worker.py`): its reload proxy (a second workerd in front of the Worker)
  and its inspector, which streams every request's network events to wrangler's Node
  process. Measured here, that tooling halved the JS floor's and relay's throughput at
  concurrency 16 and added 2 to 5 ms to their first byte; a deployed Worker has neither.
  The tests still run relay under `wrangler dev`.
- **CPU ms/req** is the CPU time (user + system, from `/proc/<pid>/stat`) the target's own
  processes used during its batches and the moment after each (what a batch leaves running,
  such as relay's deferred writes of audit rows), divided by its requests: the workerd that runs the Worker
  for the Worker targets (not miniflare's Node process, which starts it and then idles: 0.00
  CPU ms per request when measured), every process of the gateway for the peers; the fake
  upstream and the client are not counted, so direct has none. **Resident memory** sums the RSS of the same
  processes after the last round (pages they share count twice).
- The peers run as their own documentation sets them up for this job, in front of the same
  fake, with their logging/telemetry options off where they have one; LiteLLM and
  claude-code-router check a key of their own, Portkey's gateway has none (the client sends the
  provider key).
- Targets are measured interleaved, round by round in a rotating order, after a discarded
  warm-up round, so that a change in the machine's load falls on all of them alike.
"""


def _ms(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _times(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def _minus(value: float, reference: float | None) -> float | None:
    return None if reference is None else value - reference


def _p50(row: Summary | None) -> float | None:
    return row and row.p50


def _rate(row: Summary | None) -> float | None:
    return row and row.rate


def _cpu(row: Summary) -> str:
    return "–" if row.cpu_ms_per_request is None else f"{row.cpu_ms_per_request:.2f}"


# A table's columns: (heading, cell from (row, direct's row, JS floor's row)).
Cell = Callable[[Summary, Summary | None, Summary | None], str]
LATENCY_COLUMNS: tuple[tuple[str, Cell], ...] = (
    ("p50 ms", lambda row, direct, floor: _ms(row.p50)),
    ("p99 ms", lambda row, direct, floor: _ms(row.p99)),
    (f"+ vs {DIRECT}", lambda row, direct, floor: _ms(_minus(row.p50, _p50(direct)), signed=True)),
    (f"+ vs {JS_FLOOR}", lambda row, direct, floor: _ms(_minus(row.p50, _p50(floor)), signed=True)),
    (f"× {DIRECT}", lambda row, direct, floor: _times(ratio(row.p50, _p50(direct)))),
    (f"× {JS_FLOOR}", lambda row, direct, floor: _times(ratio(row.p50, _p50(floor)))),
    ("CPU ms/req", lambda row, direct, floor: _cpu(row)),
    ("samples", lambda row, direct, floor: str(row.samples)),
)
STREAM_COLUMNS: tuple[tuple[str, Cell], ...] = (
    LATENCY_COLUMNS[:-1]
    + (
        ("first byte p50 ms", lambda row, direct, floor: _ms(row.first_byte_p50)),
        ("first byte p99 ms", lambda row, direct, floor: _ms(row.first_byte_p99)),
        (
            f"first byte + vs {DIRECT}",
            lambda row, direct, floor: _ms(_minus(row.first_byte_p50, direct and direct.first_byte_p50), signed=True),
        ),
    )
    + LATENCY_COLUMNS[-1:]
)
RATE_COLUMNS: tuple[tuple[str, Cell], ...] = (
    ("requests/s", lambda row, direct, floor: f"{row.rate:.0f}"),
    (f"× {DIRECT}", lambda row, direct, floor: _times(ratio(row.rate, _rate(direct)))),
    (f"× {JS_FLOOR}", lambda row, direct, floor: _times(ratio(row.rate, _rate(floor)))),
    ("latency p50 ms", lambda row, direct, floor: _ms(row.p50)),
    ("latency p99 ms", lambda row, direct, floor: _ms(row.p99)),
    ("CPU ms/req", lambda row, direct, floor: _cpu(row)),
    ("requests", lambda row, direct, floor: str(row.samples)),
)
COLUMNS = {"latency": LATENCY_COLUMNS, "stream": STREAM_COLUMNS, "rate": RATE_COLUMNS}


def _table(rows: Mapping[str, Summary], columns: Sequence[tuple[str, Cell]]) -> list[str]:
    direct, floor = rows.get(DIRECT), rows.get(JS_FLOOR)
    lines = ["| target | " + " | ".join(heading for heading, _ in columns) + " |", "|---|" + "---:|" * len(columns)]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(cell(row, direct, floor) for _, cell in columns) + " |")
    return lines


# relay against a peer: (what, scenario key, value from a summary, True when higher is better).
Comparison = tuple[str, str, Callable[[Summary], float | None], bool]
COMPARISONS: tuple[Comparison, ...] = (
    ("time to first byte p50 (burst)", "ttfb", lambda s: s.p50, False),
    ("time to first byte p99 (burst)", "ttfb", lambda s: s.p99, False),
    ("time to first byte p50 (paced)", "sse", lambda s: s.first_byte_p50, False),
    ("time to first byte p99 (paced)", "sse", lambda s: s.first_byte_p99, False),
    ("gap between SSE events p50", "sse", lambda s: s.p50, False),
    ("gap between SSE events p99", "sse", lambda s: s.p99, False),
    ("requests/s at concurrency 16", "load", lambda s: s.rate, True),
    ("latency p99 at concurrency 16", "load", lambda s: s.p99, False),
    ("CPU ms per small request", "load", lambda s: s.cpu_ms_per_request, False),
    ("200 KB body p50", "large", lambda s: s.p50, False),
    ("200 KB body p99", "large", lambda s: s.p99, False),
)
EVEN = 0.05  # within 5%: neither is ahead


def _verdict(relay: float | None, peer: float | None, higher_is_better: bool) -> tuple[str, bool | None]:
    """The cell "relay / peer" and whether relay is ahead (None: even or unknown)."""
    times = ratio(relay, peer)
    if times is None:
        return "–", None
    if abs(times - 1) <= EVEN:
        return f"{times:.2f}× even", None
    ahead = (times > 1) == higher_is_better
    return f"{times:.2f}× {'relay' if ahead else '**peer**'} ahead", ahead


def _against(results: Results, ours: str, peer: str) -> dict[str, tuple[str, bool | None]]:
    """Per measure (COMPARISONS, then memory): the cell `ours / peer` and whether ours is ahead."""
    verdicts = {}
    for what, key, value, higher in COMPARISONS:
        mine, theirs = results.summaries.get(key, {}).get(ours), results.summaries.get(key, {}).get(peer)
        verdicts[what] = _verdict(mine and value(mine), theirs and value(theirs), higher)
    verdicts["resident memory"] = _verdict(results.rss_bytes.get(ours), results.rss_bytes.get(peer), False)
    return verdicts


def _versus_peers(targets: Sequence[Target], results: Results) -> list[str]:
    peers = [t.name for t in targets if t.peer and t.name not in results.left_out]
    if not peers or RELAY not in results.headers:
        return []
    out = [
        "## relay against each peer",
        "",
        "Each cell is relay's value divided by the peer's (for requests/s a number above 1 means "
        "relay served more; for the rest, below 1 means relay was faster or cheaper), then who is "
        f"ahead; within {EVEN:.0%} counts as even. relay's figures include workerd's own cost, "
        f"which alone is the {JS_FLOOR} row of each table, and Python's, which with it is the "
        f"{PY_FLOOR} row; the lists below say where those floors, which run none of relay's code, "
        f"lose to the peer too.",
        "",
        "| measure | " + " | ".join(peers) + " |",
        "|---|" + "---:|" * len(peers),
    ]
    relay = {name: _against(results, RELAY, name) for name in peers}
    floors = {
        floor: {name: _against(results, floor, name) for name in peers}
        for floor in (JS_FLOOR, PY_FLOOR)
        if floor in results.headers
    }
    for what in relay[peers[0]]:
        out.append(f"| {what} | " + " | ".join(relay[name][what][0] for name in peers) + " |")
    out.append("")
    for name in peers:
        lost = [what for what, (_, ahead) in relay[name].items() if ahead is False]
        if not lost:
            out.append(f"- relay loses to {name} on none of these measures.")
            continue
        notes = []
        for floor, against in floors.items():
            also = [what for what in lost if against[name][what][1] is False]
            notes.append(
                f"The {floor} loses to it on "
                + (f"{len(also)} of these: {', '.join(also)}." if also else "none of these.")
            )
        out.append(f"- relay loses to {name} on: {', '.join(lost)}. " + " ".join(notes))
    return out + [""]


# The measures of relay's cost goal (issue 15), compared round by round: (what, scenario key,
# value from a summary, True for a ratio relay / reference, False for a difference in ms).
PAIRED: tuple[tuple[str, str, Callable[[Summary], float | None], bool], ...] = (
    ("CPU ms per small request at concurrency 16", "load", lambda s: s.cpu_ms_per_request, True),
    ("requests/s at concurrency 16", "load", lambda s: s.rate, True),
    ("time to first byte p50 (burst)", "ttfb", lambda s: s.p50, False),
    ("time to first byte p50 (paced)", "sse", lambda s: s.first_byte_p50, False),
)


def _compared(relay: float | None, reference: float | None, as_ratio: bool) -> float | None:
    if as_ratio:
        return ratio(relay, reference)
    return None if relay is None else _minus(relay, reference)


def _figure(value: float, as_ratio: bool) -> str:
    return f"{value:.2f}×" if as_ratio else f"{value:+.2f} ms"


def _paired(
    results: Results, reference: str, key: str, value: Callable[[Summary], float | None], as_ratio: bool
) -> tuple[float | None, list[float]]:
    """relay against `reference` in one measure: over all rounds pooled, and each round's own."""
    mine, theirs = results.summaries.get(key, {}).get(RELAY), results.summaries.get(key, {}).get(reference)
    overall = _compared(mine and value(mine), theirs and value(theirs), as_ratio)
    rounds = results.rounds.get(key, {})
    each = [
        _compared(value(mine), value(theirs), as_ratio)
        for mine, theirs in zip(rounds.get(RELAY, []), rounds.get(reference, []))
    ]
    return overall, [figure for figure in each if figure is not None]


def _round_by_round(results: Results) -> list[str]:
    references = [name for name in (PY_FLOOR, CCR) if name in results.summaries.get("load", {})]
    if RELAY not in results.summaries.get("load", {}) or not references:
        return []
    out = [
        "## relay's cost, round by round",
        "",
        "The measures of relay's cost goal, relay against the Python floor (the least a Python Worker "
        "does) and claude-code-router: relay's figure divided by the other's (CPU, requests/s) or "
        "minus it (first bytes). A round measures every target within seconds, so a round's figure "
        "is free of the machine's drift between rounds, which the pooled tables above are not (on "
        "this shared machine its speed has moved by 2× within an hour); the median round is the one "
        "to judge a goal by, and the range shows how far the rounds spread.",
        "",
        "| measure | "
        + " | ".join(
            f"vs {name}: {what}" for name in references for what in ("all rounds", "median round", "rounds' range")
        )
        + " |",
        "|---|" + "---:|" * (3 * len(references)),
    ]
    for what, key, value, as_ratio in PAIRED:
        cells = []
        for reference in references:
            overall, each = _paired(results, reference, key, value, as_ratio)
            cells.append("–" if overall is None else _figure(overall, as_ratio))
            cells.append(_figure(statistics.median(each), as_ratio) if each else "–")
            cells.append(f"{_figure(min(each), as_ratio)} to {_figure(max(each), as_ratio)}" if each else "–")
        out.append(f"| {what} | " + " | ".join(cells) + " |")
    return out + [""]


def _memory(targets: Sequence[Target], results: Results) -> list[str]:
    out = [
        "### Resident memory and idle CPU",
        "",
        "The sum of the resident set sizes of the target's processes after the last round, and the "
        "CPU they used while left idle for a moment after the warm-up round (part of every CPU "
        "ms/req figure above, most in the long paced streams).",
        "",
        "| target | processes' RSS MiB | idle CPU % of a core |",
        "|---|---:|---:|",
    ]
    out += [
        f"| {t.name} | {results.rss_bytes[t.name] / 2**20:.0f} | {results.idle_cpu_percent.get(t.name, 0):.1f} |"
        for t in targets
        if t.name in results.rss_bytes
    ]
    return out + [""]


def _headers(targets: Sequence[Target], results: Results) -> list[str]:
    names = [t.name for t in targets if t.name in results.headers]
    out = [
        "### Header fidelity",
        "",
        "One request per target with the fields Claude Code sends (`anthropic-version`, "
        "`anthropic-beta`, eight `x-stainless-*`, `x-claude-code-session-id`) and the target's own "
        'client key; "yes" when the fake upstream recorded each field with the value sent, and '
        "(last row) when the client's key reached the upstream in no field at all.",
        "",
        "| field | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    out += [
        f"| {row} | " + " | ".join(results.headers[name][row] for name in names) + " |" for row in header_fidelity.ROWS
    ]
    return out + [""]


def render(
    machine: Sequence[tuple[str, str]],
    targets: Sequence[Target],
    scenarios: Sequence[Scenario],
    results: Results,
    rounds: int,
) -> str:
    """The generated part of BENCHMARKS.md."""
    out = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`python -m bench.run --write`); rerun it rather than editing by hand "
        "(the hand-written part at the end is kept).",
        "",
        "Targets, all in front of the same fake Anthropic upstream (`devtools/fake_upstream.py`) on loopback:",
        "",
    ]
    out += [f"- **{target.name}**: {target.description}." for target in targets if target.name not in results.left_out]
    if results.left_out:
        out += ["", "Left out of this run:", ""]
        out += [f"- **{name}**: {why}" for name, why in results.left_out.items()]
    out += ["", "## Machine", "", "| | |", "|---|---|"]
    out += [f"| {what} | {value} |" for what, value in machine]
    out += [
        "",
        "## Results",
        "",
        f"{rounds} measured round{'s' if rounds != 1 else ''}; per round and target, "
        "each scenario sends the number of requests its section names.",
        "",
    ]
    for scenario in scenarios:
        out += [
            f"### {scenario.title}",
            "",
            f"{scenario.explanation} {scenario.per_round} requests per target per round.",
            "",
        ]
        out += _table(results.summaries[scenario.key], COLUMNS[scenario.kind]) + [""]
    out += _memory(targets, results) + _headers(targets, results) + _versus_peers(targets, results)
    out += _round_by_round(results)
    out.append(READING)
    return "\n".join(out)


def keep_hand_written(generated: str, previous: str) -> str:
    """The generated text followed by the previous file's hand-written part, if it had one."""
    if HAND_WRITTEN not in previous:
        return generated
    return generated.rstrip("\n") + "\n\n" + HAND_WRITTEN + previous.split(HAND_WRITTEN, 1)[1]
