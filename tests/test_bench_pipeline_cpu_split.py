"""The CPU split's pure part: py-spy's collapsed stacks put into steps and stages. No network."""

from __future__ import annotations

from bench.pipeline.cpu_split import per_record, split

# py-spy's raw format: frames outermost first, then the sample count
STACKS = "\n".join(
    [
        'process 1:"python";<module> (bench/pipeline/variants.py:340);BatchStage.run (streams/io/stage.py:160);'
        "CleanStage.process (streams/stages/clean.py:110);PolicyEngine._step (streams/policy/engine.py:171) 6",
        'process 1:"python";<module> (bench/pipeline/variants.py:340);StageOutputs.deliver '
        "(streams/stages/outputs.py:103);StateStore.write (streams/io/state_store.py:70);_pack_hset "
        "(streams/io/state_store.py:117) 3",
        'process 1:"python";<module> (bench/pipeline/variants.py:340);BaseEventLoop._run_once '
        "(asyncio/base_events.py:1922);EpollSelector.select (selectors.py:468) 1",
    ]
)


def test_each_sample_goes_to_its_innermost_named_step_and_its_stage() -> None:
    steps, stages, leaves, total = split(STACKS)
    assert total == 10
    assert steps == {"policy kernel + encode": 6, "redis state": 3, "event loop": 1}
    # variants.py at the root of every stack is not the plain loop: only its run_plain* functions are
    assert stages["clean"] == 9 and "plain loop" not in stages
    assert leaves["_pack_hset (streams/io/state_store.py:117)"] == 3


def test_shares_of_samples_become_microseconds_per_record() -> None:
    steps, _, _, total = split(STACKS)
    assert per_record(steps, total, 40.0) == {"policy kernel + encode": 24.0, "redis state": 12.0, "event loop": 4.0}
