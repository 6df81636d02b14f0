"""Server-sent events: an incremental parser fed arbitrary byte chunks, and a frame writer.

One parser serves both the audit log (usage.py reads the client's copy of a stream) and
the translators (translate/streams.py turn one API's stream into another's), so a frame
split across chunks, CRLF line ends and multi-line data are handled in one place.
"""

from __future__ import annotations

from typing import Any

from relay.http.json_spans import dumps


class Frames:
    """Feed it chunks as they arrive; it returns each (event, data) frame once complete.

    `event` is b"" when the frame has no `event:` field (OpenAI's streams)."""

    def __init__(self) -> None:
        self._buffer = b""
        self._event = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[tuple[bytes, bytes]]:
        lines = (self._buffer + chunk).split(b"\n")
        self._buffer = lines.pop()
        frames: list[tuple[bytes, bytes]] = []
        for line in lines:
            self._line(line.rstrip(b"\r"), frames)
        return frames

    def close(self) -> list[tuple[bytes, bytes]]:
        """The last frame, when the stream ended without the blank line that closes it."""
        frames: list[tuple[bytes, bytes]] = []
        if self._buffer:
            self._line(self._buffer.rstrip(b"\r"), frames)
            self._buffer = b""
        self._line(b"", frames)
        return frames

    def _line(self, line: bytes, frames: list[tuple[bytes, bytes]]) -> None:
        if not line:
            if self._data:
                frames.append((self._event, b"\n".join(self._data)))
            self._event, self._data = b"", []
        elif line.startswith(b"event:"):
            self._event = line[6:].strip()
        elif line.startswith(b"data:"):
            data = line[5:]
            self._data.append(data[1:] if data.startswith(b" ") else data)


def frame(event: str | None, data: Any) -> bytes:
    """One SSE frame: `data` is JSON-encoded unless it is already a string (`[DONE]`)."""
    payload = data if isinstance(data, str) else dumps(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()
