"""Finished charging sessions of the simulated charging network, served as OCPI 2.2.1 CDRs.

The sessions are read off the same per-connector state machine that drives ``sh-charging``
(``charging.py``): a session begins when a connector becomes occupied (a car plugs in), and its CDR is
written when the connector frees up again (available, or faulted mid-session). Connectors that never got
to charging (the driver gave up) leave no CDR, and private home piles publish none. So a session's start,
charging minutes and end are exactly what the charging feed showed for that connector, and the daily
profile is the network's demand curves.

Energy follows the connector: rated power × charging time × a charging-curve factor (DC tapers, AC
barely), capped by what the car needed (a hashed 5–80 kWh for DC, 5–50 kWh for AC). The CDR is
"billed" a hashed 0–120 s after the end: that is its ``last_updated``, the time OCPI filters and pages on.
Every draw is hashed from (seed, connector, end step), so a given seed and clock serve the same CDRs
however often they are polled.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray

from adapters.simulators import randomness as rnd
from adapters.simulators.beijing import local_hour
from adapters.simulators.charging import (
    CHARGING,
    FINISHING,
    OPERATORS,
    PREPARING,
    STEP_S,
    ChargingNetwork,
)
from adapters.simulators.faults import Fault, duplicate_records, garbage_body, garbage_records

IntArray = NDArray[np.int64]

PATH = "/ocpi/2.2.1/cdrs"
FEED_NAME = "charging_sessions"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
BILLING_DELAY_MAX_S = 120
RETENTION_S = 3 * 86_400  # CDRs older than this (by last_updated) are no longer served
DRIVERS = 80_000  # distinct tokens: regular drivers show up again and again, as in reality
VAT = 0.13

_STATE_COUNT = 7
_OCCUPIED = np.zeros(_STATE_COUNT, dtype=bool)
_OCCUPIED[[PREPARING, CHARGING, FINISHING]] = True

_S_DELAY, _S_NEED, _S_DRIVER, _S_ELAPSED, _S_PREP, _S_TOKEN, _S_EMSP, _S_APP = range(700, 708)

# OCPI party ids (3 characters) of the network's operators, and of the eMSPs whose drivers charge there.
CPO_PARTY = dict(zip(OPERATORS, ("TLD", "XXC", "SGC", "AYC", "NIO", "XJC", "YWN", "PTN"), strict=True))
EMSP_PARTY = ("TLD", "XXC", "SGC", "NIO", "XJC", "KDC", "ELC")

# Shanghai-style time-of-use price per kWh (electricity + service fee, CNY incl. VAT) by Beijing hour.
PRICE_HOURS = (0, 6, 8, 11, 13, 15, 18, 21, 22, 24)
PRICE_CNY = (0.85, 1.25, 1.75, 1.25, 1.75, 1.25, 1.75, 1.25, 0.85)


def price_per_kwh(epoch_s: int) -> float:
    hour = float(local_hour(epoch_s))
    index = int(np.searchsorted(PRICE_HOURS, hour, side="right")) - 1
    return PRICE_CNY[min(index, len(PRICE_CNY) - 1)]


def ocpi_time(epoch_s: int) -> str:
    """OCPI DateTime: UTC, ``Z`` suffix, whole seconds."""
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Finished:
    """Finished sessions as parallel arrays (one row per CDR), in the order they ended."""

    connector: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    started_s: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    charge_start_s: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    charge_s: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    ended_s: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    updated_s: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def columns(self) -> tuple[IntArray, ...]:
        return (self.connector, self.started_s, self.charge_start_s, self.charge_s, self.ended_s, self.updated_s)

    def _assign(self, columns: list[IntArray]) -> None:
        (
            self.connector,
            self.started_s,
            self.charge_start_s,
            self.charge_s,
            self.ended_s,
            self.updated_s,
        ) = columns

    def append(self, rows: tuple[IntArray, ...]) -> None:
        self._assign([np.concatenate([old, new]) for old, new in zip(self.columns(), rows, strict=True)])

    def keep(self, mask: NDArray[np.bool_]) -> None:
        self._assign([column[mask] for column in self.columns()])


class SessionLog:
    """The CDRs of ``network``'s connectors, recorded by stepping a private copy of its state machine.

    The copy has the same seed and start, so it passes through exactly the states the charging feed
    shows; it is private so that serving CDRs never races the charging feed's own stepping.
    """

    def __init__(self, network: ChargingNetwork) -> None:
        self.network = copy.deepcopy(network)
        self.network.advance_to(0)  # earlier than any step: the copy replays from its first step
        self.seed = network.seed
        self._lock = threading.Lock()
        size = self.network.size
        self._plug_step = np.zeros(size, dtype=np.int64)
        self._charge_start_step = np.zeros(size, dtype=np.int64)
        self._charge_steps = np.zeros(size, dtype=np.int64)
        self._charged = np.zeros(size, dtype=bool)
        self._publishes = self.network.public[self.network.station_of] == 1
        self.finished = _Finished()
        self._seed_sessions_in_progress()

    def _seed_sessions_in_progress(self) -> None:
        """Connectors already charging at the first step: give them a plausible past."""
        net = self.network
        cid = np.arange(net.size)
        first = net.step_index
        charging = net.state == CHARGING
        elapsed = np.where(charging, first - net.charge_since, 0)  # the network drew where each one is
        prep = np.floor(rnd.uniform(self.seed, _S_PREP, cid) * 3).astype(np.int64)
        self._plug_step = np.where(charging, first - elapsed - prep, 0)
        self._charge_start_step = np.where(charging, first - elapsed, 0)
        self._charge_steps = np.where(charging, elapsed + 1, 0)
        self._charged = charging.copy()

    def _step(self) -> None:
        net = self.network
        before = net.state
        net.advance_to((net.step_index + 1) * STEP_S)
        after = net.state
        k = net.step_index
        was, now = _OCCUPIED[before], _OCCUPIED[after]
        ended = np.flatnonzero(was & ~now & self._charged & self._publishes)
        if ended.size:
            end_s = np.full(ended.size, k * STEP_S, dtype=np.int64)
            delay = np.floor(rnd.uniform(self.seed, _S_DELAY, ended, k) * (BILLING_DELAY_MAX_S + 1)).astype(np.int64)
            self.finished.append(
                (
                    ended.astype(np.int64),
                    self._plug_step[ended] * STEP_S,
                    self._charge_start_step[ended] * STEP_S,
                    self._charge_steps[ended] * STEP_S,
                    end_s,
                    end_s + delay,
                )
            )
        freed = was & ~now
        self._charged[freed] = False
        begun = ~was & now
        self._plug_step[begun] = k
        self._charge_steps[begun] = 0
        charging = after == CHARGING
        first_charge = charging & ~self._charged
        self._charge_start_step[first_charge] = k
        self._charge_steps[charging] += 1
        self._charged |= charging

    def advance_to(self, t_s: int) -> None:
        """Record every session that ended up to simulated second ``t_s`` (time only moves forward)."""
        with self._lock:
            target = t_s // STEP_S
            while self.network.step_index < target:
                self._step()
            horizon = t_s - RETENTION_S
            if self.finished.updated_s.size and self.finished.updated_s[0] < horizon - 86_400:
                self.finished.keep(self.finished.updated_s >= horizon)  # prune in day-sized bites

    def select(
        self, t_s: int, date_from_s: int | None, date_to_s: int | None, offset: int, limit: int, skew_s: int = 0
    ) -> tuple[list[dict[str, Any]], int]:
        """CDRs visible at ``t_s`` with ``date_from ≤ last_updated < date_to``, oldest first: the page
        ``[offset, offset + limit)`` of them, and how many there are in all."""
        self.advance_to(t_s)
        with self._lock:
            f = self.finished
            mask = f.updated_s <= t_s
            if date_from_s is not None:
                mask &= f.updated_s >= date_from_s
            if date_to_s is not None:
                mask &= f.updated_s < date_to_s
            rows = np.flatnonzero(mask)
            # Ordered by last_updated, then end and connector: pages stay stable while new CDRs arrive.
            order = np.lexsort((f.connector[rows], f.ended_s[rows], f.updated_s[rows]))
            page = rows[order][offset : offset + limit]
            return self._cdrs(page, skew_s), int(rows.size)

    def _cdrs(self, rows: IntArray, skew_s: int) -> list[dict[str, Any]]:
        """The OCPI CDR objects of recorded sessions; ``skew_s`` shifts every time in them."""
        net, f = self.network, self.finished
        connector = f.connector[rows]
        end_step = f.ended_s[rows] // STEP_S
        dc = net.is_dc[connector]
        need = 5.0 + rnd.uniform(self.seed, _S_NEED, connector, end_step) * np.where(dc, 75.0, 45.0)
        # Average share of rated power over a session: DC tapers as the battery fills, AC hardly does.
        delivered = net.power[connector] * (f.charge_s[rows] / 3600.0) * np.where(dc, 0.62, 0.93)
        energy = np.round(np.minimum(need, delivered), 3)
        driver = (rnd.uniform(self.seed, _S_DRIVER, connector, end_step) * DRIVERS).astype(np.int64)
        token = rnd.hash_bits(self.seed, _S_TOKEN, driver) >> np.uint64(8)  # 7-byte RFID UIDs
        emsp = (rnd.uniform(self.seed, _S_EMSP, driver) * len(EMSP_PARTY)).astype(np.int64)
        app_user = rnd.uniform(self.seed, _S_APP, driver) < 0.4
        return [
            self._cdr(
                int(row),
                skew_s,
                energy=float(energy[i]),
                driver=int(driver[i]),
                token_uid=f"{int(token[i]):014X}",
                emsp=EMSP_PARTY[int(emsp[i])],
                app_user=bool(app_user[i]),
            )
            for i, row in enumerate(rows.tolist())
        ]

    def _cdr(
        self, row: int, skew_s: int, *, energy: float, driver: int, token_uid: str, emsp: str, app_user: bool
    ) -> dict[str, Any]:
        net, f = self.network, self.finished
        c = int(f.connector[row])
        station = int(net.station_of[c])
        started, ended = int(f.started_s[row]), int(f.ended_s[row])
        charge_start, charge_s = int(f.charge_start_s[row]), int(f.charge_s[row])
        charge_end = charge_start + charge_s
        dc = bool(net.is_dc[c])
        incl_vat = round(energy * price_per_kwh(charge_start), 2)
        connector_uid = net.connector_ids[c]
        cpo = CPO_PARTY.get(net.operator[station], "SHC")
        # Plugged in but not charging (before: waiting to start; after: car not yet moved) is parking time.
        periods: list[dict[str, Any]] = []
        if charge_start > started:
            periods.append(_parking_period(started + skew_s, charge_start - started))
        periods.append(
            {
                "start_date_time": ocpi_time(charge_start + skew_s),
                "dimensions": [{"type": "ENERGY", "volume": energy}, {"type": "TIME", "volume": _hours(charge_s)}],
            }
        )
        if ended > charge_end:
            periods.append(_parking_period(charge_end + skew_s, ended - charge_end))
        return {
            "country_code": "CN",
            "party_id": cpo,
            "id": f"CDR-{ended}-{c:06d}",
            "start_date_time": ocpi_time(started + skew_s),
            "end_date_time": ocpi_time(ended + skew_s),
            "session_id": f"S-{started}-{c:06d}",
            "cdr_token": {
                "country_code": "CN",
                "party_id": emsp,
                "uid": token_uid,
                "type": "APP_USER" if app_user else "RFID",
                "contract_id": f"CN-{emsp}-C{driver:08d}",
            },
            "auth_method": "COMMAND" if app_user else "WHITELIST",
            "cdr_location": {
                "id": net.station_ids[station],
                "name": net.names[station],
                "address": net.names[station],
                "city": "上海市",
                "country": "CHN",
                "coordinates": {"latitude": f"{net.lat[station]:.6f}", "longitude": f"{net.lng[station]:.6f}"},
                "evse_uid": connector_uid,
                "evse_id": f"CN*{cpo}*E{connector_uid.replace('-', '')}",
                "connector_id": "1",
                "connector_standard": "GBT_DC" if dc else "GBT_AC",
                "connector_format": "CABLE" if dc else "SOCKET",
                "connector_power_type": "DC" if dc else "AC_1_PHASE",
            },
            "currency": "CNY",
            "charging_periods": periods,
            "total_cost": {"excl_vat": round(incl_vat / (1 + VAT), 2), "incl_vat": incl_vat},
            "total_energy": energy,
            "total_time": _hours(ended - started),
            "total_parking_time": _hours(ended - started - charge_s),
            "last_updated": ocpi_time(int(f.updated_s[row]) + skew_s),
        }


def _hours(seconds: int) -> float:
    return round(seconds / 3600.0, 4)


def _parking_period(start_s: int, seconds: int) -> dict[str, Any]:
    return {"start_date_time": ocpi_time(start_s), "dimensions": [{"type": "PARKING_TIME", "volume": _hours(seconds)}]}


class QueryError(ValueError):
    """A request parameter the CDRs endpoint cannot use; the message says which and why."""


@dataclass(frozen=True, slots=True)
class CdrQuery:
    date_from_s: int | None = None
    date_to_s: int | None = None
    offset: int = 0
    limit: int = DEFAULT_LIMIT


def _query_time(value: str, name: str) -> int:
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise QueryError(f"{name} {value[:40]!r} is not an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # OCPI times are UTC
    return int(moment.timestamp())


def _query_count(value: str, name: str, low: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise QueryError(f"{name} {value[:20]!r} is not a whole number") from None
    if number < low:
        raise QueryError(f"{name} must be at least {low}, got {number}")
    return number


def parse_query(params: dict[str, str]) -> CdrQuery:
    """The OCPI paging parameters; a limit above the server's maximum is lowered to it (OCPI allows that)."""
    return CdrQuery(
        date_from_s=_query_time(params["date_from"], "date_from") if params.get("date_from") else None,
        date_to_s=_query_time(params["date_to"], "date_to") if params.get("date_to") else None,
        offset=_query_count(params["offset"], "offset", 0) if params.get("offset") else 0,
        limit=min(MAX_LIMIT, _query_count(params["limit"], "limit", 1)) if params.get("limit") else DEFAULT_LIMIT,
    )


