"""Topic names of the control plane (the stats the stages and adapters emit)."""

from __future__ import annotations

OPS_STATS = "ops.stats"
OPS_ALERTS = "ops.alerts"  # alert events (raise / clear), decided by the control plane's leader
