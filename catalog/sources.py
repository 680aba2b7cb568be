"""The catalogue's inputs from this installation's files (no network): the tier policy the workers use,
the descriptive metadata, and each feed's update interval from the control plane's thresholds (source
feeds) or the aggregate timer's interval (aggregate feeds)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cache
from typing import Any

from control_plane.health import load_thresholds
from schemas.topics import AGGREGATE_FEEDS
from streams.config import StreamConfig
from streams.policy import Policy, load_policy

from .entries import Catalogue, build_catalogue
from .metadata import CatalogMetadata, load_metadata


def update_intervals_s(policy: Policy) -> dict[str, float]:
    thresholds = load_thresholds(os.environ.get("SHFEEDS_HEALTH_THRESHOLDS") or None)
    aggregate_s = StreamConfig.__dataclass_fields__["aggregate_interval_s"].default
    return {
        feed: float(aggregate_s) if feed in AGGREGATE_FEEDS else thresholds.for_feed(feed).expected_interval_s  # type: ignore[arg-type]
        for feed in policy.feeds
    }


@cache
def installed_inputs() -> tuple[Policy, CatalogMetadata, dict[str, float]]:
    """Read once per process: the files do not change under a running server."""
    policy = load_policy(os.environ.get("SHFEEDS_POLICY_PATH") or None)
    return policy, load_metadata(), update_intervals_s(policy)


def installed_catalogue(health: Mapping[str, Any] | None, now_ms: int) -> Catalogue:
    policy, meta, intervals = installed_inputs()
    return build_catalogue(policy, meta, intervals, health, now_ms)
