"""RSASSA-PKCS1-v1_5 with SHA-256 (JWS "RS256") verification in pure Python (RFC 8017 §8.2.2).

Identity providers sign their ID tokens with RS256 (Okta, Entra ID, Google, Cloudflare
Access, Keycloak by default). Verifying needs one modular exponentiation with a small
public exponent, which Python's pow() does in well under a millisecond for 2048-bit keys,
so no C extension (which Pyodide lacks) and no asynchronous WebCrypto call is needed.
"""

from __future__ import annotations

import hashlib
import hmac

# DER of DigestInfo for SHA-256, before the 32-byte hash (RFC 8017 §9.2, note 1).
_SHA256_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")
MIN_MODULUS_BITS = 2048


def verify(modulus: int, exponent: int, message: bytes, signature: bytes) -> bool:
    """Whether `signature` is the RS256 signature of `message` under the key (n, e)."""
    size = (modulus.bit_length() + 7) // 8
    if modulus.bit_length() < MIN_MODULUS_BITS or exponent < 3 or exponent % 2 == 0:
        return False
    if len(signature) != size:
        return False
    value = int.from_bytes(signature, "big")
    if value >= modulus:
        return False
    encoded = pow(value, exponent, modulus).to_bytes(size, "big")
    digest = _SHA256_PREFIX + hashlib.sha256(message).digest()
    expected = b"\x00\x01" + b"\xff" * (size - 3 - len(digest)) + b"\x00" + digest
    return hmac.compare_digest(encoded, expected)
