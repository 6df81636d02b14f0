"""How much of a client's text relay keeps: in audit rows, and in the error messages it makes.

Text from a request (model, session id, path, user agent, ...) is bounded only by the
body and header limits, megabytes. Stored whole, one row could sink the statement that
writes a whole group of rows (D1 refuses a value over about 2 MB), and an error quoting it
would send it back whole. So a text column keeps at most FIELD_CHARS characters and an
error message at most MESSAGE_CHARS; a cut value ends with "…". No real model name,
session id or client name comes near these lengths.

Stored text is also made valid UTF-8: JSON lets a client send a lone surrogate ("\\ud800"),
which no UTF-8 text can hold; it is kept as U+FFFD (so is a session id, which is hashed).
"""

from __future__ import annotations

import re

FIELD_CHARS = 256
MESSAGE_CHARS = 512
LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # a str holds a valid pair as one character


def clip(text: str, most: int) -> str:
    """`text`, or its start and "…" in `most` characters."""
    return text if len(text) <= most else text[: most - 1] + "…"


def well_formed(text: str) -> str:
    """`text` with each lone surrogate as U+FFFD: it encodes as UTF-8."""
    return LONE_SURROGATE.sub("\ufffd", text)


def stored(text: str) -> str:
    """`text` as an audit row keeps it."""
    if text.isascii() and len(text) <= FIELD_CHARS:  # nearly every one: as it is, with no call
        return text
    return well_formed(clip(text, FIELD_CHARS))
