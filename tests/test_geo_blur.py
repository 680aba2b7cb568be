"""Blur primitives and the metric grid."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geo import blur, grid

lngs = st.floats(min_value=120.85, max_value=122.2, allow_nan=False)
lats = st.floats(min_value=30.66, max_value=31.9, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(lngs, lats, st.sampled_from([10.0, 50.0, 100.0]))
def test_snap_is_within_half_diagonal_idempotent_and_nested(lng: float, lat: float, cell: float) -> None:
    c = grid.snap(lng, lat, cell)
    assert grid.haversine_m(lng, lat, *c) <= cell * math.sqrt(2) / 2 + 1e-6
    assert grid.snap(*c, cell) == pytest.approx(c, abs=1e-12)
    # A 10 m centre snapped onto the 50 m grid lands where the original point does.
    assert grid.snap(*grid.snap(lng, lat, 10.0), 50.0) == pytest.approx(grid.snap(lng, lat, 50.0), abs=1e-12)
    xs, ys = grid.snap_arrays([lng], [lat], cell)
    assert (xs[0], ys[0]) == c


def test_snap_is_stable_at_a_cell_edge() -> None:
    # Build a point exactly on a grid line; it and points a hair either side resolve deterministically.
    col, _row = grid.cell_of(121.47, 31.23, 50.0)
    edge_lng = grid.ORIGIN_LNG + col * 50.0 / grid._M_PER_DEG_LNG
    results = {grid.cell_of(edge_lng, 31.23, 50.0) for _ in range(5)}
    assert len(results) == 1
    left, right = grid.cell_of(edge_lng - 1e-7, 31.23, 50.0), grid.cell_of(edge_lng + 1e-7, 31.23, 50.0)
    assert right[0] == left[0] + 1 and results.pop() in {left, right}
    # Centres of neighbouring cells are one cell apart.
    a, b = grid.snap(edge_lng - 1e-7, 31.23, 50.0), grid.snap(edge_lng + 1e-7, 31.23, 50.0)
    assert 49.0 < grid.haversine_m(*a, *b) <= 50.0
    with pytest.raises(ValueError, match="positive"):
        grid.snap(121.4, 31.2, 0)


def test_angle_and_value_rounding() -> None:
    assert blur.quantise_angle(357.0, 10) == 0.0
    assert blur.quantise_angle(22.5, 45) == 45.0
    assert blur.quantise_angle(22.4, 45) == 0.0
    assert blur.round_to_base(32.5, 5) == 35.0
    assert blur.round_count(1234, 10) == 1230 and blur.round_count(1235, 10) == 1240
    assert np.round(blur.round_arrays([2.5, -2.5, 7.4], 5), 9).tolist() == [5.0, -5.0, 5.0]


def test_random_rounding_to_3_is_deterministic_and_unbiased() -> None:
    outs = [blur.random_round_3(10, f"seed-{i}".encode()) for i in range(3000)]
    assert set(outs) == {9, 12}
    assert abs(np.mean(outs) - 10) < 0.15
    assert blur.random_round_3(10, b"x") == blur.random_round_3(10, b"x")
    assert blur.random_round_3(12, b"x") == 12


def test_bands() -> None:
    bands = [blur.Band(0, 0, "0"), blur.Band(1, 5, "1-5"), blur.Band(6, None, ">5")]
    assert [blur.band_of(v, bands) for v in (0, 1, 5, 6, 999)] == ["0", "1-5", "1-5", ">5", ">5"]
    with pytest.raises(ValueError, match="contiguous"):
        blur.check_bands([blur.Band(0, 1, "a"), blur.Band(3, None, "b")])
    with pytest.raises(ValueError, match="open-ended"):
        blur.check_bands([blur.Band(0, 1, "a")])


def test_pseudonyms_rotate_daily_and_time_truncation() -> None:
    day = 1_780_000_000_000
    a = blur.pseudonym(b"k", day, "tok")
    assert a == blur.pseudonym(b"k", day + 1000, "tok") and len(a) == 16
    assert a != blur.pseudonym(b"k", day + 86_400_000, "tok")
    assert a != blur.pseudonym(b"k2", day, "tok")
    with pytest.raises(ValueError):
        blur.pseudonym(b"", day, "tok")
    assert blur.truncate_time(1_780_000_123_456, 900_000) == 1_779_999_300_000
