"""Micro-batch envelopes for the pending topics: many tier records in one Kafka message. Pure, no I/O.

A pending record costs a produce and a consume on its way through the delay stage, and in Python each
of those is several microseconds per message, more than the forwarding itself. An envelope carries a run
of consecutive records of one partition (offset order, so per-entity order is kept) whose timestamps lie
within ``MAX_SPREAD_MS`` of each other; its own timestamp is the newest of them, so the delay stage
releases it when every record in it is due: never early, at most ``MAX_SPREAD_MS`` late.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

MAX_SPREAD_MS = 500
MAX_RECORDS = 2000

Row = tuple[bytes, bytes, int]  # key, value, timestamp (ms)

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[tuple[bytes, bytes, int]])


class EnvelopeError(ValueError):
    """A pending message that is not an envelope."""


def pack(
    rows: Sequence[Row], max_spread_ms: int = MAX_SPREAD_MS, max_records: int = MAX_RECORDS
) -> list[tuple[int, bytes]]:
    """Envelopes of consecutive ``rows``: (newest timestamp, encoded envelope) each."""
    out: list[tuple[int, bytes]] = []
    start = 0
    lo = hi = 0
    for i, row in enumerate(rows):
        ts = row[2]
        if i == start:
            lo = hi = ts
            continue
        new_lo, new_hi = min(lo, ts), max(hi, ts)
        if new_hi - new_lo > max_spread_ms or i - start >= max_records:
            out.append((hi, _encoder.encode(rows[start:i])))
            start, lo, hi = i, ts, ts
        else:
            lo, hi = new_lo, new_hi
    if start < len(rows):
        out.append((hi, _encoder.encode(rows[start:])))
    return out


def unpack(data: bytes) -> list[Row]:
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as err:
        raise EnvelopeError(f"not a pending envelope: {err}") from None
