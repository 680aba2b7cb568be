"""The OCPI response envelope's verdict (OCPI 2.2.1, transport and format, "Response format"). Pure."""

from __future__ import annotations

from typing import Any

from .common import ItemError


def check_status(envelope: dict[str, Any], status: Any) -> None:
    """ItemError unless ``status`` (the envelope's ``status_code``) is a success, 1000–1999."""
    if not isinstance(status, int) or isinstance(status, bool) or not 1000 <= status < 2000:
        message = str(envelope.get("status_message") or "")[:200]
        raise ItemError(f"OCPI status_code {status!r} {message}".rstrip())
