"""The bench's measures beyond percentiles: header verdicts, process CPU and memory, first
bytes and CPU per request in a summary, and the hand-written part BENCHMARKS.md keeps."""

import os
import socket

from bench import processes
from bench.header_fidelity import CLAUDE_CODE_FIELDS, CLIENT_KEY, STAINLESS, verdicts
from bench.report import HAND_WRITTEN, keep_hand_written
from bench.stats import summarize


def test_header_verdicts_say_what_was_lost_changed_or_leaked():
    sent = [(name.title(), value) for name, value in CLAUDE_CODE_FIELDS.items()]  # names compare case-free
    assert set(verdicts(sent + [("x-api-key", "upstream")], "gateway-key").values()) == {"yes"}

    lossy = [(n, v) for n, v in sent if n.lower() not in ("x-stainless-os", "x-claude-code-session-id")]
    lossy = [(n, "2024-01-01" if n.lower() == "anthropic-version" else v) for n, v in lossy]
    result = verdicts(lossy + [("authorization", "Bearer gateway-key")], "gateway-key")
    assert result["anthropic-version"] == "no (changed)"
    assert result["x-claude-code-session-id"] == "no (missing)"
    assert result[STAINLESS] == "no (1 of 8 lost or changed)"
    assert result[CLIENT_KEY] == "no (in authorization)"
    assert verdicts(sent, None)[CLIENT_KEY].startswith("n/a")


def test_a_summary_carries_first_bytes_and_cpu_per_request():
    summary = summarize([20.0, 21.0], requests=4, seconds=2.0, first_byte_ms=[3.0, 5.0, 4.0], cpu_seconds=0.1)
    assert (summary.first_byte_p50, summary.first_byte_p99) == (4.0, 5.0)
    assert summary.cpu_ms_per_request == 25.0
    plain = summarize([1.0], requests=1, seconds=1.0)
    assert plain.first_byte_p50 is None and plain.cpu_ms_per_request is None


def test_processes_are_found_by_their_port_and_measured():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert processes.listener(port) == os.getpid()
        assert processes.serving(port) == [os.getpid()]  # the bench's own session: only the listener
    sum(i * i for i in range(200_000))  # some CPU time to see
    assert processes.cpu_seconds([os.getpid()]) > 0
    assert processes.rss_bytes([os.getpid()]) > 1_000_000
    assert processes.serving(port) == []  # nobody listens any more


def test_the_hand_written_part_survives_a_rewrite():
    previous = f"# Benchmarks\nold numbers\n\n{HAND_WRITTEN}\n\n## Savings\nkept\n"
    written = keep_hand_written("# Benchmarks\nnew numbers\n", previous)
    assert written == f"# Benchmarks\nnew numbers\n\n{HAND_WRITTEN}\n\n## Savings\nkept\n"
    assert keep_hand_written("# new\n", "# no marker\n") == "# new\n"


def test_the_report_names_every_measure_relay_loses_to_a_peer():
    from bench import report, scenarios, targets
    from bench.run import Results

    results = Results()
    for scenario in scenarios.SCENARIOS:  # target i is i ms slower than direct, and i times faster at load
        results.summaries[scenario.key] = {
            t.name: summarize([1.0 + i], 1, 1.0 / (i + 1), [1.0 + i], 0.001 * i if i else None)
            for i, t in enumerate(targets.TARGETS)
            if t.runs(scenario.key)
        }
    for i, target in enumerate(targets.TARGETS):
        results.headers[target.name] = {row: "yes" for row in report.header_fidelity.ROWS}
        results.rss_bytes[target.name] = (i + 1) * 2**20
    text = report.render([("date (UTC)", "now")], targets.TARGETS, scenarios.SCENARIOS, results, rounds=1)
    assert "| relay, cache off |" in text and "| x-claude-code-session-id | yes |" in text
    assert "- relay loses to LiteLLM on: requests/s at concurrency 16. The JS floor loses to it on 1 of these" in text
    assert "The Python floor loses to it on 1 of these: requests/s at concurrency 16." in text


def test_relays_cost_is_also_compared_round_by_round():
    from bench import report
    from bench.run import Results
    from bench.targets import CCR, PY_FLOOR, RELAY

    results = Results()
    # relay's CPU per request is twice the floor's in round 1, 1.5 times in rounds 2 and 3; its
    # first byte 2, 1 and 4 ms later. Pooled, round 1 (slow machine) weighs most.
    cpu = {RELAY: [8.0, 3.0, 3.0], PY_FLOOR: [4.0, 2.0, 2.0]}
    first = {RELAY: [7.0, 5.0, 9.0], PY_FLOOR: [5.0, 4.0, 5.0]}
    for name in (RELAY, PY_FLOOR):
        results.rounds.setdefault("load", {})[name] = [summarize([1.0], 10, 1.0, (), ms / 100) for ms in cpu[name]]
        results.rounds.setdefault("ttfb", {})[name] = [summarize([ms], 1, 1.0) for ms in first[name]]
        results.summaries.setdefault("load", {})[name] = summarize([1.0], 30, 3.0, (), sum(cpu[name]) / 100)
        results.summaries.setdefault("ttfb", {})[name] = summarize(first[name], 3, 3.0)
    text = "\n".join(report._round_by_round(results))
    assert "| vs Python floor: all rounds | vs Python floor: median round | vs Python floor: rounds' range |" in text
    assert f"vs {CCR}" not in text  # not measured in this run
    assert "| CPU ms per small request at concurrency 16 | 1.75× | 1.50× | 1.50× to 2.00× |" in text
    assert "| time to first byte p50 (burst) | +2.00 ms | +2.00 ms | +1.00 ms to +4.00 ms |" in text
    assert "| time to first byte p50 (paced) | – | – | – |" in text  # no paced rounds in this run
