"""What every parser returns: canonical records plus rejects, never an exception."""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas import DeadLetter, Record


@dataclass
class ParseResult:
    records: list[Record] = field(default_factory=list)
    rejects: list[DeadLetter] = field(default_factory=list)
    # Filled by a parser asked to skip unchanged items (``Unchanged`` in sh_envelope.py): the JSON of the item
    # each record was built from, in step with ``records``, and the ids of the items it did not build.
    item_json: list[bytes] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

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
        self.item_json.extend(other.item_json)
        self.unchanged.extend(other.unchanged)
