"""Topic names of the control plane (the stats the stages and adapters emit)."""

from __future__ import annotations

OPS_STATS = "ops.stats"
