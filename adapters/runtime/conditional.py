"""Conditional GET state: remember ETag / Last-Modified and send them back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass
class Validators:
    etag: str | None = None
    last_modified: str | None = None

    def request_headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        return headers

    def update(self, response_headers: Mapping[str, str]) -> None:
        """Keep the validators of a 200 response (a server may drop one between responses)."""
        self.etag = response_headers.get("ETag") or None
        self.last_modified = response_headers.get("Last-Modified") or None
