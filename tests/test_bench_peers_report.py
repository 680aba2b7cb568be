"""The peers benchmark's report: a saved result is judged against the goals in code (a miss is said as a miss)
and rendered into the doc sections, naming the result by its file name only; and the Centrifugo bridge's
pacing. No network."""

from __future__ import annotations

import copy
from typing import Any

from bench.peers.centrifugo_bridge import Paced
from bench.peers.node_profile import section, split
from bench.peers.report import goals, page_body, summary_body
from bench.report import replace_between

TIERS4 = {"operator": 4000, "licensed": 4000, "public": 4000, "open": 4000}


def sample() -> dict[str, Any]:
    per_run = {t: {"records": n, "duplicates": 0} for t, n in TIERS4.items()}
    med = {
        "pipeline": {"records_per_s": 4600.0, "sustained_per_s": 4100.0, "cpu_us_per_record": 67.0},
        "quix": {"records_per_s": 175.0, "sustained_per_s": 170.0, "cpu_us_per_record": 1190.0},
    }
    fan = {"deliveries_per_s": 0.0, "p50_ms": 30, "p99_ms": 80, "server_cpu": 0.5, "kb_per_connection": 34.6}
    return {
        "bench": "peers",
        "git_sha": "a" * 40,
        "when": "2026-12-05T16:00:00Z",
        "machine": {"loadavg": [1.0, 1.0, 1.0], "cores": 2},
        "quix": {
            "records": 4000,
            "rounds": 3,
            "runs": {"pipeline": [{"tiers": per_run}] * 3, "quix": [{"tiers": per_run}] * 3},
            "medians": med,
            "equivalence": {"per_tier_records": TIERS4, "equal_counts": True, "duplicates": 0},
        },
        "centrifugo": {
            "clients": 2000,
            "channels": 117,
            "rate": 2000,
            "seconds": 20.0,
            "rounds": 3,
            "runs": {
                "ours": [{"deliveries_per_s": 990_000.0, "p99_ms": 80, "input_records": 32_000}],
                "centrifugo": [{"deliveries_per_s": 1_000_000.0, "p99_ms": 80, "input_records": 32_000}],
            },
            "medians": {
                "ours": {**fan, "deliveries_per_s": 990_000.0},
                "centrifugo": {**fan, "deliveries_per_s": 1_000_000.0, "kb_per_connection": 69.8},
            },
            "capacity": {
                "ours": {"windows": [window(2000, 990_000.0, 80, False), window(4000, 1_900_000.0, 450, True)]},
                "centrifugo": {
                    "windows": [window(2000, 1_000_000.0, 70, False), window(4000, 2_000_000.0, 150, False)]
                },
            },
        },
    }


def window(rate: int, deliveries: float, p99: int, over: bool) -> dict[str, Any]:
    return {"rate": rate, "deliveries_per_s": deliveries, "p50_ms": p99 // 2, "p99_ms": p99, "server_cpu": 0.9,
            "kb_per_connection": 40.0, "overloaded": over}  # fmt: skip


def test_goals_are_judged_from_the_figures() -> None:
    by_name = {g.name: g for g in goals(sample())}
    quix = by_name["pipeline vs Quix Streams, sustained records/s"]
    assert quix.met and quix.measured.startswith("24.1×")
    assert by_name["same output as Quix Streams"].met
    # capacity: ours held its bounds up to 2,000 records/s, Centrifugo up to 4,000: a miss, said as one
    centrifugo = by_name["fan-out vs Centrifugo, deliveries/s at capacity with equal p99 bound"]
    assert not centrifugo.met and centrifugo.measured.startswith("0.49×") and centrifugo.line().startswith("MISSED")
    assert by_name["memory per connection under load vs Centrifugo"].met


def test_unequal_outputs_or_duplicates_fail_the_output_goal() -> None:
    result = copy.deepcopy(sample())
    result["quix"]["equivalence"].update(equal_counts=False, duplicates=3)
    goal = {g.name: g for g in goals(result)}["same output as Quix Streams"]
    assert not goal.met and "DIFFER" in goal.measured and "3 duplicates" in goal.measured


def test_sections_show_the_figures_and_name_the_result_file_only() -> None:
    quix = page_body(sample(), "peers-2026-12-05T160000Z-aaaaaaa.json", "quix")
    assert "| ours (stream worker) | 4,600 | 4,100 | 67.0 |" in quix
    assert "| Quix Streams | 175 | 170 | 1,190.0 |" in quix and "Centrifugo" not in quix
    page = page_body(sample(), "peers-2026-12-05T160000Z-aaaaaaa.json", "centrifugo")
    assert "| memory per connection under load (KB RSS) | 34.6 | 69.8 |" in page
    assert "- ours: 990,000, 80, 32,000" in page and "- Centrifugo: 1,000,000, 80, 32,000" in page
    assert "| ours | 4,000 | 1,900,000 | 225 | 450 | 0.90 | 40.0 | past the knee |" in page
    assert "bench/results" not in page and "peers-2026-12-05T160000Z-aaaaaaa.json" in page
    summary = summary_body(sample(), "peers-x.json", "centrifugo")
    assert summary.count("- met:") == 1 and summary.count("- MISSED:") == 1
    doc = replace_between("# Benchmarks\n\nhand text\n", "bench:peers-centrifugo-summary", summary)
    assert replace_between(doc, "bench:peers-centrifugo-summary", summary) == doc


