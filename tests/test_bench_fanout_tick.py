"""The in-process tick bench (bench/fanout/tick.py) is a before/after tool: it is only worth anything if the
same code on the same seed sends the same frames, so that a different digest means different output."""

from __future__ import annotations

from bench.fanout.tick import measure, subscription


def test_the_same_code_and_seed_send_the_same_frames_and_the_filters_follow_the_load_generators_mix():
    first, again = measure(rate=500, seconds=1, clients=60), measure(rate=500, seconds=1, clients=60)
    assert first["frames"] > 0 and first["cpu_s"] > 0
    assert first["digest"] == again["digest"] and first["frames"] == again["frames"]
    import random

    kinds = [next(iter(subscription(n, random.Random(n))["filter"]), "whole feed") for n in range(20)]
    assert [kinds.count(k) for k in ("district", "bbox", "near", "whole feed")] == [10, 6, 3, 1]
