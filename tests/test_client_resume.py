"""The Python client's stream bookkeeping (pure): what it resumes with, and that it never skips a gap."""

from __future__ import annotations

import pytest

from client.resume import GapError, StreamPosition


def test_resume_token_carries_epoch_seq_and_the_latest_position() -> None:
    position = StreamPosition()
    assert position.resume_token() is None  # nothing to resume before the first subscribe
    position.on_subscribed({"stream": "s1", "epoch": "n1-s1", "seq": 0, "pos": "ab12.10.20"})
    position.on_snapshot({"seq": 0, "part": 0, "records": [{"id": "b1", "lng": 121.4}], "pos": "ab12.10.20"})
    position.on_delta({"seq": 1, "upsert": [{"id": "b2"}], "remove": ["b1"], "stale": [], "pos": "ab12.11.20"})
    assert position.resume_token() == {"epoch": "n1-s1", "seq": 1, "pos": "ab12.11.20"}
    assert set(position.entities) == {"b2"}


def test_a_frame_out_of_sequence_is_a_gap_unless_the_server_says_why() -> None:
    position = StreamPosition()
    position.on_subscribed({"stream": "s1", "epoch": "e", "seq": 4})
    with pytest.raises(GapError):
        position.on_delta({"seq": 6, "upsert": [], "remove": [], "stale": []})
    # A conflated catch-up (slow client, or a resume on another node) jumps on purpose.
    position.on_delta({"seq": 9, "conflated": True, "upsert": [{"id": "x"}], "remove": [], "stale": []})
    assert position.seq == 9 and "x" in position.entities
    position.on_delta({"seq": 10, "upsert": [], "remove": ["x"], "stale": []})
    assert position.entities == {}


def test_reset_forgets_everything_including_the_old_position() -> None:
    position = StreamPosition()
    position.on_subscribed({"stream": "s1", "epoch": "e", "seq": 3, "pos": "ab.1"})
    position.on_snapshot({"seq": 3, "part": 0, "records": [{"id": "a"}, {"id": "b", "state": "stale"}]})
    assert position.stale == {"b"}
    position.on_reset({"stream": "s2", "epoch": "f", "seq": 0})
    assert position.entities == {} and position.stale == set()
    assert position.resume_token() == {"epoch": "f", "seq": 0}
