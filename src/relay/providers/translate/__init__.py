"""Anthropic Messages <-> OpenAI Chat Completions: requests, responses and streams.

Pure Python over parsed JSON (and SSE bytes for streams), no runtime imports, so the same
code runs on CPython in the tests and on Pyodide in the Worker.

- `anthropic_to_openai`: an Anthropic request as OpenAI's; an Anthropic message as an
  OpenAI completion.
- `openai_to_anthropic`: the reverse of both.
- `streams`: incremental SSE translators in both directions.
"""


class TranslationError(ValueError):
    """The request has a shape the other API cannot express; the message says which part."""