@dataclass(frozen=True, slots=True)
class CdrPage:
    body: bytes
    total: int  # CDRs matching the query (X-Total-Count)
    limit: int  # the limit applied (X-Limit)
    next_offset: int | None  # where the next page starts, None on the last page
    injected: dict[str, int] = field(default_factory=dict)


def ocpi_body(t_s: int, data: Any = None, status_code: int = 1000, message: str = "Success") -> bytes:
    envelope: dict[str, Any] = {"status_code": status_code, "status_message": message, "timestamp": ocpi_time(t_s)}
    if data is not None:
        envelope["data"] = data
    return orjson.dumps(envelope)


def render_page(log: SessionLog, t_s: int, query: CdrQuery, fault: Fault | None, salt: int) -> CdrPage:
    """One page of CDRs at simulated second ``t_s``, with the feed's fault applied to its bytes.

    Pure apart from advancing ``log``: the server handles the faults that are about the connection.
    """
    skew = fault.jump_s if fault is not None and fault.kind == "time_jump" else 0
    if fault is not None and fault.kind == "upstream_error":
        body = ocpi_body(t_s + skew, status_code=3000, message="Generic server error")
        return CdrPage(body, 0, query.limit, None, {"upstream_errors": 1})
    selected, total = log.select(t_s, query.date_from_s, query.date_to_s, query.offset, query.limit, skew)
    cdrs: list[Any] = list(selected)
    end = query.offset + len(cdrs)
    next_offset = end if end < total else None
    injected: dict[str, int] = {}
    if fault is not None and fault.kind == "duplicates":
        cdrs, injected["duplicate_records"] = duplicate_records(cdrs, fault.rate, salt)
    elif fault is not None and fault.kind == "garbage" and fault.mode == "records":
        cdrs, injected["garbage_records"] = garbage_records(cdrs, fault.rate, salt, "id")
    body = ocpi_body(t_s + skew, cdrs)
    if fault is not None and fault.kind == "garbage" and fault.mode == "body":
        body = garbage_body(body, salt)
        injected["garbage_bodies"] = 1
    return CdrPage(body, total, query.limit, next_offset, injected)
