"""One HTTP GET with a timeout and conditional-GET validators."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp

from .conditional import Validators


class PollError(Exception):
    """The poll got nothing usable (network error, timeout, HTTP error status)."""


@dataclass
class Fetched:
    body: bytes | None  # None when the server answered 304 Not Modified
    status: int
    next_url: str | None = None  # the response's ``Link: <...>; rel="next"``, resolved against its URL
    total_count: int | None = None  # an OCPI list's ``X-Total-Count``: how many objects match the query


class HttpPoller:
    def __init__(
        self, session: aiohttp.ClientSession, url: str, *, timeout_s: float, headers: dict[str, str] | None = None
    ) -> None:
        self.session = session
        self.url = url
        self.headers = headers or {}  # sent with every request (credentials)
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.validators = Validators()

    async def fetch(self, url: str | None = None) -> Fetched:
        """GET the poller's URL conditionally, or ``url`` (a query window or a next page) plainly: the
        validators belong to the poller's URL only."""
        conditional = url is None
        target = self.url if url is None else url
        headers = {**self.headers, **(self.validators.request_headers() if conditional else {})}
        try:
            async with self.session.get(target, headers=headers, timeout=self.timeout) as response:
                if response.status == 304:
                    return Fetched(body=None, status=304)
                if response.status in (401, 403):
                    raise PollError(f"HTTP {response.status} from {target}: the credentials were refused")
                if response.status >= 400:
                    raise PollError(f"HTTP {response.status} from {target}")
                body = await response.read()
                if conditional:
                    self.validators.update(response.headers)
                return Fetched(
                    body=body,
                    status=response.status,
                    next_url=_next_link(response),
                    total_count=_total_count(response),
                )
        except TimeoutError:
            raise PollError(f"timed out after {self.timeout.total} s fetching {target}") from None
        except (aiohttp.ClientError, asyncio.IncompleteReadError, OSError) as err:
            raise PollError(f"{type(err).__name__} fetching {target}: {err}") from None


def _next_link(response: aiohttp.ClientResponse) -> str | None:
    try:
        link = response.links.get("next")
        return str(link["url"]) if link is not None and "url" in link else None
    except ValueError:  # a Link header whose URL cannot be parsed: as if there were no next page
        return None


def _total_count(response: aiohttp.ClientResponse) -> int | None:
    text = response.headers.get("X-Total-Count", "").strip()
    return int(text) if text.isdigit() else None
