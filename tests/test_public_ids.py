"""Public ids that do not churn: vehicles keep one keyed id every day; records that follow people (charging
sessions) get pseudonyms that rotate at the policy's local service-day boundary (03:00 Shanghai)."""

from __future__ import annotations

import hashlib
import hmac
import zlib
from datetime import UTC, datetime
from typing import Any

import pytest

from geo.service_day import ServiceDay
from streams.policy import PolicyEngine, PolicyError
from streams.policy.loader import DEFAULT_POLICY_FILE, parse_policy

SECRET = b"public-ids-test"
ENGINE = PolicyEngine(secret=SECRET)


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).astimezone(UTC).timestamp() * 1000)


def _vehicle(device: str, at: int) -> dict[str, Any]:
    return {
        "id": device, "source": "test", "observed_at": at, "expires_at": at + 60_000, "lng": 121.4705,
        "lat": 31.2349, "vehicle_id": device, "label": "07-1234", "route_id": "71",
    }  # fmt: skip


# Around both midnights that matter and the service-day turn: 23:59 / 00:01 UTC is 07:59 / 08:01 in Shanghai.
MOMENTS = [
    "2026-12-03T23:59:00+00:00",
    "2026-12-04T00:01:00+00:00",
    "2026-12-04T23:59:00+08:00",
    "2026-12-05T00:01:00+08:00",
    "2026-12-05T02:59:00+08:00",
    "2026-12-05T03:01:00+08:00",
    "2026-12-09T12:00:00+08:00",
]


@pytest.mark.parametrize(("feed", "tier"), [("bus", "registered"), ("bus", "public"), ("metro", "public")])
def test_a_vehicles_public_id_is_the_same_across_midnights_and_days(feed: str, tier: str) -> None:
    views = ENGINE.apply(feed, tier, [_vehicle("OBU-000123", _ms(m)) for m in MOMENTS])
    ids = {v["id"] for v in views}
    assert len(ids) == 1 and "OBU-000123" not in ids.pop()
    assert all("vehicle_id" not in v for v in views)
    # Two vehicles never share one.
    other = ENGINE.apply(feed, tier, [_vehicle("OBU-000124", _ms(MOMENTS[0]))])[0]["id"]
    assert other != views[0]["id"]


def test_the_public_id_cannot_be_recomputed_from_the_device_id_without_the_secret() -> None:
    device = "OBU-000123"
    public = ENGINE.apply("bus", "public", [_vehicle(device, _ms(MOMENTS[0]))])[0]["id"]
    plain = device.encode()
    simple = {hashlib.new(name, plain).hexdigest() for name in ("md5", "sha1", "sha224", "sha256", "sha512")}
    simple |= {hashlib.blake2b(plain).hexdigest(), hashlib.sha3_256(plain).hexdigest(), f"{zlib.crc32(plain):08x}"}
    simple |= {hmac.new(b"", plain, hashlib.sha256).hexdigest(), hmac.new(plain, b"", hashlib.sha256).hexdigest()}
    assert len(public) == 16 and not any(h.startswith(public) or h.endswith(public) for h in simple)
    assert public not in {device, device.lower(), plain.hex()}
    # Another installation's secret gives another id: the id is keyed, not a function of the device alone.
    assert PolicyEngine(secret=b"another installation").apply("bus", "public", [_vehicle(device, 0)])[0]["id"] != public
    # It is not the rotating pseudonym of any day either (its own derived key).
    session_ids = {ENGINE.apply("charging_sessions", "licensed", _sessions(device, _ms(m)))[0]["id"] for m in MOMENTS}
    assert public not in session_ids


def _sessions(session_id: str, ended: int) -> list[dict[str, Any]]:
    """``session_id`` ending at ``ended`` and four more sessions of the station-hour (k = 5 at licensed)."""
    return [
        {
            "id": session_id if i == 0 else f"{session_id}-other-{i}", "source": "test", "observed_at": ended,
            "expires_at": ended + 86_400_000, "station_id": "SHC-00031", "started_at": ended - 1_800_000,
            "ended_at": ended, "energy_kwh": 20.0, "token_id": "04A1B2C3D4E5F6", "connector_id": "c1",
            "lng": 121.52, "lat": 31.22,
        }
        for i in range(5)
    ]  # fmt: skip


def _session_pseudonym(ended_iso: str) -> tuple[str, str]:
    views = ENGINE.apply("charging_sessions", "licensed", _sessions("CDR-1", _ms(ended_iso)))
    (view,) = [v for v in views if v["station_id"] == "SHC-00031" and v["energy_kwh"] == 20.0][:1]
    return view["id"], view["holder"]


def test_a_session_pseudonym_rotates_at_three_in_the_morning_in_shanghai_not_at_utc_midnight() -> None:
    # 07:40 and 08:20 in Shanghai: either side of UTC midnight, the same service day, the same pseudonyms.
    assert _session_pseudonym("2026-12-03T23:40:00+00:00") == _session_pseudonym("2026-12-04T00:20:00+00:00")
    # Either side of 03:00 Shanghai (19:00 UTC): a new service day, new pseudonyms for the session and holder.
    before = _session_pseudonym("2026-12-05T02:40:00+08:00")
    after = _session_pseudonym("2026-12-05T03:20:00+08:00")
    assert before[0] != after[0] and before[1] != after[1]
    # Local midnight is not the boundary either.
    assert _session_pseudonym("2026-12-04T23:40:00+08:00") == _session_pseudonym("2026-12-05T00:20:00+08:00")


def test_the_boundary_is_data_in_the_policy_file() -> None:
    text = DEFAULT_POLICY_FILE.read_text(encoding="utf-8")
    assert parse_policy(text).pseudonym_days == ServiceDay("Asia/Shanghai", 3 * 3600)
    utc = parse_policy(
        text.replace('rotate_at = "03:00"\ntime_zone = "Asia/Shanghai"', 'rotate_at = "00:00"\ntime_zone = "UTC"')
    )
    engine = PolicyEngine(utc, secret=SECRET)

    def pseudonym(at: str) -> str:
        return str(engine.apply("charging_sessions", "licensed", _sessions("CDR-1", _ms(at)))[0]["id"])

    assert pseudonym("2026-12-03T23:40:00+00:00") != pseudonym("2026-12-04T00:20:00+00:00")
    for bad, message in [
        ('rotate_at = "3 am"', "not a time of day"),
        ('rotate_at = "24:00"', "not a time of day"),
        ('time_zone = "Asia/Shanghai"\nrotate_at = "03:00"\nextra = 1', "unknown key"),
        ('time_zone = "Mars/Olympus"', "unknown time zone"),
    ]:
        broken = text.replace('rotate_at = "03:00"\ntime_zone = "Asia/Shanghai"', bad)
        with pytest.raises(PolicyError, match=message):
            parse_policy(broken)


def test_service_days_follow_local_time() -> None:
    shanghai = ServiceDay("Asia/Shanghai", 3 * 3600)
    assert shanghai.label(_ms("2026-12-05T02:59:59+08:00")) == "2026-12-04"
    assert shanghai.label(_ms("2026-12-05T03:00:00+08:00")) == "2026-12-05"
    # A zone with daylight saving: the boundary stays at 03:00 local on both sides of the change.
    berlin = ServiceDay("Europe/Berlin", 3 * 3600)
    assert berlin.label(_ms("2026-07-01T02:59:00+02:00")) == "2026-06-30"
    assert berlin.label(_ms("2026-07-01T03:00:00+02:00")) == "2026-07-01"
    assert berlin.label(_ms("2026-01-01T03:00:00+01:00")) == "2026-01-01"
