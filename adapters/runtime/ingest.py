"""Turn a parse result into Kafka messages: changed records to raw.<feed>, rejects to dlq.<feed>."""

from __future__ import annotations

from adapters.formats import ParseResult

from .change_filter import ChangeFilter
from .kafka_sink import KafkaSink
from .routing import dead_letter_message, feed_of, record_message
from .stats import SourceStats


class Ingestor:
    def __init__(self, sink: KafkaSink, stats: SourceStats, change_filter: ChangeFilter | None = None) -> None:
        self.sink = sink
        self.stats = stats
        self.change_filter = change_filter or ChangeFilter()

    async def ingest(self, result: ParseResult) -> None:
        for record in result.records:
            # The filter learns the record was sent only when Kafka acknowledges it (the receipt).
            receipt = self.change_filter.claim(feed_of(record), record)
            if receipt is None:
                self.stats.skipped += 1
                continue
            await self.sink.submit(record_message(record, receipt))
            self.stats.records += 1
        for letter in result.rejects:
            await self.sink.submit(dead_letter_message(letter))
            self.stats.rejects += 1
