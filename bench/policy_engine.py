"""Benchmark: the policy kernel (grid snap + GCJ-02 conversion + rounding) against what a competent engineer
would write instead, a plain numpy port of the same formulae, in the same run (and, as a secondary row, a
per-record Python loop); then the full engine on canonical bus dicts: every tier in one chained pass
(``views_by_tier``; the pipeline uses the same pass as ``encoded_by_tier``) against one ``apply`` per tier,
and the daily-keyed pseudonym with and without its cache.

Variants alternate in every round (the order rotates), each figure is the median over the rounds, the
outputs are checked equal first, the result JSON (commit, machine load) goes to bench/results/, and the
goals are checked here and written with the figures into docs/benchmarks-policy.md and docs/benchmarks.md.

Run: .venv/bin/python -m bench.policy_engine [--n 1000000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import functools
import math
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.report import ROOT, Goal, machine, publish_section, stamp, write_result
from geo import blur, crs, grid
from schemas import TIERS
from streams.policy import PolicyEngine
from streams.policy.batch import positions_out

CELL_M = 50.0
DECIMALS = 6
KERNEL_MIN_RATIO = 2.0  # the kernel against the plain numpy port, same points, same run
KERNEL_MIN_RATE = 1_000_000  # positions/s on one core
PAGE = ROOT / "docs/benchmarks-policy.md"
SUMMARY = ROOT / "docs/benchmarks.md"

Positions = tuple[np.ndarray, np.ndarray]


def ours(lngs: np.ndarray, lats: np.ndarray) -> Positions:
    """What a snapped tier does: snap, then convert knowing the points are the grid's centres."""
    x, y = grid.snap_arrays(lngs, lats, CELL_M)
    return positions_out(x, y, "gcj02", DECIMALS, cell_m=CELL_M)


def ours_general(lngs: np.ndarray, lats: np.ndarray) -> Positions:
    """The engine's path for positions that are not on a grid (the licensed and operator tiers)."""
    x, y = grid.snap_arrays(lngs, lats, CELL_M)
    return positions_out(x, y, "gcj02", DECIMALS)


_A, _EE = 6378245.0, 0.00669342162296594323


def numpy_port(lngs: np.ndarray, lats: np.ndarray) -> Positions:
    """The published formulae transcribed to numpy whole-array operations, as one would write them."""
    x0, y0 = grid.snap_arrays(lngs, lats, CELL_M)
    x, y, pi = x0 - 105.0, y0 - 35.0, math.pi
    sx = np.sqrt(np.abs(x))
    common = (20.0 * np.sin(6.0 * x * pi) + 20.0 * np.sin(2.0 * x * pi)) * 2.0 / 3.0
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * sx + common
    dlat += (20.0 * np.sin(y * pi) + 40.0 * np.sin(y / 3.0 * pi)) * 2.0 / 3.0
    dlat += (160.0 * np.sin(y / 12.0 * pi) + 320.0 * np.sin(y * pi / 30.0)) * 2.0 / 3.0
    dlng = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * sx + common
    dlng += (20.0 * np.sin(x * pi) + 40.0 * np.sin(x / 3.0 * pi)) * 2.0 / 3.0
    dlng += (150.0 * np.sin(x / 12.0 * pi) + 300.0 * np.sin(x / 30.0 * pi)) * 2.0 / 3.0
    radlat = y0 / 180.0 * pi
    magic = 1.0 - _EE * np.sin(radlat) ** 2
    sqrtmagic = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1.0 - _EE)) / (magic * sqrtmagic) * pi)
    dlng = (dlng * 180.0) / (_A / sqrtmagic * np.cos(radlat) * pi)
    outside = (x0 < crs.CHINA_MIN_LNG) | (x0 > crs.CHINA_MAX_LNG) | (y0 < crs.CHINA_MIN_LAT) | (y0 > crs.CHINA_MAX_LAT)
    lng_out = np.where(outside, x0, x0 + dlng)
    lat_out = np.where(outside, y0, y0 + dlat)
    return np.round(lng_out, DECIMALS), np.round(lat_out, DECIMALS)


def per_record(lngs: list[float], lats: list[float]) -> list[tuple[float, float]]:
    out = []
    for lng, lat in zip(lngs, lats, strict=True):
        x, y = grid.snap(lng, lat, CELL_M)
        gx, gy = crs.wgs84_to_gcj02(x, y)
        out.append((round(gx, DECIMALS), round(gy, DECIMALS)))
    return out


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def agreement(a: Positions, b: Positions) -> tuple[float, float]:
    """Largest difference in degrees, and the share of coordinates that are identical."""
    diff = max(float(np.max(np.abs(a[0] - b[0]))), float(np.max(np.abs(a[1] - b[1]))))
    same = float(((a[0] == b[0]) & (a[1] == b[1])).mean())
    return diff, same


