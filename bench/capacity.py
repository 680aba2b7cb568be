"""The capacity model: what it takes to carry every Shanghai feed at full scale to a million app connections,
computed from the city's numbers and the per-unit costs this project measured (bench/capacity.toml), into
the generated section of docs/capacity.md. Arithmetic only: the measuring is done by the benchmarks each
input names, so a new measurement changes one line of the inputs and the page follows.

Run: .venv/bin/python -m bench.capacity   (tests/test_capacity_model.py checks the page is up to date)
"""

from __future__ import annotations

import math
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.report import ROOT, publish_section, replace_between

INPUTS = ROOT / "bench/capacity.toml"
PAGE = ROOT / "docs/capacity.md"
MARKER = "capacity-model"
GIB = 2**30


@dataclass(frozen=True)
class Line:
    what: str
    figure: str
    how: str


def load(path: Path = INPUTS) -> dict[str, Any]:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def planned(per_s: float, us_each: float, utilisation: float, at_least: int) -> tuple[float, int]:
    """(cores busy, processes of one core each planned at ``utilisation``) for ``per_s`` units of ``us_each``."""
    cores = per_s * us_each / 1e6
    return cores, max(at_least, math.ceil(cores / utilisation))


def model(inputs: dict[str, Any]) -> list[Line]:
    city, clients, m = inputs["city"], inputs["clients"], inputs["measured"]
    out: list[Line] = []

    # Ingest and the stream workers.
    # ``changes``: what reports (a charging connector), where it differs from the entity kept (its station).
    rates = {f["name"]: f.get("changes", f["entities"]) / f["report_every_s"] for f in city["feeds"]}
    raw_per_s = sum(rates.values())
    out.append(
        Line(
            "raw records/s at the peak",
            f"{raw_per_s:,.0f}",
            " + ".join(f"{name} {rate:,.0f}" for name, rate in rates.items()),
        )
    )
    worker_cores, workers = planned(raw_per_s, m["worker_us_per_record"], clients["cpu_utilisation"], at_least=2)
    out.append(
        Line(
            "stream worker cores",
            f"{worker_cores:.2f} busy → {workers} workers",
            f"{raw_per_s:,.0f}/s × {m['worker_us_per_record']} µs, planned at "
            f"{clients['cpu_utilisation']:.0%}; at least 2 so one can fail",
        )
    )

    # The adapters: polling, parsing and producing every raw record once.
    adapter_cores, adapters = planned(raw_per_s, m["adapter_us_per_record"], clients["cpu_utilisation"], at_least=1)
    out.append(
        Line(
            "adapter cores",
            f"{adapter_cores:.2f} busy → {adapters} adapter process{'es' if adapters > 1 else ''}",
            f"{raw_per_s:,.0f}/s × {m['adapter_us_per_record']} µs (a cold poll's time per record, fetch and "
            f"acknowledgements included), planned at {clients['cpu_utilisation']:.0%}",
        )
    )

    # Kafka: what is written, kept and read.
    raw_bytes = sum(rates[f] * m["record_bytes"][f] for f in rates)
    written = raw_bytes * (1 + city["tiers"])
    out.append(
        Line(
            "Kafka writes",
            f"{written / 2**20:.1f} MiB/s, {written * city['replication'] / 2**20:.1f} MiB/s replicated",
            f"each raw record and its {city['tiers']} tier records at the measured record sizes, "
            f"× {city['replication']} replicas",
        )
    )
    kept = written * city["replication"] * 86400 * city["retention_days"]
    out.append(
        Line(
            "Kafka disk",
            f"{kept / 2**40:.1f} TiB",
            f"{city['retention_days']} days of every topic, all replicas (before compression)",
        )
    )

    # WebSocket nodes: CPU for frames, memory per connection.
    n = clients["connections"]
    share = clients["wide_share"]
    frames_per_client = (1 - share) * clients["frames_per_s_street"] + share * clients["frames_per_s_wide"]
    frames = n * frames_per_client
    ws_cores = frames * m["server_us_per_frame"] / 1e6
    per_conn = m["server_bytes_per_connection"] + m["kernel_bytes_per_connection"]
    ws_memory = n * per_conn
    by_cpu = math.ceil(ws_cores / (clients["node_cores"] * clients["cpu_utilisation"]))
    by_memory = math.ceil(ws_memory / (clients["node_memory_gib"] * GIB * clients["node_memory_usable"]))
    nodes = max(by_cpu, by_memory) + 1  # one spare for a node's failure
    out.append(
        Line(
            "frames/s to clients",
            f"{frames:,.0f}",
            f"{n:,} connections × {frames_per_client:.2f} frames/s ({share:.0%} wide views at "
            f"{clients['frames_per_s_wide']:g}/s, the rest at {clients['frames_per_s_street']:g}/s)",
        )
    )
    out.append(
        Line(
            "WebSocket server cores",
            f"{ws_cores:,.0f} busy",
            f"frames/s × {m['server_us_per_frame']} µs per frame",
        )
    )
    out.append(
        Line(
            "WebSocket server memory",
            f"{ws_memory / GIB:,.0f} GiB",
            f"{n:,} × ({m['server_bytes_per_connection'] / 1000:g} KB RSS + "
            f"{m['kernel_bytes_per_connection'] / 1000:g} KB kernel, both measured)",
        )
    )
    out.append(
        Line(
            "WebSocket nodes",
            f"{nodes}",
            f"{clients['node_cores']} cores / {clients['node_memory_gib']} GiB each: {by_cpu} for CPU, "
            f"{by_memory} for memory, + 1 spare",
        )
    )
    mean_record = sum(rates[f] * m["record_bytes"][f] for f in rates) / raw_per_s
    frame_bytes = clients["frame_overhead_bytes"] + clients["records_per_frame"] * mean_record
    egress = frames * frame_bytes
    out.append(
        Line(
            "network to clients",
            f"{egress * 8 / 1e9:.1f} Gbit/s",
            f"frames/s × {frame_bytes:.0f} bytes ({clients['records_per_frame']} records of "
            f"{mean_record:.0f} bytes mean + {clients['frame_overhead_bytes']} overhead)",
        )
    )
    fan_in = raw_bytes * city["tiers"] * nodes
    out.append(
        Line(
            "Kafka reads by the nodes",
            f"{fan_in / 2**20:.1f} MiB/s",
            f"every node reads every tier topic: {nodes} × {raw_bytes * city['tiers'] / 2**20:.2f} MiB/s",
        )
    )

    # Redis: the tier snapshots.
    entries = sum(f["entities"] for f in city["feeds"]) * city["tiers"]
    redis_bytes = entries * m["redis_bytes_per_entry"]
    out.append(
        Line(
            "Redis memory",
            f"{redis_bytes / GIB:.2f} GiB",
            f"{entries:,} snapshot entries (entities × tiers) × {m['redis_bytes_per_entry']} bytes measured",
        )
    )
    return out


def render(lines: list[Line]) -> str:
    rows = ["| what | figure | from |", "|---|---|---|"]
    rows += [f"| {line.what} | {line.figure} | {line.how} |" for line in lines]
    return "\n".join(rows)


def page_is_current(page: Path = PAGE) -> bool:
    text = page.read_text(encoding="utf-8")
    return replace_between(text, MARKER, render(model(load()))) == text


def main() -> int:
    body = render(model(load()))
    publish_section(PAGE, MARKER, body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
