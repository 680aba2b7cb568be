"""Conditional GET and gzip for the HTTP side, shared by every endpoint whose body changes over time
(GTFS-Realtime, the feed queries). One call, ``conditional_response``, gives an endpoint:

- an ``ETag`` (a hash of the body unless the endpoint names one) and, when it knows since when its content
  holds, ``Last-Modified``;
- ``304 Not Modified`` for a request whose ``If-None-Match`` names the tag (weak comparison, as RFC 9110
  asks for that header), or, without ``If-None-Match``, whose ``If-Modified-Since`` is not older than
  ``Last-Modified``;
- the body gzipped when ``Accept-Encoding`` allows it (``Vary: Accept-Encoding``). The gzipped
  representation has its own tag (``-gz`` inside the quotes), and either tag matches a conditional request.

Compressed bodies are kept by tag for a while, so many pollers of an unchanged feed cost one compression.
"""

from __future__ import annotations

import gzip
import hashlib
import http
from collections import OrderedDict
from collections.abc import Iterable
from email.utils import formatdate, parsedate_to_datetime

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

GZIP_SUFFIX = "-gz"
MIN_GZIP_BYTES = 512  # smaller bodies are sent as they are: gzip would save nothing worth a round of work
GZIP_LEVEL = 6


def entity_tag(body: bytes) -> str:
    """A strong tag for ``body``: the first 128 bits of its SHA-256, quoted."""
    return f'"{hashlib.sha256(body).hexdigest()[:32]}"'


def http_date(ms: int) -> str:
    """An HTTP date (IMF-fixdate) for epoch milliseconds."""
    return formatdate(ms / 1000, usegmt=True)


def parse_http_date(text: str) -> int | None:
    """Epoch seconds of an HTTP date, or None if it is not one."""
    try:
        return int(parsedate_to_datetime(text).timestamp())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _opaque(tag: str) -> str:
    """The part of an entity tag that says which content it is: no ``W/``, no gzip suffix."""
    tag = tag.strip().removeprefix("W/")
    if tag.endswith(GZIP_SUFFIX + '"'):
        tag = tag[: -len(GZIP_SUFFIX) - 1] + '"'
    return tag


def not_modified(request: Request, etag: str, last_modified_ms: int | None) -> bool:
    """Whether the client already holds this content (RFC 9110 section 13.2.2: ``If-None-Match`` wins)."""
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None:
        wanted = _opaque(etag)
        return any(tag.strip() == "*" or _opaque(tag) == wanted for tag in if_none_match.split(","))
    if_modified_since = request.headers.get("If-Modified-Since")
    if if_modified_since is not None and last_modified_ms is not None:
        since = parse_http_date(if_modified_since)
        return since is not None and last_modified_ms // 1000 <= since
    return False


def accepts_gzip(request: Request) -> bool:
    """``Accept-Encoding`` names gzip (or ``*``) with a non-zero quality, and does not refuse gzip."""
    allowed: dict[str, float] = {}
    for part in request.headers.get("Accept-Encoding", "").split(","):
        name, _, params = part.strip().partition(";")
        quality = 1.0
        params = params.strip().replace(" ", "")
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                quality = 0.0
        if name:
            allowed[name.strip().lower()] = quality
    if "gzip" in allowed:
        return allowed["gzip"] > 0
    return allowed.get("*", 0.0) > 0


class GzipCache:
    """Compressed bodies by entity tag, least recently used dropped first, bounded in bytes."""

    def __init__(self, max_bytes: int = 16 << 20) -> None:
        self.max_bytes = max_bytes
        self._bodies: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0

    def compress(self, etag: str, body: bytes) -> bytes:
        packed = self._bodies.get(etag)
        if packed is not None:
            self._bodies.move_to_end(etag)
            return packed
        packed = gzip.compress(body, GZIP_LEVEL, mtime=0)  # mtime 0: the same body gives the same bytes
        self._bodies[etag] = packed
        self._bytes += len(packed)
        while self._bytes > self.max_bytes and len(self._bodies) > 1:
            _, dropped = self._bodies.popitem(last=False)
            self._bytes -= len(dropped)
        return packed


_GZIP = GzipCache()


def conditional_response(
    request: Request,
    body: bytes,
    content_type: str,
    *,
    etag: str | None = None,
    last_modified_ms: int | None = None,
    headers: Iterable[tuple[str, str]] = (),
    cache: GzipCache | None = None,
) -> Response:
    """A 200 with ``body`` (gzipped if the client accepts it) or a 304, with validators; see the module doc."""
    tag = etag or entity_tag(body)
    compress = len(body) >= MIN_GZIP_BYTES and accepts_gzip(request)
    sent_tag = tag[:-1] + GZIP_SUFFIX + '"' if compress else tag
    out = Headers([("ETag", sent_tag), ("Vary", "Accept-Encoding")])
    if last_modified_ms is not None:
        out["Last-Modified"] = http_date(last_modified_ms)
    for name, value in headers:
        out[name] = value
    if not_modified(request, tag, last_modified_ms):
        return Response(304, http.HTTPStatus(304).phrase, out, b"")
    if compress:
        body = (cache or _GZIP).compress(tag, body)
        out["Content-Encoding"] = "gzip"
    out["Content-Type"] = content_type
    out["Content-Length"] = str(len(body))
    return Response(200, http.HTTPStatus(200).phrase, out, body)
