"""OCPI credentials tokens on the wire (OCPI 2.2.1, transport and format, "Authorization"). Pure, no I/O.

Every OCPI request carries ``Authorization: Token <token>``; from 2.2 on the token is Base64-encoded in the
header. Peers still on 2.1.1 send it plain, so a receiver accepts both forms.
"""

from __future__ import annotations

import base64
import binascii
import hmac

SCHEME = "token"


def authorization_header(token: str) -> str:
    """The header value that presents ``token``, Base64-encoded as OCPI 2.2.1 asks."""
    return f"Token {base64.b64encode(token.encode()).decode('ascii')}"


def token_accepted(header: str | None, expected: str) -> bool:
    """True when ``header`` presents ``expected``, Base64-encoded or plain; constant-time in the token."""
    if not header or not expected:
        return False
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != SCHEME or not value:
        return False
    try:
        decoded = base64.b64decode(value, validate=True)
    except binascii.Error:
        decoded = b""
    # A plain token may itself be valid Base64, so both readings are compared, always both.
    want = expected.encode()
    return hmac.compare_digest(decoded, want) | hmac.compare_digest(value.encode(), want)
