"""Prompt caching: the `cache_control` breakpoints relay adds to Anthropic requests (`markers`)."""
