"""What a pipeline variant wrote, and whether it is the job's right output.

The reference is the job itself run in this process on the same backlog: the pure functions every
variant calls (cleaner, enricher, chained tier fan-out), one batch, in offset order. A variant is
equivalent when every tier topic holds exactly the reference's count of records and no tier holds the same
(key, value) twice. Counts alone would let a lost record hide behind a duplicate; the duplicate count
closes that gap.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from access.identity import kafka_options
from schemas import TIERS, Naming, VehiclePosition, decode_kafka, encode_kafka, now_ms, to_dict

ENTITIES = 17_000  # Shanghai's bus fleet
STEP_MS = 10_000  # one update per vehicle every 10 s of event time


def bus_record(entity: int, k: int, observed_at: int, prefix: str = "bus") -> bytes:
    rec = VehiclePosition(
        id=f"{prefix}-{entity}",
        source="bench",
        observed_at=observed_at,
        expires_at=observed_at + 86_400_000,
        lng=121.25 + (entity % 130) * 0.004 + k * 0.00003,
        lat=31.05 + (entity // 130) * 0.003,
        route_id=str(entity % 900),
        label=f"B{entity}",
        speed_kmh=25.0,
        bearing=90.0,
        seq=k,
        occupancy_status="MANY_SEATS_AVAILABLE",
        plate="沪A00000",
    )
    return encode_kafka(rec)


def backlog(count: int, base_ms: int) -> Iterator[tuple[bytes, bytes, int]]:
    """The benchmark's backlog as (key, value, timestamp_ms): every vehicle in turn, 10 s of event time
    between a vehicle's updates, starting at ``base_ms``."""
    for i in range(count):
        entity, k = i % ENTITIES, i // ENTITIES
        ts = base_ms + k * STEP_MS + entity % 1000
        yield f"bus-{entity}".encode(), bus_record(entity, k, ts), ts


def reference_counts(count: int) -> dict[str, int]:
    """Per tier, how many records the job must write for a backlog of ``count`` (see the module doc)."""
    from bench.pipeline.variants import feed_fanout, load_engine
    from streams.logic.cleaning import Cleaner
    from streams.logic.enrichment import Enricher

    base = now_ms() - 4 * 3_600_000  # as bench/pipeline/run.py's preload: old enough for every delay
    recs = [to_dict(decode_kafka("bus", value)) for _, value, _ in backlog(count, base)]
    accepted = Cleaner("bus").clean(recs, now_ms()).accepted
    Enricher.from_geo().enrich("bus", accepted)
    released = feed_fanout(load_engine()).release(accepted)
    return {t: len(released[t].records) if t in released else 0 for t in TIERS}


async def tier_output(bootstrap: str, prefix: str, partitions: int = 4) -> dict[str, dict[str, int]]:
    """Per tier: records written, and how many of them repeat a (key, value) already in that tier."""
    out: dict[str, dict[str, int]] = {}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **kafka_options(), enable_auto_commit=False)
    await consumer.start()
    try:
        for tier in TIERS:
            topic = Naming(prefix).tier_topic(tier, "bus")
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            seen: Counter[tuple[bytes | None, bytes | None]] = Counter()
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
                for recs in batch.values():
                    seen.update((r.key, r.value) for r in recs)
            total = sum(seen.values())
            out[tier] = {"records": total, "duplicates": total - len(seen)}
    finally:
        await consumer.stop()
    return out


def check_run(tiers: dict[str, dict[str, int]], expected: dict[str, int]) -> dict[str, Any]:
    """One run's verdict: per tier, written − expected (0 when right) and duplicates."""
    diff = {t: tiers[t]["records"] - expected[t] for t in TIERS}
    dups = {t: tiers[t]["duplicates"] for t in TIERS}
    return {
        "equivalent": not any(diff.values()) and not any(dups.values()),
        "missing_or_extra": diff,
        "duplicates": dups,
    }


def equivalence(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Across runs (each with ``variant``, ``records`` and ``tiers``, optionally ``expected``): equal per-tier
    counts for equal backlogs, and no duplicates in any. With references, each run is also held to its own."""
    by_backlog: dict[int, set[tuple[int, ...]]] = {}
    for r in runs:
        by_backlog.setdefault(r["records"], set()).add(tuple(r["tiers"][t]["records"] for t in TIERS))
    duplicates = sum(r["tiers"][t]["duplicates"] for r in runs for t in TIERS)
    off_reference = sorted(
        {r["variant"] for r in runs if "expected" in r and not check_run(r["tiers"], r["expected"])["equivalent"]}
    )
    first = runs[0]["tiers"] if runs else {}
    return {
        "per_tier_records": {t: first[t]["records"] for t in TIERS} if first else {},
        "equal_counts": all(len(c) == 1 for c in by_backlog.values()),
        "duplicates": duplicates,
        "off_reference": off_reference,
    }