def bus_records(lngs: np.ndarray, lats: np.ndarray, n: int) -> list[dict[str, Any]]:
    t0 = 1_780_000_000_000
    return [
        {
            "id": f"obu-{i % 5000}",
            "source": "bench",
            "observed_at": t0 + i,
            "expires_at": t0 + i + 60_000,
            "lng": float(lngs[i]),
            "lat": float(lats[i]),
            "route_id": "71",
            "label": f"B{i % 5000}",
            "vehicle_id": f"obu-{i % 5000}",
            "bearing": float(i % 360),
            "speed_kmh": float(i % 80),
            "occupancy_status": "FEW_SEATS_AVAILABLE",
            "occupancy_pct": float(i % 100),
        }
        for i in range(n)
    ]


def measure(args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(20261101)
    lngs = rng.uniform(121.0, 121.9, args.n)
    lats = rng.uniform(30.8, 31.5, args.n)

    # Same answers first: every variant gives the coordinates the per-record loop gives.
    m = min(args.loop_n, args.n)
    loop = per_record(lngs[:m].tolist(), lats[:m].tolist())
    reference = (np.array([p[0] for p in loop]), np.array([p[1] for p in loop]))
    kernels: dict[str, Callable[[np.ndarray, np.ndarray], Positions]] = {
        "ours": ours,
        "ours_general": ours_general,
        "numpy_port": numpy_port,
    }
    agree = {}
    for name, fn in kernels.items():
        diff, same = agreement(fn(lngs[:m], lats[:m]), reference)
        assert diff <= 10**-DECIMALS and same > 0.999, f"{name} and the loop disagree: {diff}, {same:.5f} identical"
        agree[name] = {"max_diff_deg": diff, "identical_share": same}

    engine = PolicyEngine(secret=b"bench")
    records = bus_records(lngs, lats, min(args.records, args.n))
    batches = [records[i : i + 2000] for i in range(0, len(records), 2000)]

    def per_tier() -> None:
        for b in batches:
            for tier in TIERS:
                engine.apply("bus", tier, b)

    def chained() -> None:
        for b in batches:
            engine.views_by_tier("bus", b)

    cache = blur.PseudonymCache(b"bench")
    ids = [(int(str(r["observed_at"])), str(r["id"])) for r in records]
    loop_lngs, loop_lats = lngs[: args.loop_n].tolist(), lats[: args.loop_n].tolist()
    # Per variant: (work, items it handles).
    work: dict[str, tuple[Callable[[], object], int]] = {
        **{name: (functools.partial(fn, lngs, lats), args.n) for name, fn in kernels.items()},
        "per_record_loop": ((lambda: per_record(loop_lngs, loop_lats)), args.loop_n),
        "engine_public": ((lambda: engine.apply("bus", "public", records)), len(records)),
        "engine_per_tier": (per_tier, len(records)),
        "engine_chained": (chained, len(records)),
        "pseudonym_plain": ((lambda: [blur.pseudonym(b"bench", t, v) for t, v in ids]), len(ids)),
        "pseudonym_cached": ((lambda: [cache(t, v) for t, v in ids]), len(ids)),
    }
    names = list(work)
    rounds = []
    for r in range(args.rounds):
        # The order rotates each round, so a burst of load from other processes hits every variant alike.
        order = names[r % len(names) :] + names[: r % len(names)]
        rounds.append({name: work[name][1] / timed(work[name][0]) for name in order})
    rates = {name: statistics.median(r[name] for r in rounds) for name in names}
    return {
        "bench": "policy-engine",
        "config": {
            "n": args.n,
            "loop_n": args.loop_n,
            "records": len(records),
            "rounds": args.rounds,
            "cell_m": CELL_M,
            "decimals": DECIMALS,
        },
        "python": platform.python_version(),
        "numpy": np.__version__,
        "agreement": agree,
        "rounds": rounds,
        "median_per_s": rates,
    }


def goals(result: dict[str, Any]) -> list[Goal]:
    rate = result["median_per_s"]
    per_round = [r["ours"] / r["numpy_port"] for r in result["rounds"]]
    ratio = statistics.median(per_round)
    return [
        Goal(
            "policy kernel against a plain numpy port",
            f"≥ {KERNEL_MIN_RATIO:g}×",
            f"{ratio:.1f}× (rounds {min(per_round):.1f}–{max(per_round):.1f}×; "
            f"{rate['ours'] / 1e6:.1f} vs {rate['numpy_port'] / 1e6:.1f} M positions/s)",
            ratio >= KERNEL_MIN_RATIO,
        ),
        Goal(
            "policy kernel rate on one core",
            f"≥ {KERNEL_MIN_RATE / 1e6:g} M positions/s",
            f"{rate['ours'] / 1e6:.1f} M positions/s",
            rate["ours"] >= KERNEL_MIN_RATE,
        ),
    ]


def page_section(result: dict[str, Any], source: str) -> str:
    rate, cfg = result["median_per_s"], result["config"]
    per_record_us = {k: 1e6 / v for k, v in rate.items()}
    before, after = result["machine_before"], result["machine_after"]
    lines = [
        f"Commit `{result['git_sha'][:12]}`, {result['when']}, Python {result['python']}, numpy {result['numpy']}, "
        f"{before['cores']} cores shared with other work (load average {before['loadavg'][0]} → "
        f"{after['loadavg'][0]}); medians of {cfg['rounds']} rounds, variants alternating. Raw result: `{source}` in "
        "the results folder (not in git; the script writes it).",
        "",
        "| variant | items per run | median rate | against the numpy port |",
        "|---|---|---|---|",
    ]
    for name, label, items in (
        ("ours", "**the kernel** (snap, then GCJ-02 per grid column and row, round)", cfg["n"]),
        ("ours_general", "the kernel's general path (positions not on a grid)", cfg["n"]),
        ("numpy_port", "plain numpy port of the formulae (whole arrays)", cfg["n"]),
        ("per_record_loop", "per-record Python loop (scalar functions)", cfg["loop_n"]),
    ):
        lines.append(
            f"| {label} | {items:,} positions | {rate[name] / 1e6:.2f} M/s | {rate[name] / rate['numpy_port']:.2f}× |"
        )
    lines += [
        "",
        "| full engine, bus records in batches of 2,000 | median |",
        "|---|---|",
        f"| bus → public on dicts (3 tier steps, pseudonyms, emit) | {rate['engine_public'] / 1e3:.0f} k records/s |",
        f"| all four tiers, one `apply` per tier | {per_record_us['engine_per_tier']:.1f} µs per record |",
        f"| all four tiers, chained `views_by_tier` (what the worker runs) | "
        f"{per_record_us['engine_chained']:.1f} µs per record "
        f"({rate['engine_chained'] / rate['engine_per_tier']:.1f}×) |",
        f"| pseudonym uncached / cached per (day, id) | {per_record_us['pseudonym_plain']:.2f} µs / "
        f"{per_record_us['pseudonym_cached']:.2f} µs |",
        "",
        "Outputs checked equal first, against the per-record loop on the first "
        f"{cfg['loop_n']:,} positions: "
        + "; ".join(
            f"{name} {a['identical_share']:.4%} identical, at most {a['max_diff_deg']:.0e}°"
            for name, a in result["agreement"].items()
        )
        + ".",
        "",
        *[f"- {g.line()}" for g in goals(result)],
    ]
    return "\n".join(lines)


def summary_section(result: dict[str, Any]) -> str:
    rate = result["median_per_s"]
    lines = [
        "| policy kernel ([details](benchmarks-policy.md)) | ours | plain numpy port, same run | ratio | goal | met? |",
        "|---|---|---|---|---|---|",
    ]
    ratio_goal, rate_goal = goals(result)
    lines.append(
        f"| grid snap + GCJ-02 + rounding, 1 core, commit `{result['git_sha'][:7]}` | {rate['ours'] / 1e6:.1f} M "
        f"positions/s | {rate['numpy_port'] / 1e6:.1f} M/s | {ratio_goal.measured.split(' (')[0]} | "
        f"{ratio_goal.target}, {rate_goal.target} | {'yes' if ratio_goal.met and rate_goal.met else '**no**'} |"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=1_000_000, help="positions for the vectorised kernels")
    parser.add_argument("--loop-n", type=int, default=100_000, help="positions for the per-record loop")
    parser.add_argument("--records", type=int, default=50_000, help="bus records for the full engine")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-docs", action="store_true", help="write the result JSON only")
    args = parser.parse_args()

    before = machine()
    result = {**stamp(), **measure(args), "machine_before": before, "machine_after": machine()}
    path = write_result(result)
    for goal in goals(result):
        print(goal.line())
    print(f"result: {path.relative_to(ROOT)}")
    if not args.no_docs:
        source = path.name  # the results folder is not in git: a path to it would dangle on a clone
        publish_section(PAGE, "policy-engine", page_section(result, source))
        publish_section(SUMMARY, "policy-engine", summary_section(result))


if __name__ == "__main__":
    main()
