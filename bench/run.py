"""`python -m bench.run [--rounds N] [--write]`: run every scenario against every target,
interleaved, print the report, and with --write store it in BENCHMARKS.md."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from devtools.local_worker import ROOT
from relay.usage.meter import WRITE_DELAY_SECONDS

from . import header_fidelity, machine, processes, report
from .endpoint import Endpoint
from .peer_gateways import PeerMissing
from .scenarios import ANTHROPIC_HEADERS, SCENARIOS, TIMEOUT_S, Batch, BenchError, Scenario
from .stats import Summary, summarize
from .targets import PY_FLOOR, RELAY, TARGETS, Target
from .upstream_process import UpstreamProcess

DEFAULT_ROUNDS = 8
IDLE_S = 2.0  # how long every target is left idle, after the warm-up, to see its background CPU
# How long after its batch a target's CPU is read, so that what the batch left running is its
# own: relay writes a group of audit rows WRITE_DELAY_SECONDS after the first of them ended, in
# waitUntil. Read at once, the last group of each batch (all of a burst's) went uncounted.
SETTLE_S = WRITE_DELAY_SECONDS + 0.1
OUTPUT = ROOT / "BENCHMARKS.md"


@dataclass
class Results:
    """What a run found: `summaries[scenario key][target name]`, and per target its header
    verdicts, its processes' resident memory at the end, or why it was left out."""

    summaries: dict[str, dict[str, Summary]] = field(default_factory=dict)
    # `rounds[scenario key][target name]`: each measured round's batch summarized on its own.
    rounds: dict[str, dict[str, list[Summary]]] = field(default_factory=dict)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    rss_bytes: dict[str, int] = field(default_factory=dict)
    idle_cpu_percent: dict[str, float] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)


def _start(
    targets: Sequence[Target], upstream: str, stack: contextlib.ExitStack, results: Results
) -> dict[str, Endpoint]:
    endpoints = {}
    for target in targets:
        print(f"starting {target.name} ...", file=sys.stderr, flush=True)
        if not target.peer:
            endpoints[target.name] = target.start(upstream, stack)
            continue
        try:
            endpoints[target.name] = target.start(upstream, stack)
        except (PeerMissing, RuntimeError, TimeoutError, OSError) as exc:
            results.left_out[target.name] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            print(f"{target.name} left out: {exc}", file=sys.stderr, flush=True)
    return endpoints


def measure(targets: Sequence[Target], scenarios: Sequence[Scenario], rounds: int) -> Results:
    """Round 0 warms every target up (the first request to a Python Worker loads its
    interpreter) and is discarded; each later round runs every scenario against every target,
    starting with a different target each round. The CPU time of a target's processes is read
    before each of its batches and SETTLE_S after it; its memory once all rounds are done."""
    results = Results()
    batches: dict[tuple[str, str], list[Batch]] = {}
    cpu: dict[tuple[str, str], float] = {}
    with contextlib.ExitStack() as stack:
        upstream = stack.enter_context(UpstreamProcess())
        endpoints = _start(targets, upstream.url, stack, results)
        running = [target for target in targets if target.name in endpoints]
        clients = {
            name: stack.enter_context(
                httpx.Client(
                    base_url=endpoint.url, timeout=TIMEOUT_S, headers={**ANTHROPIC_HEADERS, **endpoint.headers}
                )
            )
            for name, endpoint in endpoints.items()
        }
        # The gateways' own processes; direct has none (its server is the fake upstream).
        pids = {
            target.name: processes.serving(endpoints[target.name].port, endpoints[target.name].listener_only)
            for target in running
            if endpoints[target.name].url != upstream.url
        }
        for round_number in range(rounds + 1):
            print(
                f"round {round_number}/{rounds}{' (warm-up)' if not round_number else ''}", file=sys.stderr, flush=True
            )
            shift = round_number % len(running)
            order = [*running[shift:], *running[:shift]]
            for scenario in scenarios:
                for target in (t for t in order if t.runs(scenario.key)):
                    before = processes.cpu_seconds(pids.get(target.name, []))
                    try:
                        batch = scenario.run(endpoints[target.name], clients[target.name], scenario.per_round)
                    except BenchError as exc:
                        raise BenchError(f"{target.name}, {scenario.key}: {exc}") from exc
                    if round_number:
                        time.sleep(SETTLE_S)
                        batches.setdefault((scenario.key, target.name), []).append(batch)
                        used = processes.cpu_seconds(pids.get(target.name, [])) - before
                        cpu[scenario.key, target.name] = cpu.get((scenario.key, target.name), 0.0) + used
                        results.rounds.setdefault(scenario.key, {}).setdefault(target.name, []).append(
                            _combined([batch], used if target.name in pids else None)
                        )
            if not round_number:
                results.idle_cpu_percent = _idle_cpu(pids)
        for target in running:
            results.headers[target.name] = header_fidelity.probe(
                endpoints[target.name], clients[target.name], upstream.headers_seen
            )
            if target.name in pids:
                results.rss_bytes[target.name] = processes.rss_bytes(pids[target.name])
    for scenario in scenarios:
        results.summaries[scenario.key] = {
            target.name: _combined(
                batches[scenario.key, target.name], cpu[scenario.key, target.name] if target.name in pids else None
            )
            for target in running
            if target.runs(scenario.key)
        }
    return results


def _idle_cpu(pids: dict[str, list[int]]) -> dict[str, float]:
    """Each target's CPU use while no request is made (% of one core): what its batches'
    CPU time includes besides the requests."""
    before = {name: processes.cpu_seconds(own) for name, own in pids.items()}
    time.sleep(IDLE_S)
    return {name: (processes.cpu_seconds(own) - before[name]) / IDLE_S * 100 for name, own in pids.items()}


def _combined(batches: list[Batch], cpu_seconds: float | None) -> Summary:
    return summarize(
        [ms for batch in batches for ms in batch.samples_ms],
        sum(b.requests for b in batches),
        sum(b.seconds for b in batches),
        [ms for batch in batches for ms in batch.first_byte_ms],
        cpu_seconds,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="measured rounds (default %(default)s)")
    parser.add_argument("--write", action="store_true", help=f"write the report to {OUTPUT.name}")
    parser.add_argument(
        "--only",
        action="append",
        metavar="TARGET",
        choices=[t.name for t in TARGETS],
        help="measure only this target (repeatable; for trying a change, not for --write)",
    )
    parser.add_argument(
        "--ablations",
        action="store_true",
        help="measure relay with one stage taken out at a time, beside relay and the Python floor",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if (args.only or args.ablations) and args.write:
        parser.error("--write wants every target, and no ablations")
    if args.ablations:
        targets = [t for t in TARGETS if t.ablation or t.name in (RELAY, PY_FLOOR) or t.name in (args.only or ())]
    else:
        targets = [t for t in TARGETS if not t.ablation and (not args.only or t.name in args.only)]
    facts = machine.describe()
    results = measure(targets, SCENARIOS, args.rounds)
    facts.append(("load average at end", machine.load_average()))
    text = report.render(facts, targets, SCENARIOS, results, args.rounds)
    print(text)
    if args.write:
        OUTPUT.write_text(report.keep_hand_written(text, OUTPUT.read_text() if OUTPUT.exists() else ""))
        print(f"wrote {OUTPUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
