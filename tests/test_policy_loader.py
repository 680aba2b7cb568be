"""The policy file loads, and a bad file is rejected with a message naming the place."""

from __future__ import annotations

import pytest

from streams.policy import DEFAULT_POLICY_FILE, PolicyError, load_policy, parse_policy

TEXT = DEFAULT_POLICY_FILE.read_text(encoding="utf-8")


def test_default_policy_loads_with_version_and_every_feed() -> None:
    policy = load_policy()
    assert policy.version == "2026.12.2"
    assert set(policy.feeds) == {"bus", "metro", "parking", "charging", "charging_sessions", "scenic", "arrivals"} | {
        "agg_vehicles",
        "agg_parking",
        "agg_charging",
        "agg_scenic",
    }
    assert policy.feeds["agg_scenic"].tiers["public"].delay_ms == 300_000
    assert policy.feeds["bus"].tiers["public"].delay_ms == 30_000
    assert policy.feeds["bus"].tiers["public"].min_interval_ms == 30_000


def _broken(old: str, new: str) -> str:
    assert old in TEXT, old
    return TEXT.replace(old, new, 1)


BAD = [
    ("[feeds.bus]\n", "[feeds.tram]\nnever_released = []\n[feeds.bus]\n", "unknown feed"),
    ("[feeds.bus.public]\n", "[feeds.bus.vip]\ndelay_s = 1\n[feeds.bus.public]\n", "unknown tier"),
    ('bearing = { op = "quantise", step = 45 }', 'bearing = { op = "blur", step = 45 }', "unknown operation 'blur'"),
    ('speed_kmh = { op = "drop" }', 'speedo = { op = "drop" }', "unknown field 'speedo'"),
    (
        'position = { op = "grid", cell_m = 50 }',
        'position = { op = "grid", cell_m = 5 }',
        "feeds.bus.public.fields.position: grid cell_m = 5 is finer than 10",
    ),
    (
        'bearing = { op = "quantise", step = 45 }',
        'bearing = { op = "quantise", step = 45, wobble = 1 }',
        "unknown parameter(s) ['wobble']",
    ),
    ("delay_s = 30\nmin_interval_s = 30", "delay_s = 5\nmin_interval_s = 30", "cannot be faster"),
    (
        "[feeds.metro.public.fields]\n",
        '[feeds.metro.public.fields]\nbearing = { op = "quantise", step = 90 }\n',
        "feeds.metro.public.fields.bearing: is dropped by a tier above",
    ),
    ('count = { op = "count", base = 10, k = 10', 'count = { op = "count", base = 10, k = 3', "k = 3 is finer"),
    ('version = "2026.12.2"', 'version = ""', '"version" must be a non-empty string'),
    ('never_released = ["plate", "driver_id", "diagnostics"]', 'never_released = ["plates"]', "unknown field(s)"),
    ('position = { op = "grid", cell_m = 10 }', 'position = { op = "grid", cell_m = -10 }', "positive number"),
    ('occupancy_pct = { op = "round", base = 10 }', 'occupancy_pct = { op = "grid", cell_m = 10 }', "does not fit"),
    ('coord_decimals = 6\nnote = "50 m grid', 'coord_decimals = 8\nnote = "50 m grid', "more decimals"),
]


@pytest.mark.parametrize(("old", "new", "message"), BAD, ids=[b[2] for b in BAD])
def test_bad_policy_is_rejected_clearly(old: str, new: str, message: str) -> None:
    with pytest.raises(PolicyError) as err:
        parse_policy(_broken(old, new), source="test.toml")
    assert message in str(err.value)
    assert str(err.value).startswith("test.toml")


def test_wgs84_cannot_appear_below_a_tier_that_forbids_it() -> None:
    text = TEXT.replace(
        '[feeds.parking.registered]\ndelay_s = 30\ncrs = ["gcj02"]',
        '[feeds.parking.registered]\ndelay_s = 30\ncrs = ["gcj02", "wgs84"]',
    )
    with pytest.raises(PolicyError, match=r"\['wgs84'\] not allowed at licensed"):
        parse_policy(text)


def test_operator_takes_no_operations() -> None:
    text = TEXT.replace("[feeds.bus.operator]\n", '[feeds.bus.operator]\nfields = { plate = { op = "drop" } }\n')
    with pytest.raises(PolicyError, match="raw record and takes no"):
        parse_policy(text)


def test_never_released_field_cannot_be_released_by_an_op() -> None:
    text = TEXT.replace(
        'id = { op = "public_id" }\n\n[feeds.bus.public]', 'plate = { op = "pseudonym" }\n\n[feeds.bus.public]'
    )
    with pytest.raises(PolicyError, match="never released"):
        parse_policy(text)


def test_not_toml_and_missing_file() -> None:
    with pytest.raises(PolicyError, match="not valid TOML"):
        parse_policy("version = ")
    with pytest.raises(PolicyError, match="cannot read policy file"):
        load_policy("/nonexistent/policy.toml")


