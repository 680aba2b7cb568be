"""Checks a key's agreement imposes at each use: its IP allow-list, its expiry and its daily quota,
counted per local Shanghai day (UTC+8 all year, no daylight saving)."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

SHANGHAI = timedelta(hours=8)

# Refusal codes (docs/agreements.md, docs/protocol.md, docs/http.md).
IP_NOT_ALLOWED = "ip_not_allowed"
QUOTA_EXCEEDED = "quota_exceeded"
AGREEMENT_EXPIRED = "agreement_expired"


def shanghai_day(now_ms: int) -> str:
    """The local Shanghai date of an instant, as ``YYYY-MM-DD``: the day a quota counts in."""
    return (datetime.fromtimestamp(now_ms / 1000, UTC) + SHANGHAI).date().isoformat()


def parse_allow_list(entries: list[str] | tuple[str, ...], max_entries: int) -> tuple[str, ...]:
    """Normalised CIDRs (a bare address is its /32 or /128); raises ValueError naming a bad entry."""
    if len(entries) > max_entries:
        raise ValueError(f"at most {max_entries} allow-list entries, got {len(entries)}")
    out: list[str] = []
    for entry in entries:
        try:
            out.append(str(ipaddress.ip_network(entry.strip(), strict=False)))
        except ValueError:
            raise ValueError(f"allow-list entry {entry!r} is not an IP address or CIDR") from None
    return tuple(out)


def ip_allowed(allow_list: tuple[str, ...], ip: str) -> bool:
    """An empty list allows every address; otherwise the address must fall in one of its networks."""
    if not allow_list:
        return True
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net) for net in allow_list)


def expired(expires_at: int | None, now_ms: int) -> bool:
    return expires_at is not None and now_ms >= expires_at


def over_quota(daily_quota: int | None, used_today: int) -> bool:
    return daily_quota is not None and used_today >= daily_quota
