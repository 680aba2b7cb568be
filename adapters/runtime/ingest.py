"""Turn a parse result into Kafka messages: changed records to raw.<feed>, rejects to dlq.<feed>."""

from __future__ import annotations

import time

from adapters.formats import ParseResult
from control_plane.figures import reason_category

from .change_filter import ChangeFilter
from .kafka_sink import KafkaSink
from .routing import dead_letter_message, feed_of, record_message
from .stats import SourceStats


class Ingestor:
    def __init__(self, sink: KafkaSink, stats: SourceStats, change_filter: ChangeFilter | None = None) -> None:
        self.sink = sink
        self.stats = stats
        self.change_filter = change_filter or ChangeFilter()

    async def ingest(self, result: ParseResult, seen: set[str] | None = None) -> None:
        """``seen``: the ids already ingested from the same response (a response parsed in chunks)."""
        seen = set() if seen is None else seen
        # the source items' JSON, when the parser kept it (a parser that skips unchanged items)
        items = result.item_json if len(result.item_json) == len(result.records) else [b""] * len(result.records)
        out = []
        for record, item_json in zip(result.records, items, strict=True):
            if record.id in seen:
                self.stats.duplicates += 1
            seen.add(record.id)
            # The filter learns the record was sent only when Kafka acknowledges it (the receipt).
            receipt = self.change_filter.claim(feed_of(record), record, item_json)
            if receipt is None:
                self.stats.skipped += 1
                continue
            out.append(record_message(record, receipt))
        await self.sink.submit_many(out)
        self.stats.records += len(out)
        for entity in result.unchanged:  # items the parser did not build: skipped as the filter would have
            if entity in seen:
                self.stats.duplicates += 1
            seen.add(entity)
        self.stats.skipped += len(result.unchanged)
        if result.records or result.unchanged:  # the source is delivering data, changed or not
            self.stats.last_record_ms = time.time_ns() // 1_000_000
        for letter in result.rejects:
            await self.sink.submit(dead_letter_message(letter))
            self.stats.rejects += 1
            kind = reason_category(letter.reason)
            self.stats.reject_reasons[kind] = self.stats.reject_reasons.get(kind, 0) + 1
