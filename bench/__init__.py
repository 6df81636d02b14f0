"""relay's benchmarks, measured from outside the Worker (timers do not advance inside it).

`python -m bench.run` (or `make bench`, which first installs the peers): relay on workerd
against the same fake upstream reached directly, through a minimal JavaScript Worker on the
same runtime (the platform floor) and through three peer gateways (LiteLLM, Portkey's gateway,
claude-code-router; `peer_gateways.py`, installed from bench/peers/), every scenario against
every target in one run, interleaved round by round so that drift in a shared machine's load
hits them alike; `--write` puts the results into BENCHMARKS.md. Targets live in `targets.py`,
scenarios in `scenarios.py`: a peer gateway or a new measurement is one more entry in a table
there. Per target the run also reads its processes' CPU time and memory (`processes.py`) and
checks which header fields reach the upstream unchanged (`header_fidelity.py`).

`python -m bench.cache_savings`: what relay's prompt-cache markers save (the hand-written
section of BENCHMARKS.md); what they cost in latency is a scenario of `bench.run`.
"""
