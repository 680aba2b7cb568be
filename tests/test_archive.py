"""The archiver on the real Kafka: daily Parquet files with the offsets they hold, commits only after the
files are durable, a restart that neither loses nor repeats, retention, a replay across the archive/Kafka
boundary with no gap and no duplicate, and the DuckDB query from the docs."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from hypothesis import given
from hypothesis import strategies as st

from access.identity import kafka_options
from archive.archiver import Archiver
from archive.config import ArchiveConfig
from archive.layout import files_of
from archive.reader import ArchiveThenKafkaSource
from archive.status import archive_status
from kafka_admin import ensure_topics
from replay.core import ReplayCore
from replay.filtering import admit_for, compile_replay_filter
from replay.kafka_source import KafkaTierSource
from replay.runner import ReplayRunner
from schemas import AGGREGATE_FEEDS, TIERS
from tests.replay_support import ListSink, produce_values, tier_value
from tests.streams_support import topic_prefix_fixture  # noqa: F401  (the fixture, by its name)

pytestmark = pytest.mark.stack
# 2026-12-03 22:00 Shanghai time: four hours of records cross midnight into 2026-12-04
T_EVENING = int(dt.datetime(2026, 12, 3, 22, 0, tzinfo=dt.timezone(dt.timedelta(hours=8))).timestamp() * 1000)
STEP_MS = 6_000  # one record per partition every 6 s of event time


def rows(first: int, count: int, partitions: int = 2) -> list[tuple[int, dict, int]]:
    out = []
    for i in range(first, first + count):
        t = T_EVENING + i * STEP_MS
        for p in range(partitions):
            out.append((p, tier_value(f"bus-{p}-{i % 9}", t, route_id="71", lng=121.4 + (i % 50) / 1000), t))
    return out


async def setup(kafka_bootstrap: str, prefix: str, root: Path, feed: str = "bus", **kw) -> ArchiveConfig:
    await ensure_topics(kafka_bootstrap, 2, [prefix + f"tier.{t}.{feed}" for t in TIERS])
    return ArchiveConfig(
        root=root,
        bootstrap=kafka_bootstrap,
        topic_prefix=prefix,
        group_id=prefix + "archiver",
        feeds=(feed,),
        flush_records=500,
        flush_interval_s=0.5,
        **kw,
    )


async def archive_until(config: ArchiveConfig, want_records: int, timeout_s: float = 60.0) -> Archiver:
    archiver = Archiver(config)
    stop = asyncio.Event()
    task = asyncio.create_task(archiver.run(stop))
    deadline = asyncio.get_running_loop().time() + timeout_s
    while archiver.records_archived < want_records and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
    stop.set()
    await asyncio.wait_for(task, 30)
    return archiver


def archived_rows(root: Path) -> list[tuple[int, int]]:
    out = []
    for f in files_of(root, "bus", "public"):
        table = pq.read_table(f.path, columns=["partition", "offset"])
        out += list(zip(table["partition"].to_pylist(), table["offset"].to_pylist(), strict=True))
    return sorted(out)


async def test_archiver_writes_daily_files_and_commits_after_them(kafka_bootstrap, topic_prefix, tmp_path) -> None:
    config = await setup(kafka_bootstrap, topic_prefix, tmp_path / "archive")
    topic = config.topic("public", "bus")
    await produce_values(kafka_bootstrap, topic, rows(0, 2_400))  # 4 hours: 22:00 to 02:00
    archiver = await archive_until(config, 4_800)
    assert archiver.records_archived == 4_800

    files = files_of(config.root, "bus", "public")
    assert {f.day.isoformat() for f in files} == {"2026-12-03", "2026-12-04"}
    assert archived_rows(config.root) == [(p, o) for p in (0, 1) for o in range(2_400)]
    meta = pq.read_metadata(files[0].path).metadata
    assert meta[b"shfeeds.topic"] == topic.encode() and meta[b"shfeeds.policy_versions"] == b"test-1"
    assert pq.read_metadata(files[0].path).row_group(0).column(0).compression == "ZSTD"

    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, **kafka_options(), group_id=config.group_id)
    await consumer.start()
    try:
        for p in (0, 1):
            assert await consumer.committed(TopicPartition(topic, p)) == 2_400
    finally:
        await consumer.stop()

    # a restart reads on from where the archive ends: nothing twice, nothing lost
    await produce_values(kafka_bootstrap, topic, rows(2_400, 100))
    await archive_until(config, 200)
    assert archived_rows(config.root) == [(p, o) for p in (0, 1) for o in range(2_500)]

    status = {(d.tier, d.day): d for d in archive_status(config.root, ["bus"], list(TIERS))}
    assert sum(d.records for d in status.values()) == 5_000
    assert status[("public", "2026-12-03")].offsets[0][0] == 0
    assert status[("public", "2026-12-04")].offsets[1][1] == 2_499

    removed = Archiver(config).apply_archive_retention(today=dt.date(2026, 12, 3) + dt.timedelta(days=366))
    assert removed == ["feed=bus/tier=public/date=2026-12-03"]
    assert {f.day.isoformat() for f in files_of(config.root, "bus", "public")} == {"2026-12-04"}


async def test_replay_across_the_archive_kafka_boundary(kafka_bootstrap, topic_prefix, tmp_path) -> None:
    config = await setup(kafka_bootstrap, topic_prefix, tmp_path / "archive")
    topic = config.topic("public", "bus")
    await produce_values(kafka_bootstrap, topic, rows(0, 1_000))
    await archive_until(config, 2_000)
    await produce_values(kafka_bootstrap, topic, rows(1_000, 1_000))  # only in Kafka
    # Kafka's retention removes the oldest 600 records of each partition: they now exist only in the archive
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap, **kafka_options())
    await admin.start()
    try:
        await admin.delete_records({TopicPartition(topic, p): RecordsToDelete(600) for p in (0, 1)})
    finally:
        await admin.close()

    start, end = T_EVENING + 300 * STEP_MS, T_EVENING + 1_700 * STEP_MS  # archive-only → Kafka-only
    kafka = KafkaTierSource(kafka_bootstrap, topic)
    source = ArchiveThenKafkaSource(config.root, "bus", "public", kafka)
    partitions = await source.open()
    sink = ListSink()
    try:
        core = ReplayCore(
            partitions=partitions, from_ms=start, to_ms=end, max_skew_ms=10_000, lookback_ms=60_000, sink=sink
        )
        await ReplayRunner(core, source).run()
    finally:
        await kafka.close()
    got = [(r["observed_at"], r["id"]) for r in sink.delta_records()]
    expected = sorted((ts, v["id"]) for _p, v, ts in rows(0, 2_000) if start <= ts < end)
    assert got == expected, "no gap and no duplicate across the boundary"
    assert source.read_from_archive >= 2 * 300
    assert {r["id"] for r in sink.of("replay_snapshot")[0]["records"]} == {
        f"bus-{p}-{i}" for p in (0, 1) for i in range(9)
    }


DUCKDB_QUERY = """
SELECT date, count(*) AS records, count(DISTINCT id) AS vehicles, min(observed_at) AS first_ms
FROM read_parquet('{root}/feed=bus/tier=public/date=*/*.parquet', hive_partitioning = true)
GROUP BY date ORDER BY date
"""


async def test_the_documented_duckdb_query(kafka_bootstrap, topic_prefix, tmp_path) -> None:
    docs = (Path(__file__).resolve().parent.parent / "docs" / "replay.md").read_text(encoding="utf-8")
    assert DUCKDB_QUERY.strip().replace("{root}", "archive") in docs, "the docs show this query"
    config = await setup(kafka_bootstrap, topic_prefix, tmp_path / "archive")
    await produce_values(kafka_bootstrap, config.topic("public", "bus"), rows(0, 2_400))
    await archive_until(config, 4_800)
    relation = duckdb.sql(DUCKDB_QUERY.format(root=config.root))
    assert relation is not None  # a SELECT always gives a relation
    result = relation.fetchall()
    assert [(str(d), n, v) for d, n, v, _ in result] == [("2026-12-03", 2 * 1_200, 18), ("2026-12-04", 2 * 1_200, 18)]


async def test_archive_run_and_status_commands(running_stack, kafka_bootstrap, topic_prefix, tmp_path) -> None:
    import json
    import os
    import signal
    import sys

    from tests.conftest import settings_env

    config = await setup(kafka_bootstrap, topic_prefix, tmp_path / "archive")
    await produce_values(kafka_bootstrap, config.topic("licensed", "bus"), rows(0, 300))
    env = {
        **settings_env(running_stack),
        "SHFEEDS_ARCHIVE_DIR": str(config.root),
        "SHFEEDS_ARCHIVE_FLUSH_INTERVAL_S": "0.5",
    }
    argv = [sys.executable, "-m", "shfeeds_cli.main", "archive"]
    proc = await asyncio.create_subprocess_exec(
        *argv,
        "run",
        "--topic-prefix",
        topic_prefix,
        "--feeds",
        "bus",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        deadline = asyncio.get_running_loop().time() + 60
        days: list[dict] = []
        while sum(d["records"] for d in days) < 600 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.5)
            status = await asyncio.create_subprocess_exec(
                *argv, "status", "--json", env=env, stdout=asyncio.subprocess.PIPE
            )
            out, _ = await status.communicate()
            days = [json.loads(line) for line in out.splitlines()]
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert {(d["tier"], d["date"]) for d in days} == {("licensed", "2026-12-03")}
    (day,) = days
    assert day["records"] == 600 and day["offsets"] == {"0": {"first": 0, "last": 299}, "1": {"first": 0, "last": 299}}
    assert day["bytes"] > 0


def test_shfeeds_run_starts_the_archiver() -> None:
    import argparse

    import settings as settings_mod
    from shfeeds_cli.cmd_run import children

    args = argparse.Namespace(no_simulator=True, buses=None, seed=1, time_scale=1.0)
    specs = {spec.name: spec for spec in children(args, settings_mod.load())}
    assert specs["archiver"].argv[-2:] == ["archive", "run"]


async def test_aggregates_are_archived_and_replayed_from_the_archive(kafka_bootstrap, topic_prefix, tmp_path) -> None:
    assert set(AGGREGATE_FEEDS) <= set(ArchiveConfig(root=tmp_path, bootstrap=kafka_bootstrap).feeds)
    config = await setup(kafka_bootstrap, topic_prefix, tmp_path / "archive", feed="agg_parking")
    topic = config.topic("public", "agg_parking")
    figures = []
    for i in range(60):  # one figure per district group a minute
        t = T_EVENING + i * 60_000
        key = ("310101", "310104")[i % 2]
        value = {
            "id": f"district:{key}",
            "source": "streams",
            "observed_at": t,
            "expires_at": t + 900_000,
            "group": "district",
            "key": key,
            "lots": 4,
            "capacity": 800,
            "free": i,
            "occupancy_pct": 90,
            "policy_version": "test-1",
        }
        figures.append((i % 2, value, t))
    await produce_values(kafka_bootstrap, topic, figures)
    await archive_until(config, 60)
    (day,) = archive_status(config.root, ["agg_parking"], ["public"])
    assert day.records == 60 and day.day == "2026-12-03"
    # Kafka no longer holds the first half: the replay reads it from the archive
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap, **kafka_options())
    await admin.start()
    try:
        await admin.delete_records({TopicPartition(topic, p): RecordsToDelete(15) for p in (0, 1)})
    finally:
        await admin.close()
    kafka = KafkaTierSource(kafka_bootstrap, topic)
    source = ArchiveThenKafkaSource(config.root, "agg_parking", "public", kafka)
    sink = ListSink()
    try:
        core = ReplayCore(
            partitions=await source.open(),
            from_ms=T_EVENING + 10 * 60_000,
            to_ms=T_EVENING + 50 * 60_000,
            max_skew_ms=60_000,
            lookback_ms=900_000,
            sink=sink,
            admit=admit_for(compile_replay_filter({"district": "黄浦"})),
        )
        await ReplayRunner(core, source).run()
    finally:
        await kafka.close()
    assert [r["free"] for r in sink.delta_records()] == list(range(10, 50, 2))  # Huangpu's figures only
    assert [r["free"] for r in sink.of("replay_snapshot")[0]["records"]] == [8]
    assert source.read_from_archive > 0


SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**62), 2**62), st.floats(allow_nan=False), st.text(max_size=5)
)


@given(st.lists(st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), SCALARS | st.lists(SCALARS, max_size=2))))
def test_columns_keep_what_fits_and_fit_the_rest_as_the_per_value_rule_does(values: list[dict]) -> None:
    # The column builder passes values already of the column's type straight through: a twin of _fit, which
    # every other value still goes through. They must agree on every value, odd ones included.
    from archive.columns import RecordColumns, _fit

    schema = {
        "properties": {
            "a": {"type": "integer"},
            "b": {"anyOf": [{"type": "number"}, {"type": "null"}]},
            "c": {"type": "string"},
            "d": {"type": "boolean"},
        }
    }
    cols = RecordColumns(schema)
    got = cols._record_columns(values)
    expected = [[_fit(v.get(name), kind) for v in values] for name, kind, _ in cols.fields]
    assert got == expected
    assert [[type(x) for x in col] for col in got] == [[type(x) for x in col] for col in expected]
