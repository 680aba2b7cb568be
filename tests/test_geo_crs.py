"""Coordinate-system conversions against the published vectors bundled in geo/data/crs-test-vectors.json."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geo import crs, grid

VECTORS: dict[str, Any] = json.loads(
    (Path(crs.__file__).parent / "data" / "crs-test-vectors.json").read_text(encoding="utf-8")
)
CASES = [case for group in VECTORS["sets"] for case in group["cases"]]
EARTH_M_PER_DEG = 111_320.0


def _metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    dx = (a[0] - b[0]) * EARTH_M_PER_DEG * math.cos(math.radians(b[1]))
    dy = (a[1] - b[1]) * EARTH_M_PER_DEG
    return math.hypot(dx, dy)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['from']}->{c['to']}@{c['in']}")
def test_published_vector_scalar_and_array(case: dict[str, Any]) -> None:
    name = f"{case['from']}_to_{case['to']}"
    lng, lat = getattr(crs, name)(*case["in"])
    assert lng == pytest.approx(case["out"][0], abs=case["tol_deg"])
    assert lat == pytest.approx(case["out"][1], abs=case["tol_deg"])
    xs, ys = getattr(crs, f"{name}_arrays")(np.array([case["in"][0]]), np.array([case["in"][1]]))
    assert xs[0] == pytest.approx(case["out"][0], abs=case["tol_deg"])
    assert ys[0] == pytest.approx(case["out"][1], abs=case["tol_deg"])
    # convert() by name gives the same answer.
    assert crs.convert(case["in"][0], case["in"][1], case["from"], case["to"]) == pytest.approx((lng, lat), abs=1e-12)


@pytest.mark.parametrize("case", VECTORS["known_wrong"]["cases"])
def test_known_buggy_bd09_vectors_are_not_reproduced(case: dict[str, Any]) -> None:
    out = crs.bd09_to_wgs84(*case["in"])
    assert _metres(out, tuple(case["buggy_out"])) > 5.0


@pytest.mark.parametrize("point", VECTORS["outside_china"]["unchanged"])
def test_outside_china_is_unchanged(point: list[float]) -> None:
    lng, lat = point
    assert crs.out_of_china(lng, lat)
    for name in ("wgs84_to_gcj02", "gcj02_to_wgs84"):
        assert getattr(crs, name)(lng, lat) == (lng, lat)
        xs, ys = getattr(crs, f"{name}_arrays")([lng], [lat])
        assert (xs[0], ys[0]) == (lng, lat)


def test_shanghai_offset_is_hundreds_of_metres() -> None:
    people_square = (121.470457083, 31.234865971)
    assert 300 < _metres(crs.wgs84_to_gcj02(*people_square), people_square) < 700


shanghai_lng = st.floats(min_value=120.85, max_value=122.2, allow_nan=False)
shanghai_lat = st.floats(min_value=30.65, max_value=31.9, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(shanghai_lng, shanghai_lat)
def test_gcj02_inverse_is_exact_and_beats_one_step(lng: float, lat: float) -> None:
    bounds = VECTORS["round_trip_bounds_m"]
    back = crs.gcj02_to_wgs84(*crs.wgs84_to_gcj02(lng, lat))
    assert _metres(back, (lng, lat)) <= bounds["wgs84->gcj02->wgs84 iterative"]
    approx = crs.gcj02_to_wgs84_onestep(*crs.wgs84_to_gcj02(lng, lat))
    assert _metres(approx, (lng, lat)) <= bounds["wgs84->gcj02->wgs84 one-step"]


@settings(max_examples=200, deadline=None)
@given(shanghai_lng, shanghai_lat)
def test_bd09_round_trips(lng: float, lat: float) -> None:
    bounds = VECTORS["round_trip_bounds_m"]
    closed = crs.bd09_to_gcj02(*crs.gcj02_to_bd09(lng, lat))
    assert _metres(closed, (lng, lat)) <= bounds["gcj02->bd09->gcj02"]
    exact = crs.bd09_to_gcj02_exact(*crs.gcj02_to_bd09(lng, lat))
    assert _metres(exact, (lng, lat)) <= 1e-6
    full = crs.bd09_to_wgs84(*crs.wgs84_to_bd09(lng, lat))
    assert _metres(full, (lng, lat)) <= bounds["gcj02->bd09->gcj02"]


def test_arrays_match_scalars_over_a_grid() -> None:
    grid_x, grid_y = np.meshgrid(np.linspace(120.9, 122.1, 37), np.linspace(30.7, 31.85, 29))
    lngs, lats = grid_x.ravel(), grid_y.ravel()
    pairs = [
        ("wgs84_to_gcj02", 1e-12),
        ("gcj02_to_wgs84", 1e-10),
        ("gcj02_to_bd09", 1e-12),
        ("bd09_to_gcj02", 1e-12),
        ("wgs84_to_bd09", 1e-12),
        ("bd09_to_wgs84", 1e-10),
        ("bd09_to_gcj02_exact", 1e-10),
    ]
    for name, tol in pairs:
        xs, ys = getattr(crs, f"{name}_arrays")(lngs, lats)
        expected = np.array([getattr(crs, name)(x, y) for x, y in zip(lngs, lats, strict=True)])
        assert np.max(np.abs(xs - expected[:, 0])) < tol, name
        assert np.max(np.abs(ys - expected[:, 1])) < tol, name


@pytest.mark.parametrize("cell_m", [10.0, 50.0, 500.0])
def test_lattice_conversion_matches_the_arrays_on_snapped_points(cell_m: float) -> None:
    rng = np.random.default_rng(int(cell_m))
    # Shanghai, a few points far away in China and outside it (left unchanged), all snapped to the grid.
    lngs = np.concatenate([rng.uniform(120.8, 122.2, 20_000), [116.4, 87.6, 139.7, 2.35]])
    lats = np.concatenate([rng.uniform(30.6, 31.9, 20_000), [39.9, 43.8, 35.7, 48.86]])
    x, y = grid.snap_arrays(lngs, lats, cell_m)
    lattice = grid.lattice_of(x, y, cell_m, max_axis=1 << 22)
    assert lattice is not None
    lx, ly = crs.wgs84_to_gcj02_lattice(lattice)
    ax, ay = crs.wgs84_to_gcj02_arrays(x, y)
    assert np.max(np.abs(lx - ax)) < 1e-12 and np.max(np.abs(ly - ay)) < 1e-12
    assert (lx[-2:] == x[-2:]).all() and (ly[-2:] == y[-2:]).all()  # Tokyo and Paris stay as they are
    assert (np.round(lx, 6) == np.round(ax, 6)).mean() > 0.9999


def test_lattice_is_refused_for_points_that_are_not_the_grids_centres() -> None:
    x, y = grid.snap_arrays([121.47, 121.5], [31.23, 31.2], 50.0)
    assert grid.lattice_of(x, y, 50.0) is not None
    assert grid.lattice_of(x, y, 20.0) is None  # a 50 m centre is not a 20 m centre (it is a 10 m one)
    assert grid.lattice_of(x + 1e-9, y, 50.0) is None
    assert grid.lattice_of([x[0], math.nan], [y[0], y[1]], 50.0) is None
    far_x, far_y = grid.snap_arrays([-120.0, 121.5], [31.2, 31.2], 50.0)  # spread over half the world
    assert grid.lattice_of(far_x, far_y, 50.0) is None


def test_mismatched_array_shapes_are_a_clear_error() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        crs.wgs84_to_gcj02_arrays([121.0, 121.1], [31.0])


def test_convert_rejects_unknown_crs() -> None:
    with pytest.raises(ValueError, match="unknown CRS"):
        crs.convert(121.4, 31.2, "wgs84", "epsg3857")


def test_plausibly_in_shanghai() -> None:
    assert crs.plausibly_in_shanghai(121.47, 31.23)
    assert crs.plausibly_in_shanghai(121.91, 31.62)  # Chongming
    assert not crs.plausibly_in_shanghai(31.23, 121.47)  # swapped
    assert not crs.plausibly_in_shanghai(0.0, 0.0)
    assert not crs.plausibly_in_shanghai(116.40, 39.91)  # Beijing
    assert not crs.plausibly_in_shanghai(float("nan"), 31.2)
    mask = crs.plausibly_in_shanghai_arrays([121.47, 116.4], [31.23, 39.9])
    assert mask.tolist() == [True, False]
