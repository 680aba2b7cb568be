"""A replay read straight from a tier's topic and archive (operators and exports on the service's own
machines): the same core, filter and pacing as the WebSocket ``replay``, without a server in between."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from archive.reader import ArchiveThenKafkaSource
from schemas import tier_topic

from .core import ReplayCore, ReplaySink
from .feeds import lookback_ms, max_skew_ms
from .filtering import admit_for, compile_replay_filter
from .kafka_source import KafkaTierSource
from .runner import ReplayRunner


async def replay_local(
    *,
    bootstrap: str,
    archive_root: Path | None,
    feed: str,
    tier: str,
    from_ms: int,
    to_ms: int,
    sink: ReplaySink,
    speed: float | None = None,
    flt: dict[str, Any] | None = None,
    topic_prefix: str = "",
) -> ReplayCore:
    admit = admit_for(compile_replay_filter(flt))
    kafka = KafkaTierSource(bootstrap, topic_prefix + tier_topic(tier, feed))
    source: KafkaTierSource | ArchiveThenKafkaSource = kafka
    if archive_root is not None:
        source = ArchiveThenKafkaSource(archive_root, feed, tier, kafka)
    partitions = await source.open()
    try:
        core = ReplayCore(
            partitions=partitions,
            from_ms=from_ms,
            to_ms=to_ms,
            max_skew_ms=max_skew_ms(feed),
            lookback_ms=lookback_ms(feed),
            sink=sink,
            speed=speed,
            admit=admit,
        )
        await ReplayRunner(core, source).run()
    finally:
        await kafka.close()
    return core
