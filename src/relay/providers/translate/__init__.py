"""Anthropic Messages <-> OpenAI Chat Completions: requests, responses and streams.

Pure Python over parsed JSON (and SSE bytes for streams), no runtime imports, so the same
code runs on CPython in the tests and on Pyodide in the Worker.

- `anthropic_to_openai`: an Anthropic request as OpenAI's; an Anthropic message as an
  OpenAI completion.
- `openai_to_anthropic`: the reverse of both.
- `streams`: incremental SSE translators in both directions.
"""

from __future__ import annotations

from typing import Any


class TranslationError(ValueError):
    """The request has a shape the other API cannot express; the message says which part."""


# A JSON object as json.loads gives it: what the client sent or the provider answered, its
# values checked where they are read.
Json = dict[str, Any]


def need(condition: bool, message: str) -> None:
    """TranslationError(message) unless `condition` holds."""
    if not condition:
        raise TranslationError(message)


def an_object(value: Any, message: str) -> Json:
    """`value` if it is a JSON object, else TranslationError(message)."""
    if not isinstance(value, dict):
        raise TranslationError(message)
    return value


def a_list(value: Any, message: str) -> list[Any]:
    """`value` if it is a JSON array, else TranslationError(message)."""
    if not isinstance(value, list):
        raise TranslationError(message)
    return value


def a_count(value: Any) -> int:
    """A token count as the usage reports it, 0 if it reports none (or not a whole number)."""
    return value if isinstance(value, int) else 0


def object_at(document: Json, name: str) -> Json:
    """The object `document` holds at `name`, or an empty one when it holds none there."""
    value = document.get(name)
    return value if isinstance(value, dict) else {}
