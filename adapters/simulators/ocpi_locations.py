"""The simulated charging network served as an OCPI 2.2.1 Locations module (the CPO's GET list).

The same stations and connectors as ``sh-charging`` (``charging.py``), at the same moment, written as an
operator's OCPI platform publishes them: one Location per station (``id`` = the station id, ``party_id`` its
operator's, as the CDRs say), one EVSE per connector (``uid`` = the connector id, as the CDRs'
``evse_uid``) with one connector ``"1"``. Statuses: available → ``AVAILABLE``; plugged in or charging →
``CHARGING`` (OCPI: "in use"); reserved → ``RESERVED``; faulted → ``OUTOFORDER``; a station whose uplink is
down → ``UNKNOWN`` (OCPI: "also used when offline"). Private home piles are listed with ``publish: false``.

Paging as OCPI 2.2.1 asks of a GET list: ``offset`` / ``limit`` (default 100, at most 1000: a larger
``limit`` is lowered), optional ``date_from`` (inclusive) / ``date_to`` (exclusive) on ``last_updated``;
Locations in creation order (station number), so a page holds the same Locations however often it is
asked; ``X-Total-Count`` (Locations matching the query), ``X-Limit`` (the server's page size) and, unless it
is the last page, ``Link: <...>; rel="next"`` keeping the query's filters.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from adapters.simulators.charging import STEP_S, ChargingNetwork
from adapters.simulators.charging_sessions import CPO_PARTY, CdrPage, CdrQuery, ocpi_body, ocpi_time

PATH = "/ocpi/2.2.1/locations"
FEED_NAME = "charging_locations"
PRIVATE_PARTY = "SHC"  # home piles of private owners, listed by the city's platform

# Published status code (charging.py) → OCPI EVSE status.
EVSE_STATUS = {0: "UNKNOWN", 1: "AVAILABLE", 2: "CHARGING", 3: "CHARGING", 4: "RESERVED", 255: "OUTOFORDER"}
DC_VOLTS = 750


def _connector(power_kw: float, dc: bool, updated: str) -> dict[str, Any]:
    volts = DC_VOLTS if dc else 220
    return {
        "id": "1",
        "standard": "GBT_DC" if dc else "GBT_AC",
        "format": "CABLE" if dc else "SOCKET",
        "power_type": "DC" if dc else "AC_1_PHASE",
        "max_voltage": volts,
        "max_amperage": round(power_kw * 1000 / volts),
        "max_electric_power": round(power_kw * 1000),
        "last_updated": updated,
    }


def select(network: ChargingNetwork, t_s: int, query: CdrQuery) -> tuple[list[dict[str, Any]], int]:
    """The page of Locations ``query`` asks for at simulated second ``t_s``, and how many match in all.
    Steps ``network`` to ``t_s``: the caller holds the charging feed's lock."""
    status = network.statuses(t_s)
    updated_s = network.changed_step * STEP_S
    mask = np.ones(network.station_count, dtype=bool)
    if query.date_from_s is not None:
        mask &= updated_s >= query.date_from_s
    if query.date_to_s is not None:
        mask &= updated_s < query.date_to_s
    stations = np.flatnonzero(mask)
    page = stations[query.offset : query.offset + query.limit].tolist()
    first = np.concatenate([[0], np.cumsum(network.sizes)])
    locations = []
    for s in page:
        updated = ocpi_time(int(updated_s[s]))
        operator = network.operator[s]
        public = bool(network.public[s])
        evses = []
        for c in range(int(first[s]), int(first[s + 1])):
            uid = network.connector_ids[c]
            evses.append(
                {
                    "uid": uid,
                    "evse_id": f"CN*{CPO_PARTY.get(operator, PRIVATE_PARTY)}*E{uid.replace('-', '')}",
                    "status": EVSE_STATUS[int(status[c])],
                    "connectors": [_connector(float(network.power[c]), bool(network.is_dc[c]), updated)],
                    "last_updated": updated,
                }
            )
        locations.append(
            {
                "country_code": "CN",
                "party_id": CPO_PARTY.get(operator, PRIVATE_PARTY),
                "id": network.station_ids[s],
                "publish": public,
                "name": network.names[s],
                "address": network.names[s],
                "city": "上海市",
                "country": "CHN",
                "coordinates": {"latitude": f"{network.lat[s]:.6f}", "longitude": f"{network.lng[s]:.6f}"},
                "operator": {"name": operator},
                "time_zone": "Asia/Shanghai",
                "evses": evses,
                "last_updated": updated,
            }
        )
    return locations, int(stations.size)


def render_page(network: ChargingNetwork, t_s: int, query: CdrQuery) -> CdrPage:
    """One page of Locations as an OCPI response, with what the paging headers need."""
    locations, total = select(network, t_s, query)
    end = query.offset + len(locations)
    return CdrPage(ocpi_body(t_s, locations), total, query.limit, end if end < total else None)
