"""relay's one log function: a line on the Worker's console (`wrangler tail`, Workers Logs).

A message names keys by their short ids only (relay keys `rk_…`, upstream keys
`<provider>-<hash>`), never a key, a token or a request's content.
"""

from __future__ import annotations


def log(message: str) -> None:
    """One log line, prefixed "relay: " (a traceback may follow on the lines after it)."""
    print(f"relay: {message}")
