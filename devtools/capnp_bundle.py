"""Writes workerd's module `Bundle` as a Cap'n Proto message, in pure Python.

workerd reads a Pyodide bundle (`pyodide_<version>.capnp.bin`) as one Cap'n Proto message
whose root is a `Bundle`: a list of `Module`s, each a name, one body (JS source, wasm, or
data) and a type. The layout below is what `capnp compile -ocapnp` prints for that schema
(workerd's `src/workerd/jsg/modules.capnp`):

    struct Bundle  # 0 data words, 1 pointer
      modules @0 :List(Module)        ptr[0]
    struct Module  # 1 data word, 4 pointers
      name @0 :Text                   ptr[0]
      union (tag: bits 16-31)         ptr[1]: src @1 :Data (tag 0), wasm @4 :Data (1),
                                              data @5 :Data (2), json @6 :Text (3)
      tsDeclaration @3 :Text          ptr[2]
      type @2 :ModuleType             bits 0-15 (bundle 0, builtin 1, internal 2)
      compileCache @7 :Data           ptr[3]

Only what a bundle needs is written: a single-segment message (a segment can hold 4 GiB,
more than a bundle's few tens of MB), no far pointers, null `tsDeclaration` and
`compileCache`. Encoding rules: capnproto.org/encoding.html.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

WORD = 8
# Module.type
INTERNAL = 2
# The union member of Module's body, by tag.
BODY_TAGS = {"src": 0, "wasm": 1, "data": 2}
# List element sizes (the pointer's 3-bit size field).
_BYTE, _COMPOSITE = 2, 7
_MODULE_DATA_WORDS, _MODULE_POINTERS = 1, 4


@dataclass(frozen=True)
class Module:
    name: str
    kind: str  # "src", "wasm" or "data": which member of the body union holds `body`
    body: bytes
    type: int = INTERNAL


def _words(size: int) -> int:
    return (size + WORD - 1) // WORD


def _struct_pointer(offset: int, data_words: int, pointers: int) -> bytes:
    return struct.pack("<iHH", offset << 2, data_words, pointers)


def _list_pointer(offset: int, element_size: int, count: int) -> bytes:
    return struct.pack("<iI", (offset << 2) | 1, (count << 3) | element_size)


class _Segment:
    def __init__(self) -> None:
        self.buffer = bytearray()

    def allocate(self, words: int) -> int:
        """Room for `words` zeroed words; their first word's index."""
        start = len(self.buffer) // WORD
        self.buffer.extend(bytes(words * WORD))
        return start

    def point(self, at: int, pointer: bytes) -> None:
        self.buffer[at * WORD : (at + 1) * WORD] = pointer

    def bytes_list(self, at: int, content: bytes) -> None:
        """A Data (or, with its NUL already in `content`, a Text) that pointer word `at` points to."""
        start = self.allocate(_words(len(content)))
        self.buffer[start * WORD : start * WORD + len(content)] = content
        self.point(at, _list_pointer(start - at - 1, _BYTE, len(content)))


def encode(modules: list[Module]) -> bytes:
    """The message whose root is a Bundle of `modules`, in order."""
    segment = _Segment()
    root = segment.allocate(1)
    bundle = segment.allocate(1)  # Bundle: its only section is one pointer
    segment.point(root, _struct_pointer(bundle - root - 1, 0, 1))
    element_words = _MODULE_DATA_WORDS + _MODULE_POINTERS
    tag = segment.allocate(1 + element_words * len(modules))
    segment.point(bundle, _list_pointer(tag - bundle - 1, _COMPOSITE, element_words * len(modules)))
    # A composite list's tag word is a struct pointer whose offset field counts the elements.
    segment.point(tag, _struct_pointer(len(modules), _MODULE_DATA_WORDS, _MODULE_POINTERS))
    for index, module in enumerate(modules):
        start = (tag + 1 + index * element_words) * WORD
        segment.buffer[start : start + 4] = struct.pack("<HH", module.type, BODY_TAGS[module.kind])
        pointers = tag + 1 + index * element_words + _MODULE_DATA_WORDS
        segment.bytes_list(pointers, module.name.encode() + b"\0")
        segment.bytes_list(pointers + 1, module.body)
    size = len(segment.buffer) // WORD
    return struct.pack("<II", 0, size) + bytes(segment.buffer)