def test_missing_feed_is_rejected() -> None:
    start = TEXT.index("[feeds.scenic]")
    end = TEXT.index("# ----", TEXT.index("[feeds.scenic.public]"))
    with pytest.raises(PolicyError, match=r"no rules for feed\(s\) \['scenic'\]"):
        parse_policy(TEXT[:start] + TEXT[end:])
    with pytest.raises(PolicyError, match=r"no rules for feed\(s\) \['agg_scenic'\]"):
        parse_policy(TEXT[: TEXT.index("[feeds.agg_scenic]")])


def test_aggregates_cannot_run_ahead_of_or_be_finer_than_their_policy() -> None:
    faster = TEXT.replace("[feeds.agg_scenic.registered]\ndelay_s = 300", "[feeds.agg_scenic.registered]\ndelay_s = 30")
    with pytest.raises(PolicyError, match=r"agg_scenic\.registered\.delay_s: shorter than licensed"):
        parse_policy(
            faster.replace("[feeds.agg_scenic.public]\ndelay_s = 300", "[feeds.agg_scenic.public]\ndelay_s = 20")
        )
    head, line, tail = TEXT.rpartition('count = { op = "count", base = 10, k = 10, band = "<10" }')
    finer = head + line.replace("base = 10", "base = 1") + tail
    assert finer != TEXT
    with pytest.raises(PolicyError, match=r"feeds\.agg_scenic\.public\.fields\.count: count base = 1 is finer"):
        parse_policy(finer)
    with pytest.raises(PolicyError, match=r"operator\.delay_s: the operator tier is never delayed"):
        parse_policy(TEXT.replace("[feeds.agg_vehicles.operator]\n", "[feeds.agg_vehicles.operator]\ndelay_s = 5\n"))


# A tier's own table: keys, types and ranges, each message naming the key and the value found.
BUS_LICENSED = (
    '[feeds.bus.licensed]\nlatency_target_s = 2\ncrs = ["gcj02", "wgs84"]\ncoord_decimals = 7\nnote = "raw position'
)
BAD_TIER_TABLES = [
    (
        "coord_decimals = 7\n",
        "coord_decimals = 12\n",
        "feeds.bus.licensed.coord_decimals: Expected `int` <= 9 (got 12)",
    ),
    (
        "coord_decimals = 7\n",
        "coord_decimals = 6.5\n",
        "feeds.bus.licensed.coord_decimals: Expected `int`, got `float`",
    ),
    (
        'crs = ["gcj02", "wgs84"]\n',
        'crs = ["gcj02", "utm"]\n',
        "feeds.bus.licensed.crs[1]: Invalid enum value 'utm'; allowed: ['gcj02', 'wgs84']",
    ),
    ('crs = ["gcj02", "wgs84"]\n', "crs = []\n", "feeds.bus.licensed.crs: Expected `array` of length >= 1 (got [])"),
    ('crs = ["gcj02", "wgs84"]\n', 'crs = "gcj02"\n', "feeds.bus.licensed.crs: Expected `array`, got `str`"),
    ('crs = ["gcj02", "wgs84"]\n', 'crs = ["gcj02", "gcj02"]\n', "feeds.bus.licensed.crs: names a CRS twice"),
    (
        "latency_target_s = 2\n",
        "latency_target_s = -2\n",
        "feeds.bus.licensed.latency_target_s: Expected `float` >= 0.0",
    ),
    (
        "latency_target_s = 2\n",
        "latency_target_s = true\n",
        "feeds.bus.licensed.latency_target_s: Expected `float | null`, got `bool`",
    ),
    (
        'note = "raw position',
        'note = 3  # "raw position',
        "feeds.bus.licensed.note: Expected `str`, got `int`",
    ),
    (
        "latency_target_s = 2\n",
        "latency_target_s = 2\nwobble = 1\n",
        "feeds.bus.licensed: unknown key 'wobble'; allowed:",
    ),
    (
        "latency_target_s = 2\n",
        "latency_target_s = 2\nrecords = [3]\n",
        "feeds.bus.licensed.records[0]: Expected `object`",
    ),
    ("latency_target_s = 2\n", "latency_target_s = 2\nfields = 3\n", "feeds.bus.licensed.fields: Expected `object`"),
]


@pytest.mark.parametrize(("old", "new", "message"), BAD_TIER_TABLES, ids=[b[2] for b in BAD_TIER_TABLES])
def test_a_bad_tier_table_names_the_key(old: str, new: str, message: str) -> None:
    assert BUS_LICENSED in TEXT
    text = TEXT.replace(BUS_LICENSED, BUS_LICENSED.replace(old, new, 1), 1)
    with pytest.raises(PolicyError) as err:
        parse_policy(text, source="test.toml")
    assert str(err.value).startswith(f"test.toml: {message}")


def test_a_tier_table_of_seconds_reads_whole_and_fractional_numbers() -> None:
    text = TEXT.replace(BUS_LICENSED, BUS_LICENSED.replace("latency_target_s = 2\n", "latency_target_s = 1.5\n"), 1)
    assert parse_policy(text).feeds["bus"].tiers["licensed"].latency_target_ms == 1500
    assert load_policy().feeds["bus"].tiers["licensed"].latency_target_ms == 2000
