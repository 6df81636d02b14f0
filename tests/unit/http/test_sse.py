"""The event-stream parser: frames as the stream wrote them, however its bytes are chunked."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from relay.http import sse

_TEXT = st.binary(max_size=12).filter(lambda b: b"\n" not in b and b"\r" not in b)
# A frame as written: its event name (b"" for none), its data lines, and comment lines.
_FRAMES = st.lists(
    st.tuples(
        st.sampled_from([b"", b"message_start", b"content_block_delta", b"error"]),
        st.lists(_TEXT, min_size=1, max_size=3),
        st.lists(_TEXT.map(lambda b: b":" + b), max_size=1),
    ),
    max_size=6,
)


def _written(frames, newline: bytes, spaced: bool) -> bytes:
    out = b""
    for event, data, comments in frames:
        lines = [*comments, *([b"event: " + event] if event else [])]
        lines += [(b"data: " if spaced else b"data:") + line for line in data]
        out += b"".join(line + newline for line in lines) + newline
    return out


def _parsed(raw: bytes, cuts: list[int]) -> list[tuple[bytes, bytes]]:
    parser, frames, last = sse.Frames(), [], 0
    for cut in sorted(cuts) + [len(raw)]:
        frames += parser.feed(raw[last:cut])
        last = cut
    return frames + parser.close()


@given(_FRAMES, st.sampled_from([b"\n", b"\r\n"]), st.booleans(), st.lists(st.integers(0, 400), max_size=4))
@example(frames=[(b"", [b" x"], [])], newline=b"\n", spaced=False, cuts=[])  # "data: x" reads "x"
def test_frames_come_out_as_written_whatever_the_chunking(frames, newline, spaced, cuts):
    raw = _written(frames, newline, spaced)
    # The field's value starts after one space, if there is one: "data:" + " x" reads "x".
    expected = [
        (event, b"\n".join(line if spaced or not line.startswith(b" ") else line[1:] for line in data))
        for event, data, _ in frames
    ]
    assert _parsed(raw, [cut for cut in cuts if cut <= len(raw)]) == expected


def test_a_stream_without_its_last_blank_line_still_gives_its_last_frame():
    parser = sse.Frames()
    assert parser.feed(b"event: a\ndata: 1\n\nevent: b\ndata: 2") == [(b"a", b"1")]
    assert parser.close() == [(b"b", b"2")]
    assert parser.close() == []


def test_a_frame_without_data_gives_nothing_and_its_event_name_does_not_carry_over():
    parser = sse.Frames()
    assert parser.feed(b"event: ping\n\ndata: x\n\n") == [(b"", b"x")]
