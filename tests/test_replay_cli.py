"""``shfeeds replay`` as a lab runs it: a time range in Shanghai time, a district filter, and the export
formats, on the real Kafka."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import json
import sys

import pyarrow.parquet as pq
import pytest

from kafka_admin import ensure_topics
from replay.times import parse_time
from tests.conftest import settings_env
from tests.replay_support import produce_values, tier_value
from tests.streams_support import topic_prefix_fixture  # noqa: F401  (the fixture, by its name)

pytestmark = pytest.mark.stack
SHANGHAI = dt.timezone(dt.timedelta(hours=8))
T8 = int(dt.datetime(2026, 12, 4, 8, 0, tzinfo=SHANGHAI).timestamp() * 1000)
HUANGPU = (121.4800, 31.2300)  # People's Square area (GCJ-02)
PUDONG_FAR = (121.7900, 31.1500)  # well inside Pudong, far from Huangpu


def test_times_default_to_shanghai() -> None:
    assert parse_time("2026-12-04T08:00") == T8
    assert parse_time("2026-12-04T00:00Z") == T8
    assert parse_time("2026-12-04T09:00+09:00") == T8
    assert parse_time(str(T8)) == T8


async def run_cli(running_stack, *args: str) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shfeeds_cli.main",
        "replay",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=settings_env(running_stack),
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out, err


async def test_replay_cli_exports_a_district(running_stack, kafka_bootstrap, topic_prefix, tmp_path) -> None:
    topic = topic_prefix + "tier.public.parking"
    await ensure_topics(kafka_bootstrap, 2, [topic])
    rows = []
    for i in range(120):  # one lot in Huangpu and one in Pudong, a record each every 30 s
        t = T8 + i * 30_000
        for j, (lng, lat) in enumerate((HUANGPU, PUDONG_FAR)):
            rows.append((j, tier_value(f"lot-{j}", t, lng=lng, lat=lat, ttl_ms=900_000, free=i, capacity=200), t))
    await produce_values(kafka_bootstrap, topic, rows)
    common = [
        "--feed",
        "parking",
        "--from",
        "2026-12-04T08:10",
        "--to",
        "2026-12-04T08:40",
        "--district",
        "黄浦",
        "--topic-prefix",
        topic_prefix,
        "--no-archive",
    ]
    expected = [v["free"] for p, v, t in rows if p == 0 and T8 + 600_000 <= t < T8 + 2_400_000]

    code, out, err = await run_cli(running_stack, *common)
    assert code == 0, err.decode()
    lines = [json.loads(line) for line in out.splitlines()]
    assert [r["free"] for r in lines] == expected and {r["id"] for r in lines} == {"lot-0"}

    for name in ("x.ndjson", "x.csv", "x.parquet"):
        code, _, err = await run_cli(running_stack, *common, "--out", str(tmp_path / name), "--with-snapshot")
        assert code == 0, err.decode()
        assert f"wrote {len(expected) + 1} records" in err.decode()
    nd = [json.loads(line) for line in (tmp_path / "x.ndjson").read_text().splitlines()]
    assert [r["free"] for r in nd] == [expected[0] - 1, *expected]  # the snapshot's record first
    with open(tmp_path / "x.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [int(r["free"]) for r in table] == [r["free"] for r in nd] and table[0]["policy_version"] == "test-1"
    pq_rows = pq.read_table(tmp_path / "x.parquet").to_pylist()
    assert [r["free"] for r in pq_rows] == [r["free"] for r in nd] and pq_rows[0]["observed_at"] == nd[0]["observed_at"]


async def test_replay_cli_says_what_is_wrong(running_stack) -> None:
    code, _, err = await run_cli(running_stack, "--feed", "bus", "--from", "yesterday", "--to", "2026-12-04")
    assert code == 2 and "not an ISO 8601 time" in err.decode() and b"Traceback" not in err
    code, _, err = await run_cli(
        running_stack, "--feed", "bus", "--from", "2026-12-04", "--to", "2026-12-05", "--speed", "5000"
    )
    assert code == 2 and "speed must be" in err.decode()
    code, _, err = await run_cli(
        running_stack, "--feed", "bus", "--from", "2026-12-04", "--to", "2026-12-05", "--district", "Atlantis"
    )
    assert code == 2 and "unknown district" in err.decode()
