"""``sh-parking``: Shanghai public parking free slots JSON."""

from __future__ import annotations

from schemas import Record

from .common import (
    ItemError,
    JsonDict,
    build,
    check_in_shanghai,
    opt_int,
    opt_str,
    req_str,
    valid_until,
)
from .points import ItemPoints
from .sh_envelope import envelope_parser, item_time_ms

FEED = "parking"
LOT_STATUS = {1: "open", 0: "closed", 2: "full"}
LOT_KINDS = {"commuter", "shopping", "scenic", "hospital", "transit", "other"}


def _record(item: JsonDict, header_ms: int | None, source: str, points: ItemPoints) -> Record:
    lot_id = req_str(item, "parkId")
    lng, lat = points.of(item)
    check_in_shanghai(lng, lat)
    observed = item_time_ms(item, "updateTime", header_ms)
    status_code = opt_int(item, "status")
    if status_code is not None and status_code not in LOT_STATUS:
        raise ItemError(f"status {status_code} is not 0 (closed), 1 (open) or 2 (full)")
    kind = opt_str(item, "parkType") or "other"
    if kind not in LOT_KINDS:
        raise ItemError(f"parkType {kind[:40]!r} is not one of {', '.join(sorted(LOT_KINDS))}")
    return build(
        FEED,
        {
            "id": lot_id,
            "source": source,
            "observed_at": observed,
            "expires_at": valid_until(FEED, observed, header_ms),
            "lng": lng,
            "lat": lat,
            "name": opt_str(item, "parkName"),
            "capacity": opt_int(item, "totalSpace"),
            "free": opt_int(item, "freeSpace"),
            "kind": kind,
            "status": "unknown" if status_code is None else LOT_STATUS[status_code],
            "seq": opt_int(item, "seq"),
        },
    )


parse, parse_chunks = envelope_parser(FEED, list_key="data", time_key="updateTime", build_record=_record)
