"""What a WebSocket node tells the control plane: every few seconds, its open connections and
subscriptions per tier (``figures.ws_record`` on ``ops.stats``), so ``/health/feeds`` and the dashboard
show them beside the feeds. The node's own ``/metrics`` has the same figures for Prometheus."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from control_plane.emitter import StatsEmitter
from control_plane.figures import ws_record
from schemas import TIERS, now_ms

if TYPE_CHECKING:
    from .server import Node


def tier_counts(node: Node) -> tuple[dict[str, int], dict[str, int]]:
    """Open connections and subscriptions per tier (every tier present, zero when none)."""
    connections = dict.fromkeys(TIERS, 0)
    subscriptions = dict.fromkeys(TIERS, 0)
    for session in list(node.sessions):
        connections[session.tier] = connections.get(session.tier, 0) + 1
        subscriptions[session.tier] = subscriptions.get(session.tier, 0) + len(session.subs)
    return connections, subscriptions


async def report_forever(node: Node, every_s: float) -> None:
    emitter = StatsEmitter(node.config.kafka_bootstrap, node.naming.topic_prefix)
    await emitter.start()
    try:
        while True:
            emitter.emit(ws_record(node.hub.node_id, now_ms(), *tier_counts(node)))
            await asyncio.sleep(every_s)
    finally:
        await emitter.stop()
