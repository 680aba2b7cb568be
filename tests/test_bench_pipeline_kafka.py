"""One real run of the benchmark's fair plain loop (delivery overlapped with compute) on a small backlog:
what it writes to the four tier topics is the job's reference output, record for record, with no repeats.
Guards the baseline the CPU goal is measured against; about ten seconds."""

from __future__ import annotations

import argparse

import pytest

import settings
from bench.pipeline.fair import one_run
from bench.pipeline.outputs import check_run, reference_counts

pytestmark = pytest.mark.stack


async def test_overlapping_plain_loop_writes_the_reference_output(running_stack: settings.Settings) -> None:
    args = argparse.Namespace(max_poll=500, settle_seconds=0.0, workers=1, stagger_seconds=0.0)
    run = await one_run("plain-overlap", 3000, args, tag="test")
    check = check_run(run["tiers"], reference_counts(3000))
    assert check["equivalent"], check
    assert run["tiers"]["operator"]["records"] == 3000
