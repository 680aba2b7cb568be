"""The capacity page (docs/capacity.md) is the model computed from its inputs (bench/capacity.toml), not
figures typed in, and the model answers what a planner would ask of it."""

from __future__ import annotations

import copy

from bench import capacity


def figures() -> dict[str, str]:
    return {line.what: line.figure for line in capacity.model(capacity.load())}


def test_the_page_shows_the_model_of_its_inputs() -> None:
    assert capacity.page_is_current(), "docs/capacity.md is stale: run `python -m bench.capacity`"


def test_the_model_sizes_every_part_of_the_service() -> None:
    got = figures()
    for part in (
        "adapter cores",
        "stream worker cores",
        "Kafka writes",
        "Kafka disk",
        "WebSocket nodes",
        "Redis memory",
    ):
        assert part in got, part
    assert got["raw records/s at the peak"] == "2,052"  # 17,000 buses every 10 s are most of it


def test_more_connections_need_more_nodes_and_a_costlier_frame_more_cores() -> None:
    inputs = capacity.load()
    base = figures()["WebSocket nodes"]
    doubled = copy.deepcopy(inputs)
    doubled["clients"]["connections"] *= 2
    more = {line.what: line.figure for line in capacity.model(doubled)}
    assert int(more["WebSocket nodes"]) > int(base)
    dearer = copy.deepcopy(inputs)
    dearer["measured"]["worker_us_per_record"] *= 100
    workers = {line.what: line.figure for line in capacity.model(dearer)}["stream worker cores"]
    assert workers.endswith("→ 24 workers"), workers  # 2,052/s × 6.8 ms = 14 cores, planned at 60 %
