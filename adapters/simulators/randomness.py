"""Counter-based pseudo-random numbers: a value is a pure function of (seed, stream, entity, counter).

The simulators need randomness that does not depend on how often or in which order they are asked (a poll
every second and a poll every minute must see the same city), so instead of a stateful generator they hash
the coordinates of each draw. The mixer is SplitMix64's finaliser, vectorised over numpy ``uint64`` arrays.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
U64Array = NDArray[np.uint64]

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_TO_UNIT = 1.0 / float(1 << 53)


def mix64(x: U64Array) -> U64Array:
    """SplitMix64 finaliser: a bijective, well-avalanched scramble of 64-bit words (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> _S30)) * _M1
        z = (z ^ (z >> _S27)) * _M2
        return z ^ (z >> _S31)


def _mix_int(value: int) -> int:
    """``mix64`` on one Python int (any sign or size is folded into 64 bits first)."""
    mask = 0xFFFFFFFFFFFFFFFF
    z = (value + 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


def _u64(values: ArrayLike) -> U64Array:
    # Negative counters (times before 1970 or jumps back) must hash too: reinterpret as two's complement.
    arr = np.asarray(values)
    if arr.dtype.kind == "f":
        arr = np.floor(arr).astype(np.int64)
    return arr.astype(np.int64, copy=False).view(np.uint64) if arr.dtype != np.uint64 else arr


def hash_bits(seed: int, stream: int, entity: ArrayLike, counter: ArrayLike = 0) -> U64Array:
    """64 random bits per (entity, counter) pair; arrays broadcast together."""
    key = np.uint64(_mix_int(_mix_int(seed) ^ stream))
    with np.errstate(over="ignore"):
        h = mix64(_u64(entity) ^ key)
        return mix64(h + _u64(counter) * _GOLDEN)


def uniform(seed: int, stream: int, entity: ArrayLike, counter: ArrayLike = 0) -> FloatArray:
    """Uniform floats in [0, 1)."""
    return (hash_bits(seed, stream, entity, counter) >> _S11).astype(np.float64) * _TO_UNIT


def normal(seed: int, stream: int, entity: ArrayLike, counter: ArrayLike = 0) -> FloatArray:
    """Standard normal floats (Box–Muller on two independent hashed uniforms)."""
    u1 = uniform(seed, stream, entity, counter)
    u2 = uniform(seed, stream + 7919, entity, counter)
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)


def smooth_noise(seed: int, stream: int, entity: ArrayLike, position: ArrayLike) -> FloatArray:
    """Value noise in [-1, 1] that varies smoothly with ``position`` (one knot per unit)."""
    pos = np.asarray(position, dtype=np.float64)
    base = np.floor(pos)
    frac = pos - base
    weight = frac * frac * (3.0 - 2.0 * frac)
    k = base.astype(np.int64)
    a = uniform(seed, stream, entity, k)
    b = uniform(seed, stream, entity, k + 1)
    return (a + (b - a) * weight) * 2.0 - 1.0
