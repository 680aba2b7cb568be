"""Blur primitives the tier policy is made of. Each one is deterministic given its inputs.

Grid snapping lives in ``geo.grid``; this module has the rest: angle and value quantisation, count
rounding (to a base, or random rounding to base 3 seeded from a key), k-floor suppression into bands,
keyed pseudonyms with a daily key (days from ``geo.service_day``), stable keyed public ids, and time
truncation.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .service_day import UTC_DAYS, ServiceDay

DAY_MS = 86_400_000


def quantise_angle(degrees: float, step: float) -> float:
    """Nearest multiple of ``step`` in [0, 360): 357° at 10° steps is 0°, 22.5° at 45° is 45°."""
    if step <= 0:
        raise ValueError(f"angle step must be positive, got {step!r}")
    q = math.floor(degrees / step + 0.5) * step
    return float(q % 360.0)


def round_to_base(value: float, base: float) -> float:
    """Nearest multiple of ``base``, halves away from zero (so the result never depends on float ties
    banking to even)."""
    if base <= 0:
        raise ValueError(f"rounding base must be positive, got {base!r}")
    q = math.floor(abs(value) / base + 0.5) * base
    return math.copysign(q, value) if q else 0.0


def round_count(count: int, base: int) -> int:
    """Nearest multiple of ``base`` for a non-negative count (half up)."""
    if base <= 0:
        raise ValueError(f"rounding base must be positive, got {base!r}")
    return ((count + base // 2) // base) * base if base > 1 else count


def round_arrays(values: ArrayLike, base: float) -> NDArray[np.float64]:
    """Vectorised ``round_to_base``."""
    if base <= 0:
        raise ValueError(f"rounding base must be positive, got {base!r}")
    v = np.asarray(values, dtype=np.float64)
    return np.copysign(np.floor(np.abs(v) / base + 0.5) * base, v) + 0.0


def random_round_3(count: int, seed: bytes) -> int:
    """Random rounding to base 3 (as Stats NZ does): a count that is not a multiple of 3 goes to the
    multiple below with probability 2/3 if it is 1 above it, 1/3 if 2 above — unbiased on average. The
    'random' draw is an HMAC of ``seed``, so the same input always gives the same output (repeated
    releases of one value do not average out)."""
    rest = count % 3
    if rest == 0:
        return count
    draw = int.from_bytes(hashlib.sha256(seed).digest()[:8], "big") / 2**64
    down = draw < (3 - rest) / 3
    return count - rest if down else count - rest + 3


@dataclass(frozen=True, slots=True)
class Band:
    """A labelled closed range of counts; ``high`` None means no upper bound."""

    low: int
    high: int | None
    label: str

    def holds(self, value: int) -> bool:
        return value >= self.low and (self.high is None or value <= self.high)


def band_of(value: int, bands: Sequence[Band]) -> str:
    for band in bands:
        if band.holds(value):
            return band.label
    raise ValueError(f"value {value} falls in none of the bands {[b.label for b in bands]}")


def check_bands(bands: Sequence[Band]) -> None:
    """Bands must start at 0, be contiguous and end open, so every count has exactly one."""
    if not bands:
        raise ValueError("at least one band is needed")
    expected = 0
    for i, band in enumerate(bands):
        if band.low != expected:
            raise ValueError(f"band {band.label!r} starts at {band.low}, expected {expected} (contiguous from 0)")
        if band.high is None:
            if i != len(bands) - 1:
                raise ValueError(f"only the last band may be open-ended, not {band.label!r}")
            return
        if band.high < band.low:
            raise ValueError(f"band {band.label!r} ends before it starts")
        expected = band.high + 1
    raise ValueError("the last band must be open-ended (high = none)")


def day_key(secret: bytes, epoch_ms: int, days: ServiceDay = UTC_DAYS) -> bytes:
    """The pseudonym key for the service day holding ``epoch_ms``: HMAC(secret, 'YYYY-MM-DD'). Rotates daily
    without storing keys; yesterday's pseudonyms cannot be linked to today's without the secret."""
    return _day_key(secret, days.index(epoch_ms))


@lru_cache(maxsize=64)
def _day_key(secret: bytes, day_index: int) -> bytes:
    # Cached per (secret, day): formatting the date and the outer HMAC cost more than the pseudonym itself,
    # and a stream sees one or two days at a time.
    day = datetime.fromtimestamp(day_index * 86_400, tz=UTC).strftime("%Y-%m-%d")
    return hmac.new(secret, day.encode(), hashlib.sha256).digest()


@lru_cache(maxsize=8)
def _public_key(secret: bytes) -> bytes:
    # Its own derived key, so a public id never equals the pseudonym of any day (no date is this label).
    return hmac.new(secret, b"public-id", hashlib.sha256).digest()


def pseudonym(secret: bytes, epoch_ms: int, value: str, length: int = 16, days: ServiceDay = UTC_DAYS) -> str:
    """A keyed pseudonym of ``value``, stable within the service day of ``epoch_ms``, ``length`` hex chars."""
    if not secret:
        raise ValueError("pseudonym secret must not be empty")
    digest = hmac.new(day_key(secret, epoch_ms, days), value.encode(), hashlib.sha256).hexdigest()
    return digest[:length]


def public_id(secret: bytes, value: str, length: int = 16) -> str:
    """A keyed, never rotating id of ``value``: the same every day, and without the secret it neither
    reveals ``value`` nor can be recomputed from it."""
    if not secret:
        raise ValueError("pseudonym secret must not be empty")
    return hmac.new(_public_key(secret), value.encode(), hashlib.sha256).hexdigest()[:length]


class PseudonymCache:
    """``pseudonym`` memoised per (day, value, length) for one secret and one kind of service day, and
    ``public_id`` per (value, length).

    Entity ids repeat all day long (every bus reports every few seconds), so most calls are dictionary
    hits. Bounded: a memo is cleared when it reaches ``max_entries``.
    """

    def __init__(self, secret: bytes, max_entries: int = 200_000, days: ServiceDay = UTC_DAYS) -> None:
        if not secret:
            raise ValueError("pseudonym secret must not be empty")
        self.secret = secret
        self.max_entries = max_entries
        self.days = days
        self._memo: dict[tuple[int, str, int], str] = {}
        self._public: dict[tuple[str, int], str] = {}

    def __call__(self, epoch_ms: int, value: str, length: int = 16) -> str:
        key = (self.days.index(epoch_ms), value, length)
        out = self._memo.get(key)
        if out is None:
            if len(self._memo) >= self.max_entries:
                self._memo.clear()
            out = self._memo[key] = pseudonym(self.secret, epoch_ms, value, length, self.days)
        return out

    def public(self, value: str, length: int = 16) -> str:
        key = (value, length)
        out = self._public.get(key)
        if out is None:
            if len(self._public) >= self.max_entries:
                self._public.clear()
            out = self._public[key] = public_id(self.secret, value, length)
        return out


def truncate_time(epoch_ms: int, step_ms: int) -> int:
    """Start of the ``step_ms`` interval (aligned to the Unix epoch) holding ``epoch_ms``."""
    if step_ms <= 0:
        raise ValueError(f"time step must be positive, got {step_ms!r}")
    return epoch_ms - epoch_ms % step_ms
