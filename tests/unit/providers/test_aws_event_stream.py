"""The AWS event-stream decoder: a published message, and messages cut at every byte."""

from __future__ import annotations

import pytest

from devtools.fake_clouds import chunk_message, event_message, exception_message
from relay.providers.aws_event_stream import Decoder, EventStreamError

# The example message of the aws-event-stream-parser project (a content-type header, a
# JSON payload), with its CRCs as published.
PUBLISHED = bytes.fromhex(
    "0000003d0000002007fd83960c636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f6e"
    "7b27666f6f273a27626172277d8d9c08b1"
)


def test_a_published_message_decodes_with_its_crcs():
    [message] = Decoder().feed(PUBLISHED)
    assert message.headers == {"content-type": "application/json"}
    assert message.payload == b"{'foo':'bar'}"


def test_messages_cut_anywhere_come_out_whole_once_their_last_byte_is_in():
    stream = chunk_message({"type": "ping"}) + exception_message("throttlingException", "slow down") + PUBLISHED
    for size in (1, 2, 3, 5, 7, 11, 13, 64):
        decoder, found = Decoder(), []
        for start in range(0, len(stream), size):
            found += decoder.feed(stream[start : start + size])
        assert [m.header(":message-type") for m in found] == ["event", "exception", None], size
        assert decoder.pending == 0


def test_a_message_is_given_as_soon_as_it_is_complete_not_with_the_next():
    first, second = event_message({"a": "1"}, b"x"), event_message({"b": "2"}, b"y")
    decoder = Decoder()
    assert decoder.feed(first + second[:3]) and decoder.pending == 3


@pytest.mark.parametrize("where", [0, 9, 20, -1])
def test_a_corrupt_byte_is_an_error_not_a_wrong_event(where):
    message = bytearray(PUBLISHED)
    message[where] ^= 0x01
    with pytest.raises(EventStreamError):
        Decoder().feed(bytes(message))
