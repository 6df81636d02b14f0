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
        return self._read(lines)

    def close(self) -> list[tuple[bytes, bytes]]:
        """The last frame, when the stream ended without the blank line that closes it."""
        lines = [self._buffer, b""] if self._buffer else [b""]
        self._buffer = b""
        return self._read(lines)

    def _read(self, lines: list[bytes]) -> list[tuple[bytes, bytes]]:
        # One loop over the lines with the frame's state in locals, not a call per line: the
        # meter reads every line of a stream's copy (three for each event).
        frames: list[tuple[bytes, bytes]] = []
        event, data = self._event, self._data
        for line in lines:
            line = line.rstrip(b"\r")
            if not line:
                if data:
                    frames.append((event, b"\n".join(data)))
                event, data = b"", []
            elif line.startswith(b"data:"):
                data.append(line[6:] if line.startswith(b"data: ") else line[5:])
            elif line.startswith(b"event:"):
                event = line[6:].strip()
        self._event, self._data = event, data
        return frames


def frame(event: str | None, data: Any) -> bytes:
    """One SSE frame: `data` is JSON-encoded unless it is already a string (`[DONE]`)."""
    payload = data if isinstance(data, str) else dumps(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()
