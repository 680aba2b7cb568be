"""Reports that a record is wrong or a feed broken, and their life: open → confirmed → fixed, or
rejected (from open or confirmed; open may go straight to fixed). The feed's owner (its publisher in the
catalogue) answers with a reply the reporter reads. No I/O."""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, replace
from typing import Any

from ws_server.protocol.limits import TokenBucket

OPEN, CONFIRMED, FIXED, REJECTED = "open", "confirmed", "fixed", "rejected"
NEXT: dict[str, tuple[str, ...]] = {OPEN: (CONFIRMED, FIXED, REJECTED), CONFIRMED: (FIXED, REJECTED)}


class FeedbackError(ValueError):
    """A report or status change that is not allowed."""


@dataclass(frozen=True)
class Report:
    id: str
    feed: str
    owner: str
    entity_id: str
    problem: str
    reporter: str  # "key:<key id>" or "ip:<address>"
    created_at: int
    status: str = OPEN
    reply: str = ""
    updated_at: int = 0
    updated_by: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def new_report(
    *, feed: str, owner: str, entity_id: str, problem: str, reporter: str, now_ms: int, max_text: int
) -> Report:
    if not problem.strip():
        raise FeedbackError("say what is wrong (problem)")
    if len(problem) > max_text or len(entity_id) > 200:
        raise FeedbackError(f"the problem is at most {max_text} characters, the entity id 200")
    return Report(f"FB-{now_ms // 1000}-{secrets.token_hex(3)}", feed, owner, entity_id.strip(), problem.strip(),
                  reporter, now_ms, updated_at=now_ms)  # fmt: skip


def set_status(report: Report, status: str, reply: str, by: str, now_ms: int) -> Report:
    if status not in NEXT.get(report.status, ()):
        allowed = ", ".join(NEXT.get(report.status, ())) or "none (final)"
        raise FeedbackError(f"{report.id} is {report.status}; next: {allowed}")
    return replace(report, status=status, reply=reply or report.reply, updated_at=now_ms, updated_by=by)


class ReportLimiter:
    """Reports per IP address or key: a bucket per reporter, refilled at ``per_hour``."""

    def __init__(self, per_hour: float, burst: int) -> None:
        self.per_s = per_hour / 3600
        self.burst = burst
        self._buckets: dict[str, TokenBucket] = {}

    def allow(self, reporter: str, now_ms: int) -> bool:
        bucket = self._buckets.get(reporter)
        if bucket is None:
            if len(self._buckets) > 100_000:
                self._buckets.clear()  # bounded memory; a reset only ever lets someone report sooner
            bucket = self._buckets[reporter] = TokenBucket(self.per_s, self.burst, now_ms)
        return bucket.take(now_ms)
