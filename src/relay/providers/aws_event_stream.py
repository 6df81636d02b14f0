"""AWS event-stream (`application/vnd.amazon.eventstream`) decoded incrementally.

Each message is a 12-byte prelude (total length, headers length, CRC32 of those 8 bytes),
header fields (name length, name, value type, value), the payload, and a CRC32 of all
that came before it. Bytes arrive in chunks cut anywhere; `Decoder.feed` returns each
message once its last byte is in, and keeps the rest, so no more than one message is
ever held.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

PRELUDE_BYTES = 12
# Largest message relay accepts (AWS's own limit is 16 MiB): a corrupt length stops the
# stream instead of making relay wait for bytes that never come.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# Value type -> fixed size in bytes; types 6 (bytes) and 7 (string) carry a 2-byte length.
_FIXED = {0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}


class EventStreamError(ValueError):
    """The bytes are not a valid event stream (a bad CRC, length or header)."""


@dataclass(frozen=True)
class Message:
    headers: dict[str, object]
    payload: bytes

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        return value if isinstance(value, str) else None


def _headers(data: bytes) -> dict[str, object]:
    headers: dict[str, object] = {}
    at = 0
    while at < len(data):
        size = data[at]
        name = data[at + 1 : at + 1 + size].decode("utf-8", "replace")
        at += 1 + size
        if at >= len(data):
            raise EventStreamError("a header field has no value type")
        kind = data[at]
        at += 1
        value: object
        if kind in (6, 7):
            (length,) = struct.unpack_from(">H", data, at)
            raw = data[at + 2 : at + 2 + length]
            at += 2 + length
            value = raw.decode("utf-8", "replace") if kind == 7 else raw
        elif kind in _FIXED:
            width = _FIXED[kind]
            raw = data[at : at + width]
            at += width
            value = kind == 0 if kind in (0, 1) else raw
        else:
            raise EventStreamError(f"unknown header value type {kind}")
        if at > len(data):
            raise EventStreamError("a header field runs past the headers")
        headers[name] = value
    return headers


class Decoder:
    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> list[Message]:
        self._buffer += chunk
        messages = []
        while len(self._buffer) >= PRELUDE_BYTES:
            total, headers_length, prelude_crc = struct.unpack_from(">III", self._buffer)
            if zlib.crc32(self._buffer[:8]) != prelude_crc:
                raise EventStreamError("prelude CRC mismatch")
            if total < PRELUDE_BYTES + 4 + headers_length or total > MAX_MESSAGE_BYTES:
                raise EventStreamError(f"message length {total} is out of bounds")
            if len(self._buffer) < total:
                break
            message = bytes(self._buffer[:total])
            del self._buffer[:total]
            (message_crc,) = struct.unpack_from(">I", message, total - 4)
            if zlib.crc32(message[:-4]) != message_crc:
                raise EventStreamError("message CRC mismatch")
            end_of_headers = PRELUDE_BYTES + headers_length
            messages.append(Message(_headers(message[PRELUDE_BYTES:end_of_headers]), message[end_of_headers:-4]))
        return messages

    @property
    def pending(self) -> int:
        """Bytes of a message not yet complete (a stream that ends with some was cut off)."""
        return len(self._buffer)
