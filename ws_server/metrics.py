"""Prometheus metrics of a WebSocket node, read from the node at scrape time (``GET /metrics``).

Connections and subscriptions are per tier, with the tier as a label.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .ops_report import tier_counts

if TYPE_CHECKING:
    from .server import Node

PREFIX = "shfeeds_ws"


class NodeCollector(Collector):
    def __init__(self, node: Node) -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:
        node = self.node
        connections, subscriptions = tier_counts(node)
        conn = GaugeMetricFamily(f"{PREFIX}_connections", "Open WebSocket connections", labels=["tier"])
        subs = GaugeMetricFamily(f"{PREFIX}_subscriptions", "Open subscriptions", labels=["tier"])
        for tier in connections:
            conn.add_metric([tier], connections[tier])
            subs.add_metric([tier], subscriptions[tier])
        yield conn
        yield subs
        entities = GaugeMetricFamily(
            f"{PREFIX}_source_entities", "Entities held per tier topic read by this node", labels=["tier", "feed"]
        )
        for (tier, feed), source in list(node.hub.sources.items()):
            if source.ready:
                entities.add_metric([tier, feed], len(source.entries))
        yield entities
        yield GaugeMetricFamily(f"{PREFIX}_streams", "Subscription groups (one frame each per tick)",
                                value=len(node.hub.streams))  # fmt: skip
        yield CounterMetricFamily(f"{PREFIX}_frames_sent", "Frames written to clients", value=node.hub.frames_sent)
        yield CounterMetricFamily(
            f"{PREFIX}_records_delivered", "Records delivered to clients", value=node.hub.records_delivered
        )
        yield CounterMetricFamily(
            f"{PREFIX}_conflated_frames",
            "Catch-up frames sent to slow readers in place of the frames they skipped",
            value=node.hub.conflated_frames,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_slow_closes", "Connections closed for reading too slowly", value=node.hub.slow_closes
        )
        yield CounterMetricFamily(f"{PREFIX}_records_read", "Records read from tier topics",
                                  value=node.readers.records_read)  # fmt: skip


class NodeMetrics:
    def __init__(self, node: Node) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(NodeCollector(node))

    def render(self) -> bytes:
        return generate_latest(self.registry)
