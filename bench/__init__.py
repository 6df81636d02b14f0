"""relay's benchmark: relay on workerd against the same fake upstream reached directly and
through a minimal JavaScript Worker on the same runtime (the platform floor).

`python -m bench.run` (or `make bench`) measures every scenario against every target in one
run, interleaved round by round so that drift in a shared machine's load hits them alike;
`--write` puts the results into BENCHMARKS.md. Targets live in `targets.py`, scenarios in
`scenarios.py`: a peer gateway or a new measurement is one more entry in a table there.
"""
