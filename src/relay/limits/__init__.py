"""Limits on a caller: requests per minute, streams open at once and spend (`key_limits`)."""
