"""Opening one replay: its record source (the tier topic, after the tier's archive when there is one)
and its core with the feed's bounds. The WebSocket ``replay`` (``ws_server/replays.py``) and ``shfeeds
replay`` reading straight from Kafka (operators and exports on the service's own machines) both start here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .core import Admit, ReplayCore, ReplaySink
from .feeds import lookback_ms, max_skew_ms
from .kafka_source import KafkaTierSource
from .runner import RecordSource, ReplayRunner


@dataclass
class OpenReplay:
    core: ReplayCore
    source: RecordSource
    kafka: KafkaTierSource  # the consumer under the source: ``close`` stops it

    async def close(self) -> None:
        await self.kafka.close()

    async def run_to_end(self) -> None:
        """Run it with no client in between, as fast as its speed lets it, then close."""
        try:
            await ReplayRunner(self.core, self.source).run()
        finally:
            await self.close()


async def open_replay(
    *,
    bootstrap: str,
    topic: str,
    archive_root: Path | None,
    feed: str,
    tier: str,
    from_ms: int,
    to_ms: int,
    sink: ReplaySink,
    speed: float | None = None,
    admit: Admit | None = None,
    raw: bool = False,
) -> OpenReplay:
    """Raises ``SourceUnavailable`` when the topic cannot be read, ``ReplayError`` for a bad range."""
    kafka = KafkaTierSource(bootstrap, topic)
    source: RecordSource = kafka
    if archive_root is not None:
        from archive.reader import ArchiveThenKafkaSource  # pyarrow: loaded by the first replay only

        source = ArchiveThenKafkaSource(archive_root, feed, tier, kafka)
    try:
        partitions = await source.open()
        core = ReplayCore(
            partitions=partitions,
            from_ms=from_ms,
            to_ms=to_ms,
            max_skew_ms=max_skew_ms(feed),
            lookback_ms=lookback_ms(feed),
            sink=sink,
            speed=speed,
            admit=admit,
            raw=raw,
        )
    except BaseException:
        await kafka.close()
        raise
    return OpenReplay(core, source, kafka)
