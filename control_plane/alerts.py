"""Alerts: a feed that leaves ``ok`` raises one alert; it clears once when the feed is ``ok`` again.

``AlertBook`` is the pure part: given each feed's state it says which alerts to raise and clear, and
remembers which are open (seeded from the control plane's ``alerts`` table after a restart, so a restart
neither raises an open alert again nor forgets to clear it). ``WebhookSender`` posts an event to the
operator's webhook with retries; every event is also a log line.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

log = logging.getLogger("shfeeds.alerts")


@dataclass(frozen=True)
class AlertEvent:
    action: str  # "raise" or "clear"
    feed: str
    state: str  # the feed's state when the event was decided
    reasons: tuple[str, ...]
    at_ms: int

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "feed": self.feed, "state": self.state, "reasons": list(self.reasons),
                "at": self.at_ms}  # fmt: skip

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AlertEvent:
        return cls(str(data["action"]), str(data["feed"]), str(data["state"]), tuple(data.get("reasons", ())),
                   int(data.get("at", 0)))  # fmt: skip

    def line(self) -> str:
        if self.action == "raise":
            return f"ALERT raised: feed {self.feed} is {self.state}: {'; '.join(self.reasons)}"
        return f"ALERT cleared: feed {self.feed} is ok again"


class AlertBook:
    def __init__(self, open_alerts: Iterable[str] = ()) -> None:
        self.open: set[str] = set(open_alerts)

    def update(self, feeds: Iterable[tuple[str, str, Iterable[str]]], now_ms: int) -> list[AlertEvent]:
        """``feeds``: (feed, state, reasons). Events for the feeds whose alert opens or closes now."""
        events = []
        for feed, state, reasons in feeds:
            if state != "ok" and feed not in self.open:
                self.open.add(feed)
                events.append(AlertEvent("raise", feed, state, tuple(reasons), now_ms))
            elif state == "ok" and feed in self.open:
                self.open.discard(feed)
                events.append(AlertEvent("clear", feed, state, (), now_ms))
        return events


class WebhookSender:
    """POSTs each event as JSON; retries with backoff, each attempt bounded, then gives up with a log line
    (an unreachable webhook must not hold up the control plane)."""

    def __init__(self, url: str | None, attempts: int = 4, timeout_s: float = 5.0, backoff_s: float = 0.5) -> None:
        self.url = url
        self.attempts = attempts
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.delivered = 0
        self.failed = 0

    async def send(self, event: AlertEvent) -> bool:
        log.warning(event.line())
        if not self.url:
            return True
        delay = self.backoff_s
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s)) as session:
            for attempt in range(1, self.attempts + 1):
                try:
                    async with session.post(self.url, json=event.to_json()) as response:
                        if response.status < 300:
                            self.delivered += 1
                            return True
                        why = f"HTTP {response.status}"
                except (aiohttp.ClientError, TimeoutError) as err:
                    why = str(err) or type(err).__name__
                if attempt < self.attempts:
                    log.warning("alert webhook attempt %d failed (%s); retrying in %.1f s", attempt, why, delay)
                    await asyncio.sleep(delay)
                    delay *= 2
        self.failed += 1
        log.error("alert webhook gave up after %d attempts: %s %s", self.attempts, event.action, event.feed)
        return False
