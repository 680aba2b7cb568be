"""Per-source figures for health checks: a plain object, readable without Prometheus."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class SourceStats:
    source: str
    polls: int = 0
    not_modified: int = 0
    records: int = 0  # records sent to raw.<feed>
    rejects: int = 0  # dead letters sent to dlq.<feed>
    skipped: int = 0  # unchanged records not sent again
    errors: int = 0  # failed polls (network, timeouts, HTTP errors)
    last_success_ms: int | None = None
    last_error: str | None = None
    last_poll_s: float | None = None  # wall time of the last successful poll: fetch, parse, hand to the sink
    duplicates: int = 0  # the same entity twice in one response (the copy is skipped, counted here)
    last_record_ms: int | None = None  # wall time a record was last sent to raw.<feed>
    reject_reasons: dict[str, int] = field(default_factory=dict)  # reject category → count

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
