"""The suite's final scan for secrets (tests/e2e/conftest.py): where a secret appears, told
without the secret."""

from __future__ import annotations

from typing import Iterable, Sequence, Union

# At most this many places are named in a finding; the rest are counted.
NAMED_PLACES = 20


def redact(text: str, secrets: Sequence[str]) -> str:
    """`text` with each secret replaced by its number: fit for a message."""
    for number, secret in enumerate(secrets):
        text = text.replace(secret, f"<secret {number}>")
    return text


def leaks(secrets: Sequence[str], places: Iterable[tuple[str, Union[str, bytes]]]) -> list[str]:
    """One line per place whose contents hold a secret: the place (redacted) and the secrets'
    numbers in `secrets`."""
    found = []
    for where, contents in places:
        numbers = [n for n, secret in enumerate(secrets)
                   if (secret if isinstance(contents, str) else secret.encode()) in contents]
        if numbers:
            found.append(f"{redact(where, secrets)}: secrets number {numbers}")
    return found


def summary(found: list[str]) -> str:
    more = len(found) - NAMED_PLACES
    return "\n".join(found[:NAMED_PLACES] + ([f"... and {more} more places"] if more > 0 else []))
