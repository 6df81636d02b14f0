"""SigV4: AWS's published example, and requests signed by relay checked by the fake Bedrock."""

from __future__ import annotations

import calendar
import time

from devtools.fake_clouds import sigv4_problem
from devtools.fake_upstream import Seen
from relay.providers import aws_sigv4

EXAMPLE = aws_sigv4.Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
WHEN = "20150830T123600Z"


def test_the_get_vanilla_example_of_the_aws_signature_v4_test_suite():
    names, signature = aws_sigv4.signature(
        "GET",
        "https://example.amazonaws.com/",
        [("Host", "example.amazonaws.com"), ("X-Amz-Date", WHEN)],
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",  # SHA-256 of no body
        EXAMPLE,
        "us-east-1",
        "service",
        WHEN,
    )
    assert names == "host;x-amz-date"
    assert signature == "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"


def test_the_query_is_signed_sorted_and_the_path_encoded_once_more():
    assert aws_sigv4.canonical_query("b=2&a=1&A=0") == "A=0&a=1&b=2"
    assert (
        aws_sigv4.canonical_path("/model/anthropic.claude-v2%3A1/invoke") == "/model/anthropic.claude-v2%253A1/invoke"
    )


def test_a_bedrock_request_signed_by_relay_holds_for_the_fake_bedrock():
    body = b'{"anthropic_version":"bedrock-2023-05-31","max_tokens":5}'
    url = "https://bedrock-runtime.eu-west-1.amazonaws.com/model/anthropic.claude-haiku-4-5-20251001-v1%3A0/invoke"
    credentials = aws_sigv4.Credentials("AKIATEST", "secret/with+chars", "session-token-1")
    fields = aws_sigv4.sign("POST", url, body, credentials, "eu-west-1", "bedrock", time.time())
    host = ("host", "bedrock-runtime.eu-west-1.amazonaws.com")
    path = url.split(".com", 1)[1]
    aws = {"AKIATEST": ("secret/with+chars", "session-token-1")}
    assert sigv4_problem(aws, Seen("POST", path, [host, *fields], body)) is None
    assert "does not match" in sigv4_problem(aws, Seen("POST", path, [host, *fields], body + b" "))
    other = {"AKIATEST": ("another-secret", "session-token-1")}
    assert "does not match" in sigv4_problem(other, Seen("POST", path, [host, *fields], body))
    assert "security token" in sigv4_problem(
        {"AKIATEST": ("secret/with+chars", "x")}, Seen("POST", path, [host, *fields], body)
    )


def test_credentials_are_two_or_three_parts_and_the_date_is_utc():
    assert aws_sigv4.parse_credentials("AK:SK") == aws_sigv4.Credentials("AK", "SK")
    assert aws_sigv4.parse_credentials("AK:SK:TOKEN").session_token == "TOKEN"
    assert aws_sigv4.parse_credentials("AK") is None and aws_sigv4.parse_credentials("AK::T") is None
    assert aws_sigv4.amz_date(calendar.timegm((2015, 8, 30, 12, 36, 0))) == WHEN
