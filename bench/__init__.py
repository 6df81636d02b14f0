"""relay's benchmarks, measured from outside the Worker (timers do not advance inside it).

`python -m bench.run` (or `make bench`): relay on workerd against the same fake upstream
reached directly and through a minimal JavaScript Worker on the same runtime (the platform
floor), every scenario against every target in one run, interleaved round by round so that
drift in a shared machine's load hits them alike; `--write` puts the results into
BENCHMARKS.md. Targets live in `targets.py`, scenarios in `scenarios.py`: a peer gateway or
a new measurement is one more entry in a table there.

`python -m bench.cache_savings`: what relay's prompt-cache markers save and cost
(BENCHMARKS_CACHE.md).
"""
