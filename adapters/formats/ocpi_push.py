"""OCPI 2.2.1 Locations receiver logic (pure): apply a PUT or PATCH to the stored Location.

Paths are ``{country_code}/{party_id}/{location_id}[/{evse_uid}[/{connector_id}]]``. PUT replaces the
object at that level (creating it), PATCH merges the fields it carries into the existing object and must
carry ``last_updated`` (OCPI 2.2.1 §8.2.2). A PATCH to an object we do not know is an error.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from .common import ItemError, JsonDict, require_dict


class UnknownObject(ItemError):
    """PATCH (or a sub-object PUT) for a Location, EVSE or connector never received (OCPI 2003)."""


@dataclass(frozen=True)
class PushTarget:
    country_code: str
    party_id: str
    location_id: str
    evse_uid: str | None = None
    connector_id: str | None = None

    @property
    def key(self) -> str:
        return f"{self.country_code}*{self.party_id}*{self.location_id}"


def _find(items: Any, key: str, value: str, what: str) -> tuple[list[Any], int | None]:
    if not isinstance(items, list):
        raise ItemError(f"stored {what} list is malformed")
    for index, item in enumerate(items):
        if isinstance(item, dict) and str(item.get(key)) == value:
            return items, index
    return items, None


def apply_push(stored: JsonDict | None, method: str, target: PushTarget, body: Any) -> JsonDict:
    """Return the new Location after the push; ``stored`` is not modified."""
    body = require_dict(body, "the request body")
    if method == "PATCH" and "last_updated" not in body:
        raise ItemError("PATCH without last_updated")
    if target.evse_uid is None:
        if method == "PUT":
            location = copy.deepcopy(body)
            # The URL is authoritative for the identifying fields.
            location.update(country_code=target.country_code, party_id=target.party_id, id=target.location_id)
            return location
        if stored is None:
            raise UnknownObject(f"unknown location {target.key}")
        return {**copy.deepcopy(stored), **copy.deepcopy(body)}
    if stored is None:
        raise UnknownObject(f"unknown location {target.key}")
    location = copy.deepcopy(stored)
    evses, e_index = _find(location.setdefault("evses", []), "uid", target.evse_uid, "EVSE")
    if target.connector_id is None:
        if method == "PUT":
            evse = {**copy.deepcopy(body), "uid": target.evse_uid}
            if e_index is None:
                evses.append(evse)
            else:
                evses[e_index] = evse
        elif e_index is None:
            raise UnknownObject(f"unknown EVSE {target.evse_uid} at location {target.key}")
        else:
            evses[e_index] = {**evses[e_index], **copy.deepcopy(body)}
    else:
        if e_index is None:
            raise UnknownObject(f"unknown EVSE {target.evse_uid} at location {target.key}")
        evse = evses[e_index]
        connectors, c_index = _find(evse.setdefault("connectors", []), "id", target.connector_id, "connector")
        if method == "PUT":
            connector = {**copy.deepcopy(body), "id": target.connector_id}
            if c_index is None:
                connectors.append(connector)
            else:
                connectors[c_index] = connector
        elif c_index is None:
            raise UnknownObject(
                f"unknown connector {target.connector_id} of EVSE {target.evse_uid} at location {target.key}"
            )
        else:
            connectors[c_index] = {**connectors[c_index], **copy.deepcopy(body)}
        evse["last_updated"] = body.get("last_updated", evse.get("last_updated"))
    # A change below the Location updates the Location's last_updated too (OCPI 2.2.1 §8.3.1).
    if body.get("last_updated") is not None:
        location["last_updated"] = body["last_updated"]
    return location
