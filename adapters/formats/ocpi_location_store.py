"""What an eMSP knows of each OCPI Location (pure): pushes and full syncs folded into one current Location.

The push receiver and the periodic full sync (GET of every Location, page by page) feed the same store:

- a push (PUT / PATCH, ``ocpi_push.apply_push``) is the operator telling us of a change: it is taken as is;
- a synced Location is the operator's state when that page was served. It replaces what we hold unless we
  hold something newer (a push whose ``last_updated`` is later than the page's copy: the page was served
  before the change was pushed). So a lost or failed push is repaired by the next sync, and a sync never
  undoes a change pushed after it;
- a Location read back from the log (``state.ocpi_locations``, on start or written by another process) is
  kept on the same newest-wins rule.
"""

from __future__ import annotations

from .common import ItemError, JsonDict, iso_time_ms


def updated_ms(location: JsonDict) -> int | None:
    """The Location's ``last_updated`` in epoch ms; None when missing or unreadable."""
    try:
        return iso_time_ms(location.get("last_updated"), "last_updated")
    except ItemError:
        return None


class LocationStore:
    def __init__(self) -> None:
        self._locations: dict[str, JsonDict] = {}

    def __len__(self) -> int:
        return len(self._locations)

    def __contains__(self, key: str) -> bool:
        return key in self._locations

    def get(self, key: str) -> JsonDict | None:
        return self._locations.get(key)

    def pushed(self, key: str, location: JsonDict) -> None:
        """An accepted push: the operator's latest word on this Location."""
        self._locations[key] = location

    def offer(self, key: str, location: JsonDict) -> bool:
        """A synced (or logged) copy: taken unless the one held is newer. Returns whether it was taken."""
        held = self._locations.get(key)
        if held is not None:
            mine, theirs = updated_ms(held), updated_ms(location)
            if mine is not None and (theirs is None or theirs < mine):
                return False
        self._locations[key] = location
        return True

    def keys(self) -> list[str]:
        return list(self._locations)
