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


class HttpPoller:
    def __init__(self, session: aiohttp.ClientSession, url: str, *, timeout_s: float) -> None:
        self.session = session
        self.url = url
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.validators = Validators()

    async def fetch(self) -> Fetched:
        try:
            async with self.session.get(
                self.url, headers=self.validators.request_headers(), timeout=self.timeout
            ) as response:
                if response.status == 304:
                    return Fetched(body=None, status=304)
                if response.status >= 400:
                    raise PollError(f"HTTP {response.status} from {self.url}")
                body = await response.read()
                self.validators.update(response.headers)
                return Fetched(body=body, status=response.status)
        except TimeoutError:
            raise PollError(f"timed out after {self.timeout.total} s fetching {self.url}") from None
        except (aiohttp.ClientError, asyncio.IncompleteReadError, OSError) as err:
            raise PollError(f"{type(err).__name__} fetching {self.url}: {err}") from None
