"""``shfeeds policy show`` / ``apply`` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUS = {
    "id": "obu-1",
    "source": "s",
    "observed_at": 1_780_000_000_000,
    "expires_at": 1_780_000_060_000,
    "lng": 121.4705,
    "lat": 31.2349,
    "bearing": 22.6,
    "speed_kmh": 33.3,
    "plate": "沪A12345",
}


def _run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shfeeds_cli.main", "policy", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"SHFEEDS_PSEUDONYM_SECRET": "cli-test", "PATH": "/usr/bin:/bin"},
        timeout=60,
    )


def test_show_prints_every_feed_and_tier() -> None:
    result = _run("show")
    assert result.returncode == 0, result.stderr
    assert "policy version 2026.12.2" in result.stdout
    assert "rotating pseudonyms change daily at 03:00 Asia/Shanghai" in result.stdout
    assert "grid cell_m=50" in result.stdout
    assert result.stdout.count("\nbus ") == 4


def test_apply_blurs_and_reports_bad_lines_with_numbers() -> None:
    lines = [json.dumps(BUS), "not json", json.dumps({**BUS, "observed_at": 5}), ""]
    result = _run("apply", "--feed", "bus", "--tier", "public", stdin="\n".join(lines))
    assert result.returncode == 1
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(out) == 1
    assert out[0]["crs"] == "gcj02" and out[0]["policy_version"] == "2026.12.2"
    assert "plate" not in out[0] and "speed_kmh" not in out[0] and out[0]["bearing"] == 0.0
    assert "line 2: not JSON" in result.stderr
    assert "line 3: invalid bus record" in result.stderr


def test_apply_licensed_in_wgs84_and_public_refuses_it() -> None:
    ok = _run("apply", "--feed", "bus", "--tier", "licensed", "--crs", "wgs84", stdin=json.dumps(BUS))
    assert ok.returncode == 0, ok.stderr
    view = json.loads(ok.stdout)
    assert (view["lng"], view["lat"], view["crs"]) == (121.4705, 31.2349, "wgs84")
    refused = _run("apply", "--feed", "bus", "--tier", "public", "--crs", "wgs84", stdin=json.dumps(BUS))
    assert refused.returncode == 2
    assert "may not receive feed 'bus' in 'wgs84'" in refused.stderr


def test_apply_an_aggregate_feed() -> None:
    agg = {
        "id": "SCN-YUYUAN",
        "source": "streams",
        "observed_at": 1_780_000_000_000,
        "expires_at": 1_780_000_180_000,
        "count": 3712,
        "capacity": 5000,
        "occupancy_pct": 74.2,
        "crowding": "busy",
    }
    result = _run("apply", "--feed", "agg_scenic", "--tier", "public", stdin=json.dumps(agg))
    assert result.returncode == 0, result.stderr
    view = json.loads(result.stdout)
    assert view["count"] == 3710 and view["crowding"] == "busy" and "occupancy_pct" not in view
    bad = _run("apply", "--feed", "agg_scenic", "--tier", "public", stdin=json.dumps({**agg, "count": -1}))
    assert bad.returncode == 1 and "invalid agg_scenic record" in bad.stderr
