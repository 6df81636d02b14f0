"""The suite's own leftovers for its final scan for secrets (tests/e2e/conftest.py), and the
scan itself: where a secret appears, told without the secret.

`tests/conftest.py` keeps the text of every test report here as the suite runs: the test's
id, what a failure or error printed, and the output it captured (stdout, stderr, log), the
text `pytest` shows or writes to a report file; and every warning.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

# (where, text) of every test report and warning so far.
REPORTS: list[tuple[str, str]] = []
# At most this many places are named in a finding; the rest are counted.
NAMED_PLACES = 20


def keep_report(report) -> None:
    sections = [f"{title}\n{content}" for title, content in report.sections]
    text = "\n".join([report.nodeid, report.longreprtext, *sections])
    REPORTS.append((f"the report of {report.nodeid or 'the collection'} ({getattr(report, 'when', 'collect')})", text))


def keep_warning(message: str, nodeid: str) -> None:
    REPORTS.append((f"a warning ({nodeid or 'no test'})", f"{nodeid}\n{message}"))


def redact(text: str, secrets: Sequence[str]) -> str:
    """`text` with each secret replaced by its number: fit for a message."""
    for number, secret in enumerate(secrets):
        text = text.replace(secret, f"<secret {number}>")
    return text


def leaks(secrets: Sequence[str], places: Iterable[tuple[str, str | bytes]]) -> list[str]:
    """One line per place whose contents hold a secret: the place (redacted) and the secrets'
    numbers in `secrets`."""
    found = []
    for where, contents in places:
        numbers = [
            n
            for n, secret in enumerate(secrets)
            if (secret if isinstance(contents, str) else secret.encode()) in contents
        ]
        if numbers:
            found.append(f"{redact(where, secrets)}: secrets number {numbers}")
    return found


def summary(found: list[str]) -> str:
    more = len(found) - NAMED_PLACES
    return "\n".join(found[:NAMED_PLACES] + ([f"... and {more} more places"] if more > 0 else []))
