"""Canonical records: what a producer or consumer of the topics relies on."""

from __future__ import annotations

import pytest

from schemas import (
    AGGREGATE_FEEDS,
    AUDIT_ACCESS,
    FEEDS,
    TIERS,
    ChargingStation,
    Connector,
    DeadLetter,
    InvalidRecord,
    Naming,
    VehiclePosition,
    all_topics,
    decode_dead_letter,
    decode_kafka,
    dlq_topic,
    encode_dead_letter,
    encode_json,
    encode_kafka,
    from_dict,
    pending_topic,
    raw_topic,
    tier_topic,
    to_dict,
)

T0 = 1_764_200_000_000


def bus(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": "OBU-1",
        "source": "sh-bus-gps",
        "observed_at": T0,
        "expires_at": T0 + 60_000,
        "lng": 121.4737,
        "lat": 31.2304,
        "route_id": "71",
        "bearing": 90.0,
        "speed_kmh": 22.5,
    }
    base.update(overrides)
    return base


def test_a_valid_record_round_trips_through_the_kafka_codec() -> None:
    record = from_dict("bus", bus())
    assert isinstance(record, VehiclePosition)
    assert decode_kafka("bus", encode_kafka(record)) == record


def test_json_for_clients_omits_unset_fields() -> None:
    text = encode_json(from_dict("bus", bus())).decode()
    assert '"route_id":"71"' in text
    assert "plate" not in text


@pytest.mark.parametrize(
    ("field", "value", "reason_part"),
    [
        ("lng", 221.0, "$.lng"),
        ("lat", "north", "$.lat"),
        ("observed_at", 1_700_000, "$.observed_at"),  # seconds where milliseconds belong
        ("bearing", 360.0, "$.bearing"),
        ("speed_kmh", -3.0, "$.speed_kmh"),
        ("id", "", "$.id"),
        ("occupancy_status", "PACKED", "$.occupancy_status"),
    ],
)
def test_invalid_field_values_are_rejected_with_a_reason_naming_the_field(
    field: str, value: object, reason_part: str
) -> None:
    with pytest.raises(InvalidRecord) as err:
        from_dict("bus", bus(**{field: value}))
    assert reason_part in str(err.value)


def test_cross_field_rules_are_enforced() -> None:
    with pytest.raises(InvalidRecord, match="expires_at is before observed_at"):
        from_dict("bus", bus(expires_at=T0 - 1))
    lot = {"id": "P1", "source": "s", "observed_at": T0, "expires_at": T0 + 1, "lng": 121.4, "lat": 31.2}
    with pytest.raises(InvalidRecord, match="exceed capacity"):
        from_dict("parking", {**lot, "free": 21, "capacity": 20})


def test_missing_required_field_is_rejected() -> None:
    data = bus()
    del data["lat"]
    with pytest.raises(InvalidRecord, match="lat"):
        from_dict("bus", data)


def test_charging_station_keeps_its_connectors() -> None:
    station = from_dict(
        "charging",
        {
            "id": "SHC-1",
            "source": "sh-charging",
            "observed_at": T0,
            "expires_at": T0 + 300_000,
            "lng": 121.43,
            "lat": 31.19,
            "connectors": [{"id": "SHC-1-01", "type": "GB_T_DC", "status": "CHARGING", "power_kw": 120}],
        },
    )
    assert isinstance(station, ChargingStation)
    assert station.connectors == [Connector(id="SHC-1-01", type="GB_T_DC", status="CHARGING", power_kw=120.0)]
    assert to_dict(station)["connectors"][0]["status"] == "CHARGING"


def test_unknown_feed_is_a_clear_error() -> None:
    with pytest.raises(InvalidRecord, match="unknown feed"):
        from_dict("ferries", bus())


def test_garbage_kafka_bytes_are_rejected_not_crashing() -> None:
    with pytest.raises(InvalidRecord):
        decode_kafka("bus", b"\xc1\xff not msgpack")


def test_dead_letter_keeps_the_original_bytes() -> None:
    original = b'{"code": 0, "data": [ broken'
    letter = DeadLetter(source="sh-bus-gps", feed="bus", reason="invalid JSON", received_at=T0, original=original)
    assert decode_dead_letter(encode_dead_letter(letter)).original == original


def test_topic_names_come_from_one_place() -> None:
    assert raw_topic("bus") == "raw.bus"
    assert dlq_topic("parking") == "dlq.parking"
    assert tier_topic("public", "scenic") == "tier.public.scenic"
    assert tier_topic("public", "agg_scenic") == "tier.public.agg_scenic"
    assert pending_topic("public", "bus") == "pending.public.bus"
    names = all_topics()
    pipeline_feeds = len(FEEDS) + len(AGGREGATE_FEEDS)
    assert len(names) == len(set(names)) == 3 + len(FEEDS) * 2 + pipeline_feeds * (2 * len(TIERS) - 1)  # 3: audit
    assert AUDIT_ACCESS in names
    with pytest.raises(ValueError, match="unknown tier"):
        tier_topic("vip", "bus")
    with pytest.raises(ValueError, match="never delayed"):
        pending_topic("operator", "bus")
    with pytest.raises(ValueError, match="unknown feed"):
        raw_topic("agg_scenic")


def test_a_naming_applies_its_prefixes_to_every_topic_and_key() -> None:
    default = Naming()
    assert default.tier_topic("public", "bus") == "tier.public.bus"
    assert default.state_key("public", "bus") == "shfeeds:state:public:bus"
    ns = Naming("t1.", "r1")
    assert ns.raw_topic("bus") == "t1.raw.bus"
    assert ns.pending_topic("public", "agg_parking") == "t1.pending.public.agg_parking"
    assert ns.audit_topic() == "t1." + AUDIT_ACCESS
    assert ns.offsets_key("licensed", "metro") == "r1:state:licensed:metro:offsets"
    assert ns.last_key("bus") == "r1:streams:last:bus"
    assert ns.key_key("ab12") == "r1:key:ab12" and ns.key_pattern() == "r1:key:*"
