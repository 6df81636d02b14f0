"""devtools/capnp_bundle.py writes workerd's module Bundle as a Cap'n Proto message."""

import struct

from devtools.capnp_bundle import Module, encode

# Checked once with Debian's capnproto (`capnp decode modules.capnp Bundle`, the schema that
# module's docstring gives), which read it back as three internal modules: `a:x` with
# src "export default 1;", `a:w` with wasm "\0asm", `a:z` with data "12345678901".
THREE_MODULES = bytes.fromhex(
    "000000001b0000000000000000000100010000007f0000000c00000001000400020000000000000035000000"
    "22000000350000008a00000000000000000000000000000000000000020001000000000031000000220000"
    "0031000000220000000000000000000000000000000000000002000200000000002500000022000000250000"
    "005a00000000000000000000000000000000000000613a7800000000006578706f72742064656661756c7420"
    "313b00000000000000613a7700000000000061736d00000000613a7a00000000003132333435363738393031"
    "0000000000"
)


def test_a_bundle_of_each_body_kind_is_the_message_capnp_reads_back():
    modules = [
        Module("a:x", "src", b"export default 1;"),
        Module("a:w", "wasm", b"\0asm"),
        Module("a:z", "data", b"12345678901"),
    ]
    assert encode(modules) == THREE_MODULES


def test_the_message_is_one_segment_whose_size_its_header_gives():
    message = encode([Module("m", "data", bytes(1000))])
    segments, words = struct.unpack_from("<II", message)
    assert segments == 0  # count minus one
    assert len(message) == 8 + words * 8


def test_a_body_keeps_every_byte_at_word_alignment():
    body = bytes(range(256)) * 3 + b"tail"
    message = encode([Module("n", "data", body)])
    start = message.index(body)
    assert (start - 8) % 8 == 0
    assert message[start : start + len(body)] == body
