"""What every parser returns: canonical records plus rejects, never an exception."""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas import DeadLetter, Record


@dataclass
class ParseResult:
    records: list[Record] = field(default_factory=list)
    rejects: list[DeadLetter] = field(default_factory=list)

    def reject(
        self,
        original: bytes,
        *,
        source: str,
        feed: str,
        reason: str,
        received_at_ms: int,
        locator: str | None = None,
    ) -> None:
        self.rejects.append(
            DeadLetter(
                source=source,
                feed=feed,
                reason=reason,
                received_at=received_at_ms,
                original=original,
                locator=locator,
            )
        )

    def extend(self, other: ParseResult) -> None:
        self.records.extend(other.records)
        self.rejects.extend(other.rejects)
