"""Skip records that repeat the entity's last content (only the timestamps or sequence moved)."""

from __future__ import annotations

import hashlib

import msgspec

from schemas import Record, encode_kafka

_UNSET_TIME = 946_684_800_000  # a valid placeholder: fingerprints must ignore event and expiry times


def fingerprint(record: Record) -> bytes:
    fields: dict[str, object] = {"observed_at": _UNSET_TIME, "expires_at": _UNSET_TIME}
    if getattr(record, "seq", None) is not None:
        fields["seq"] = None
    stripped = msgspec.structs.replace(record, **fields)
    return hashlib.blake2b(encode_kafka(stripped), digest_size=16).digest()


class ChangeFilter:
    """Per-entity fingerprints of what was last sent, per feed."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], bytes] = {}

    def is_new(self, feed: str, record: Record) -> bool:
        """True (and remembered) if the record differs from the entity's last one."""
        key = (feed, record.id)
        mark = fingerprint(record)
        if self._last.get(key) == mark:
            return False
        self._last[key] = mark
        return True

    def __len__(self) -> int:
        return len(self._last)
