"""What a batch stage tells the control plane: one stats record per batch (see ``figures.stage_record``).

The stage calls ``note`` for each feed of the batch (the clean stage does; others report only their
input count and lag) and ``batch_done`` once the batch is processed. Both are cheap and never wait:
the record goes to ``StatsEmitter``'s queue.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

import schemas

from .emitter import StatsEmitter, worker_id
from .figures import lag_histogram, reason_category, stage_record

LAG_SAMPLES = 200  # event-time lag samples per feed and batch


def ingested_at(record: ConsumerRecord[bytes, bytes]) -> int | None:
    """The ``ingested_at`` header of a raw record (Unix ms), None without one."""
    for name, value in record.headers or ():
        if name == "ingested_at":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class StageStats:
    def __init__(self, emitter: StatsEmitter, worker: str | None = None) -> None:
        self.emitter = emitter
        self.worker = worker or worker_id()
        self._feeds: dict[str, dict[str, Any]] = {}

    def note(
        self,
        feed: str,
        *,
        records_in: int,
        accepted: Iterable[Mapping[str, Any]] = (),
        accepted_count: int = 0,
        duplicates: int = 0,
        rejects: Iterable[str] = (),
        raw: Sequence[ConsumerRecord[bytes, bytes]] = (),
        active: int | None = None,
        now_ms: int | None = None,
    ) -> None:
        now = now_ms if now_ms is not None else schemas.now_ms()
        rej: dict[str, int] = {}
        for reason in rejects:
            cat = reason_category(reason)
            rej[cat] = rej.get(cat, 0) + 1
        recs = accepted if isinstance(accepted, list) else list(accepted)
        step = max(1, len(recs) // LAG_SAMPLES)
        lags = [now - int(r["observed_at"]) for r in recs[::step] if "observed_at" in r]
        # The raw records' ingested_at header (set by the adapter): ingest → release to the tier topics.
        istep = max(1, len(raw) // LAG_SAMPLES)
        ilags = [now - t for r in raw[::istep] if (t := ingested_at(r)) is not None]
        empty = lag_histogram(())
        f = self._feeds.setdefault(feed, {"in": 0, "out": 0, "dup": 0, "rej": {}, "lag": empty, "ilag": empty})
        f["in"] += records_in
        f["out"] += accepted_count or len(recs)
        f["dup"] += duplicates
        for k, n in rej.items():
            f["rej"][k] = f["rej"].get(k, 0) + n
        f["lag"] = [a + b for a, b in zip(f["lag"], lag_histogram(lags), strict=True)]
        if ilags:
            f["ilag"] = [a + b for a, b in zip(f["ilag"], lag_histogram(ilags), strict=True)]
        if active is not None:
            f["active"] = active

    def batch_done(
        self, stage: str, records_in: int, consumer: AIOKafkaConsumer | None, positions: Mapping[TopicPartition, int]
    ) -> None:
        partitions: dict[str, int] = {}
        if consumer is not None:
            for tp, position in positions.items():
                high = consumer.highwater(tp)
                if high is not None:
                    partitions[f"{tp.topic}/{tp.partition}"] = max(0, high - position)
        feeds, self._feeds = self._feeds, {}
        now = schemas.now_ms()
        self.emitter.emit(stage_record(stage, self.worker, now, records_in, feeds, partitions))
