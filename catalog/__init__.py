"""The data catalogue: one entry per feed and aggregate, built from the tier policy (fields, delays, CRS per
tier), the descriptive metadata in ``catalog/feeds.toml`` and the control plane's live health report.

The core (``entries``, ``dcat``, ``page``) is sans-I/O: it takes a policy, metadata and a health report as
plain data, so it is tested with no broker. The WebSocket server serves it (``ws_server/catalog_routes.py``)
and ``shfeeds catalog`` prints it.
"""

from .entries import OPEN_TIERS, Catalogue, FeedEntry, TierRelease, build_catalogue
from .metadata import CatalogMetadata, MetadataError, load_metadata

__all__ = [
    "OPEN_TIERS",
    "CatalogMetadata",
    "Catalogue",
    "FeedEntry",
    "MetadataError",
    "TierRelease",
    "build_catalogue",
    "load_metadata",
]
