"""Client-side bookkeeping of one subscription's stream position and entity state (pure, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class GapError(RuntimeError):
    """A frame arrived out of sequence without the server saying why: the client resubscribes fresh."""


@dataclass
class StreamPosition:
    """Where a subscription stands: the server's stream id, epoch and the last sequence number applied."""

    stream: str | None = None
    epoch: str | None = None
    seq: int | None = None
    pos: str | None = None  # the server's tier-topic position: lets any node resume the stream
    entities: dict[str, dict[str, Any]] = field(default_factory=dict)
    stale: set[str] = field(default_factory=set)

    def resume_token(self) -> dict[str, Any] | None:
        if self.epoch is None or self.seq is None:
            return None
        token: dict[str, Any] = {"epoch": self.epoch, "seq": self.seq}
        if self.pos is not None:
            token["pos"] = self.pos
        return token

    def on_subscribed(self, message: dict[str, Any]) -> None:
        self.stream, self.epoch, self.seq = message["stream"], message["epoch"], message["seq"]
        self.pos = message.get("pos", self.pos)

    def on_updated(self, message: dict[str, Any]) -> None:
        self.on_subscribed(message)

    def on_reset(self, message: dict[str, Any]) -> None:
        self.stream, self.epoch, self.seq = message["stream"], message["epoch"], message["seq"]
        self.pos = message.get("pos")
        self.entities.clear()
        self.stale.clear()

    def on_snapshot(self, message: dict[str, Any]) -> None:
        if message.get("part", 0) == 0:
            self.entities.clear()
            self.stale.clear()
        for record in message.get("records", []):
            self._put(record)
        self.seq = message["seq"]
        self.pos = message.get("pos", self.pos)

    def on_delta(self, message: dict[str, Any]) -> None:
        seq = message["seq"]
        explained = message.get("conflated") or message.get("diff")
        if not explained and self.seq is not None and seq != self.seq + 1:
            raise GapError(f"stream {self.stream}: expected seq {self.seq + 1}, got {seq}")
        if explained and self.seq is not None and seq < self.seq:
            raise GapError(f"stream {self.stream}: catch-up frame {seq} is behind {self.seq}")
        for record in message.get("upsert", []):
            self._put(record)
        for entity_id in message.get("remove", []):
            self.entities.pop(entity_id, None)
            self.stale.discard(entity_id)
        for entity_id in message.get("stale", []):
            self.stale.add(entity_id)
        self.seq = seq
        self.pos = message.get("pos", self.pos)

    def _put(self, record: dict[str, Any]) -> None:
        entity_id = str(record.get("id"))
        self.entities[entity_id] = record
        if record.get("state") == "stale":
            self.stale.add(entity_id)
        else:
            self.stale.discard(entity_id)