def test_a_run_of_one_peer_leaves_the_other_peers_section_as_it_was(tmp_path: Any, monkeypatch: Any) -> None:
    from bench.peers import __main__ as peers_main

    page, summary = tmp_path / "peers.md", tmp_path / "benchmarks.md"
    page.write_text("<!-- bench:peers-quix -->\nold quix\n<!-- /bench:peers-quix -->\n")
    summary.write_text("intro\n")
    monkeypatch.setattr(peers_main, "PAGE", page)
    monkeypatch.setattr(peers_main, "SUMMARY", summary)
    only_centrifugo = {k: v for k, v in sample().items() if k != "quix"}
    peers_main.publish(only_centrifugo, tmp_path / "peers-y.json")
    text = page.read_text()
    assert "old quix" in text and "<!-- bench:peers-centrifugo -->" in text and "peers-y.json" in text
    assert "bench:peers-centrifugo-summary" in summary.read_text()


def test_alternated_ramp_rounds_are_judged_by_their_median_ratio() -> None:
    result = copy.deepcopy(sample())
    fan = result["centrifugo"]
    pair = fan.pop("capacity")  # 0.49×: ours held 2,000 records/s, Centrifugo 4,000

    def level(ours_ok: bool) -> dict[str, Any]:
        # the same knee as Centrifugo's, a few deliveries fewer inside the window: a tie, not a loss
        ours = [window(2000, 990_000.0, 80, False), window(4000, 1_999_000.0, 150 if ours_ok else 450, not ours_ok)]
        return {"ours": {"windows": ours}, "centrifugo": pair["centrifugo"]}

    fan["capacity_rounds"] = [pair, level(True), level(True)]
    goal = {g.name: g for g in goals(result)}["fan-out vs Centrifugo, deliveries/s at capacity with equal p99 bound"]
    assert goal.met and goal.measured.startswith("1.00× (rounds: 0.49×, 1.00×, 1.00×; median round 1,999,000 at 4,000")
    fan["capacity_rounds"] = [level(True), pair, level(False)]  # two rounds of three lost: a miss
    goal = {g.name: g for g in goals(result)}["fan-out vs Centrifugo, deliveries/s at capacity with equal p99 bound"]
    assert not goal.met and goal.measured.startswith("0.49×")
    page = page_body(result, "peers-z.json", "centrifugo")
    assert "3 round(s)" in page and "4,000 vs 4,000, 1.00×; 2,000 vs 4,000, 0.49×; 2,000 vs 4,000, 0.49×" in page


def test_the_centrifugo_bridge_keeps_our_frame_gap_per_channel_and_latest_state_per_entity() -> None:
    paced = Paced(50)

    def publish(channel: str, *records: tuple[str, int]) -> list[dict[str, Any]]:
        return [{"publish": {"channel": channel, "data": {"records": [{"id": i, "v": v} for i, v in records]}}}]

    paced.add(publish("f0", ("a", 1)))
    assert [c["publish"]["channel"] for c in paced.due(10.0)] == ["f0"]
    paced.add(publish("f0", ("a", 2), ("b", 1)))
    paced.add(publish("f1", ("c", 1)))
    assert [c["publish"]["channel"] for c in paced.due(10.02)] == ["f1"]  # f0 published 20 ms ago
    paced.add(publish("f0", ("a", 3)))
    (late,) = paced.due(10.05)
    assert late["publish"]["data"]["records"] == [{"id": "a", "v": 3}, {"id": "b", "v": 1}]


def test_the_node_profile_puts_each_sample_in_the_step_of_its_innermost_named_frame() -> None:
    raw = "\n".join(
        [
            # a frame written to a member's socket: the write, not the delivery that made it
            "MainThread;run (server.py:10);deliver (session.py:83);write (asyncio/selector_events.py:1070) 30",
            "MainThread;tick (hub.py:200);deliver (session.py:84) 20",
            "MainThread;tick (hub.py:200);delta (codec.py:50) 15",
            "kafka-reader;_read (feed_reader.py:90);getmany (aiokafka/consumer/consumer.py:1200) 25",
            "MainThread;tick (hub.py:200);flush (stream.py:206) 10",
            "MainThread 5",  # native code only: counted, named nowhere
        ]
    )
    steps, leaves, total = split(raw)
    assert total == 105
    assert steps["socket writes (transport, kernel)"] == 30
    assert steps["per-member delivery (session, sink, usage)"] == 20
    assert steps["frame encoding"] == 15
    assert steps["Kafka read and decode (reader thread)"] == 25
    assert steps["tick: changes, stream index, filters"] == 10
    assert steps["other"] == 5 and leaves["(native)"] == 5
    result = {
        "when": "2026-12-06T18:00:00Z", "git_sha": "abcdef1234567890", "machine": {"loadavg": [1.0, 1.0, 1.0]},
        "clients": 2000, "seconds": 15.0, "us_per_delivery": 0.4, "samples": total,
        "samples_by_step": dict(steps.most_common()), "top_leaves": dict(leaves.most_common()),
        "window": {"rate": 14000, "deliveries_per_s": 2_146_441.0, "p99_ms": 187, "server_cpu": 0.83},
    }  # fmt: skip
    page = section(result, "peers-node-profile-x.json")
    assert "| socket writes (transport, kernel) | 29 % | 0.11 |" in page
    assert "14,000 records/s" in page and "2,146,441 deliveries/s" in page
    # functions by name, without the files of libraries the docs' path check would look for
    assert "functions with the most samples: write 29 %," in page and ".py" not in page
