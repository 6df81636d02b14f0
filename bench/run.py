"""`python -m bench.run [--rounds N] [--write]`: run every scenario against every target,
interleaved, print the report, and with --write store it in BENCHMARKS.md."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Sequence

import httpx

from tests.workerd import ROOT

from . import machine, report
from .scenarios import ANTHROPIC_HEADERS, SCENARIOS, TIMEOUT_S, Batch, Scenario
from .stats import Summary, summarize
from .targets import TARGETS, Target, start_fake_upstream

DEFAULT_ROUNDS = 10
OUTPUT = ROOT / "BENCHMARKS.md"


def measure(targets: Sequence[Target], scenarios: Sequence[Scenario], rounds: int) -> dict[str, dict[str, Summary]]:
    """Round 0 warms every target up (the first request to a Python Worker loads its
    interpreter) and is discarded; each later round runs every scenario against every target,
    starting with a different target each round."""
    batches: dict[tuple[str, str], list[Batch]] = {}
    with contextlib.ExitStack() as stack:
        upstream = start_fake_upstream(stack)
        endpoints = {}
        for target in targets:
            print(f"starting {target.name} ...", file=sys.stderr, flush=True)
            endpoints[target.name] = target.start(upstream, stack)
        clients = {name: stack.enter_context(httpx.Client(base_url=endpoint.url, timeout=TIMEOUT_S,
                                                          headers={**ANTHROPIC_HEADERS, **endpoint.headers}))
                   for name, endpoint in endpoints.items()}
        for round_number in range(rounds + 1):
            print(f"round {round_number}/{rounds}{' (warm-up)' if not round_number else ''}", file=sys.stderr,
                  flush=True)
            shift = round_number % len(targets)
            order = [*targets[shift:], *targets[:shift]]
            for scenario in scenarios:
                for target in order:
                    batch = scenario.run(endpoints[target.name], clients[target.name], scenario.per_round)
                    if round_number:
                        batches.setdefault((scenario.key, target.name), []).append(batch)
    return {scenario.key: {target.name: _combined(batches[scenario.key, target.name]) for target in targets}
            for scenario in scenarios}


def _combined(batches: list[Batch]) -> Summary:
    return summarize([ms for batch in batches for ms in batch.samples_ms], sum(b.requests for b in batches),
                     sum(b.seconds for b in batches))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="measured rounds (default %(default)s)")
    parser.add_argument("--write", action="store_true", help=f"write the report to {OUTPUT.name}")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    facts = machine.describe()
    results = measure(TARGETS, SCENARIOS, args.rounds)
    facts.append(("load average at end", machine.load_average()))
    text = report.render(facts, TARGETS, SCENARIOS, results, args.rounds)
    print(text)
    if args.write:
        OUTPUT.write_text(text)
        print(f"wrote {OUTPUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
