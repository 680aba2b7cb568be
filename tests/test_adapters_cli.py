"""``shfeeds adapters parse``: NDJSON on stdout, one line per reject on stderr, non-zero only for usage errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import settings

from .adapters_helpers import shared


def shfeeds(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shfeeds_cli.main", *args],
        capture_output=True,
        text=True,
        cwd=settings.PROJECT_ROOT,
        timeout=60,
    )


def test_parse_prints_records_and_rejects():
    path = shared("parking", "heidelberg.json")
    done = shfeeds("adapters", "parse", "--format", "parking-ngsi", "--source", "hd", str(path))
    assert done.returncode == 0
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == 22 and lines[0]["id"] == "hd:urn:ngsiv2:OffStreetParking:P00"
    rejects = done.stderr.splitlines()
    assert len(rejects) == 3 and all("no position" in line for line in rejects)
    assert f"{path}:entities[2]" in rejects[0]


def test_parse_gtfs_trip_updates_with_static(tmp_path: Path):
    done = shfeeds(
        "adapters",
        "parse",
        "--format",
        "gtfs-rt-tu",
        "--gtfs-static",
        str(shared("gtfs_rt", "caltrain", "static")),
        str(shared("gtfs_rt", "caltrain", "ct-trip-updates.pb")),
    )
    assert done.returncode == 0 and done.stderr == ""
    assert len(done.stdout.splitlines()) == 19 and '"delay_s"' in done.stdout


def test_garbage_is_a_reject_not_an_error(tmp_path: Path):
    junk = tmp_path / "junk.json"
    junk.write_bytes(b"\x00\xffnot json")
    done = shfeeds("adapters", "parse", "--format", "sh-parking", str(junk))
    assert done.returncode == 0 and done.stdout == ""
    assert "not valid JSON" in done.stderr


def test_usage_errors_exit_non_zero(tmp_path: Path):
    assert shfeeds("adapters", "parse", "--format", "nope", str(tmp_path)).returncode == 2
    assert shfeeds("adapters", "parse", "--format", "sh-bus-gps", str(tmp_path / "missing.json")).returncode == 2
    done = shfeeds("adapter", "run", "no-such-source")
    assert done.returncode == 2 and "known sources" in done.stderr
