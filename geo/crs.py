"""WGS-84 ⇄ GCJ-02 ⇄ BD-09 for one point and vectorised over numpy arrays.

Points are ``(lng, lat)`` in degrees everywhere.

* GCJ-02 is the obfuscated datum all mainland Chinese web maps use (Amap, Tencent, DataV). The forward
  transform is the published closed form on the Krasovsky 1940 ellipsoid; its inverse has no closed form, so
  ``gcj02_to_wgs84`` iterates a fixed point until the step is below ~1e-11 degrees (well under a millimetre).
* BD-09 is Baidu's extra rotation/scale on top of GCJ-02. Both directions are the published closed forms
  (the Baidu SDK's own formulae, which every published test vector encodes); the BD-09 → GCJ-02 closed form
  round-trips to within ~0.14 m. ``bd09_to_gcj02_exact`` iterates to the exact inverse when that matters.
* Outside China's national bounding box the libraries leave points unchanged; so do we (``out_of_china``).

Scalar functions use ``math`` (fast for one point); the ``*_arrays`` functions take anything numpy can turn
into float64 arrays of the same shape and return new arrays.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .grid import Lattice

FloatArray = NDArray[np.float64]

# Krasovsky 1940 semi-major axis and first eccentricity squared, as used by the GCJ-02 algorithm.
_A: Final = 6378245.0
_EE: Final = 0.00669342162296594323
_PI: Final = math.pi
# Baidu's constant: pi * 3000 / 180. One popular library used plain pi here; its test vectors are wrong.
_X_PI: Final = math.pi * 3000.0 / 180.0

# The national bounding box used by the common open implementations (coordtransform, gcoord).
CHINA_MIN_LNG: Final = 72.004
CHINA_MAX_LNG: Final = 137.8347
CHINA_MIN_LAT: Final = 0.8293
CHINA_MAX_LAT: Final = 55.8271

# Generous box around Shanghai municipality (incl. Chongming and the Yangshan port islands), WGS-84.
SHANGHAI_MIN_LNG: Final = 120.80
SHANGHAI_MAX_LNG: Final = 122.25
SHANGHAI_MIN_LAT: Final = 30.40
SHANGHAI_MAX_LAT: Final = 31.95

_INVERSE_TOL_DEG: Final = 1e-11
_INVERSE_MAX_ITER: Final = 30


# ---------------------------------------------------------------------------------------------- checks


def out_of_china(lng: float, lat: float) -> bool:
    """True if the point is outside the national box, where GCJ-02/BD-09 leave coordinates unchanged."""
    return not (CHINA_MIN_LNG <= lng <= CHINA_MAX_LNG and CHINA_MIN_LAT <= lat <= CHINA_MAX_LAT)


def out_of_china_arrays(lngs: ArrayLike, lats: ArrayLike) -> NDArray[np.bool_]:
    x = np.asarray(lngs, dtype=np.float64)
    y = np.asarray(lats, dtype=np.float64)
    inside = (x >= CHINA_MIN_LNG) & (x <= CHINA_MAX_LNG) & (y >= CHINA_MIN_LAT) & (y <= CHINA_MAX_LAT)
    return ~inside


def plausibly_in_shanghai(lng: float, lat: float) -> bool:
    """True if a WGS-84 (or GCJ-02/BD-09: the offsets are < 1 km) point lies in a box around Shanghai.

    A cheap validation guard against swapped lng/lat, zeros and wrong-city data; for the district, use
    ``geo.districts.district_of``.
    """
    if not (math.isfinite(lng) and math.isfinite(lat)):
        return False
    return SHANGHAI_MIN_LNG <= lng <= SHANGHAI_MAX_LNG and SHANGHAI_MIN_LAT <= lat <= SHANGHAI_MAX_LAT


def plausibly_in_shanghai_arrays(lngs: ArrayLike, lats: ArrayLike) -> NDArray[np.bool_]:
    x = np.asarray(lngs, dtype=np.float64)
    y = np.asarray(lats, dtype=np.float64)
    return (x >= SHANGHAI_MIN_LNG) & (x <= SHANGHAI_MAX_LNG) & (y >= SHANGHAI_MIN_LAT) & (y <= SHANGHAI_MAX_LAT)


# ------------------------------------------------------------------------------------ GCJ-02 (scalar)


def _gcj_offset(lng: float, lat: float) -> tuple[float, float]:
    """The GCJ-02 offset (dlng, dlat) in degrees at a WGS-84 point."""
    x = lng - 105.0
    y = lat - 35.0
    sx = math.sqrt(abs(x))
    s6x = math.sin(6.0 * x * _PI)
    s2x = math.sin(2.0 * x * _PI)
    common = (20.0 * s6x + 20.0 * s2x) * 2.0 / 3.0
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * sx
    dlat += common
    dlat += (20.0 * math.sin(y * _PI) + 40.0 * math.sin(y / 3.0 * _PI)) * 2.0 / 3.0
    dlat += (160.0 * math.sin(y / 12.0 * _PI) + 320.0 * math.sin(y * _PI / 30.0)) * 2.0 / 3.0
    dlng = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * sx
    dlng += common
    dlng += (20.0 * math.sin(x * _PI) + 40.0 * math.sin(x / 3.0 * _PI)) * 2.0 / 3.0
    dlng += (150.0 * math.sin(x / 12.0 * _PI) + 300.0 * math.sin(x / 30.0 * _PI)) * 2.0 / 3.0
    radlat = lat / 180.0 * _PI
    magic = 1.0 - _EE * math.sin(radlat) ** 2
    sqrtmagic = math.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1.0 - _EE)) / (magic * sqrtmagic) * _PI)
    dlng = (dlng * 180.0) / (_A / sqrtmagic * math.cos(radlat) * _PI)
    return dlng, dlat


def wgs84_to_gcj02(lng: float, lat: float) -> tuple[float, float]:
    if out_of_china(lng, lat):
        return lng, lat
    dlng, dlat = _gcj_offset(lng, lat)
    return lng + dlng, lat + dlat


def gcj02_to_wgs84(lng: float, lat: float) -> tuple[float, float]:
    """Exact inverse by fixed-point iteration: w ← w + (g − f(w)); the offset's slope is ~1e-5, so a few
    steps reach the tolerance."""
    if out_of_china(lng, lat):
        return lng, lat
    wlng, wlat = lng, lat
    for _ in range(_INVERSE_MAX_ITER):
        glng, glat = wgs84_to_gcj02(wlng, wlat)
        dx = lng - glng
        dy = lat - glat
        wlng += dx
        wlat += dy
        if abs(dx) < _INVERSE_TOL_DEG and abs(dy) < _INVERSE_TOL_DEG:
            break
    return wlng, wlat


def gcj02_to_wgs84_onestep(lng: float, lat: float) -> tuple[float, float]:
    """The common one-step approximation (error up to ~2 m). Kept only to measure against."""
    if out_of_china(lng, lat):
        return lng, lat
    dlng, dlat = _gcj_offset(lng, lat)
    return lng - dlng, lat - dlat


# ------------------------------------------------------------------------------------- BD-09 (scalar)


def gcj02_to_bd09(lng: float, lat: float) -> tuple[float, float]:
    z = math.sqrt(lng * lng + lat * lat) + 0.00002 * math.sin(lat * _X_PI)
    theta = math.atan2(lat, lng) + 0.000003 * math.cos(lng * _X_PI)
    return z * math.cos(theta) + 0.0065, z * math.sin(theta) + 0.006


def bd09_to_gcj02(lng: float, lat: float) -> tuple[float, float]:
    """Baidu's closed-form inverse (what Baidu's SDK and all published vectors use; ≤ ~0.14 m off exact)."""
    x = lng - 0.0065
    y = lat - 0.006
    z = math.sqrt(x * x + y * y) - 0.00002 * math.sin(y * _X_PI)
    theta = math.atan2(y, x) - 0.000003 * math.cos(x * _X_PI)
    return z * math.cos(theta), z * math.sin(theta)


def bd09_to_gcj02_exact(lng: float, lat: float) -> tuple[float, float]:
    """Exact inverse of ``gcj02_to_bd09`` by fixed-point iteration from the closed form."""
    glng, glat = bd09_to_gcj02(lng, lat)
    for _ in range(_INVERSE_MAX_ITER):
        blng, blat = gcj02_to_bd09(glng, glat)
        dx = lng - blng
        dy = lat - blat
        glng += dx
        glat += dy
        if abs(dx) < _INVERSE_TOL_DEG and abs(dy) < _INVERSE_TOL_DEG:
            break
    return glng, glat


def wgs84_to_bd09(lng: float, lat: float) -> tuple[float, float]:
    glng, glat = wgs84_to_gcj02(lng, lat)
    return gcj02_to_bd09(glng, glat)


def bd09_to_wgs84(lng: float, lat: float) -> tuple[float, float]:
    glng, glat = bd09_to_gcj02(lng, lat)
    return gcj02_to_wgs84(glng, glat)


# -------------------------------------------------------------------------------------------- arrays


def _as_pair(lngs: ArrayLike, lats: ArrayLike) -> tuple[FloatArray, FloatArray]:
    x = np.asarray(lngs, dtype=np.float64)
    y = np.asarray(lats, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"lngs and lats differ in shape: {x.shape} vs {y.shape}")
    return x, y


def _triple(s: FloatArray) -> FloatArray:
    """sin(3a) from sin(a): exact identity, cheaper than another sine over a large array."""
    return s * (3.0 - 4.0 * s * s)


def _gcj_offset_arrays(lng: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Vectorised ``_gcj_offset``. Eight transcendental passes instead of twelve: sin(6πx), sin(πx) and
    sin(πy) come from sin(2πx), sin(πx/3) and sin(πy/3) by the triple-angle identity, cos(lat) from sin."""
    x = lng - 105.0
    y = lat - 35.0
    sx = np.sqrt(np.abs(x))
    s2x = np.sin(x * (2.0 * _PI))
    s3x = np.sin(x * (_PI / 3.0))
    s3y = np.sin(y * (_PI / 3.0))
    common = (20.0 * 2.0 / 3.0) * (_triple(s2x) + s2x)
    xy = 0.1 * x * y
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + xy + 0.2 * sx + common
    dlat += (20.0 * 2.0 / 3.0) * _triple(s3y) + (40.0 * 2.0 / 3.0) * s3y
    dlat += (160.0 * 2.0 / 3.0) * np.sin(y * (_PI / 12.0)) + (320.0 * 2.0 / 3.0) * np.sin(y * (_PI / 30.0))
    dlng = 300.0 + x + 2.0 * y + 0.1 * x * x + xy + 0.1 * sx + common
    dlng += (20.0 * 2.0 / 3.0) * _triple(s3x) + (40.0 * 2.0 / 3.0) * s3x
    dlng += (150.0 * 2.0 / 3.0) * np.sin(x * (_PI / 12.0)) + (300.0 * 2.0 / 3.0) * np.sin(x * (_PI / 30.0))
    sin_lat = np.sin(lat * (_PI / 180.0))
    magic = 1.0 - _EE * sin_lat * sin_lat
    sqrtmagic = np.sqrt(magic)
    cos_lat = np.sqrt(1.0 - sin_lat * sin_lat)
    dlat *= 180.0 / ((_A * (1.0 - _EE)) * _PI)
    dlat *= magic * sqrtmagic
    dlng *= 180.0 / (_A * _PI)
    dlng *= sqrtmagic / cos_lat
    return dlng, dlat


def wgs84_to_gcj02_arrays(lngs: ArrayLike, lats: ArrayLike) -> tuple[FloatArray, FloatArray]:
    x, y = _as_pair(lngs, lats)
    dlng, dlat = _gcj_offset_arrays(x, y)
    dlng += x
    dlat += y
    outside = out_of_china_arrays(x, y)
    if outside.any():
        return np.where(outside, x, dlng), np.where(outside, y, dlat)
    return dlng, dlat


def wgs84_to_gcj02_lattice(lattice: Lattice) -> tuple[FloatArray, FloatArray]:
    """``wgs84_to_gcj02_arrays`` of a lattice's points (grid cell centres, ``geo.grid.lattice_of``), several
    times faster: the offset is a sum of terms of the longitude alone, terms of the latitude alone and one
    product, so every sine is taken once per column or row present instead of once per point. Equal to the
    general path to within a few units in the last place (the same terms, summed in another order)."""
    ax, ay = lattice.lngs, lattice.lats
    x = ax - 105.0
    y = ay - 35.0
    sx = np.sqrt(np.abs(x))
    s2x = np.sin(x * (2.0 * _PI))
    s3x = np.sin(x * (_PI / 3.0))
    s3y = np.sin(y * (_PI / 3.0))
    common = (20.0 * 2.0 / 3.0) * (_triple(s2x) + s2x)
    # Per column: the longitude's terms of each offset.
    lat_of_x = -100.0 + 2.0 * x + 0.2 * sx + common
    lng_of_x = 300.0 + x + 0.1 * x * x + 0.1 * sx + common
    lng_of_x += (20.0 * 2.0 / 3.0) * _triple(s3x) + (40.0 * 2.0 / 3.0) * s3x
    lng_of_x += (150.0 * 2.0 / 3.0) * np.sin(x * (_PI / 12.0)) + (300.0 * 2.0 / 3.0) * np.sin(x * (_PI / 30.0))
    # Per row: the latitude's terms and each offset's scale to degrees.
    lat_of_y = 3.0 * y + 0.2 * y * y + (20.0 * 2.0 / 3.0) * _triple(s3y) + (40.0 * 2.0 / 3.0) * s3y
    lat_of_y += (160.0 * 2.0 / 3.0) * np.sin(y * (_PI / 12.0)) + (320.0 * 2.0 / 3.0) * np.sin(y * (_PI / 30.0))
    sin_lat = np.sin(ay * (_PI / 180.0))
    magic = 1.0 - _EE * sin_lat * sin_lat
    sqrtmagic = np.sqrt(magic)
    lat_scale = (180.0 / ((_A * (1.0 - _EE)) * _PI)) * (magic * sqrtmagic)
    lng_scale = (180.0 / (_A * _PI)) * (sqrtmagic / np.sqrt(1.0 - sin_lat * sin_lat))
    # Per point: gathers, the one product term, and the sums.
    cols, rows = lattice.cols, lattice.rows
    px = ax[cols]
    py = ay[rows]
    xy = 0.1 * x[cols] * y[rows]
    out_lng = (lng_of_x[cols] + 2.0 * y[rows] + xy) * lng_scale[rows] + px
    out_lat = (lat_of_x[cols] + lat_of_y[rows] + xy) * lat_scale[rows] + py
    outside_x = (ax < CHINA_MIN_LNG) | (ax > CHINA_MAX_LNG)
    outside_y = (ay < CHINA_MIN_LAT) | (ay > CHINA_MAX_LAT)
    if outside_x.any() or outside_y.any():
        outside = outside_x[cols] | outside_y[rows]
        return np.where(outside, px, out_lng), np.where(outside, py, out_lat)
    return out_lng, out_lat


def gcj02_to_wgs84_arrays(lngs: ArrayLike, lats: ArrayLike) -> tuple[FloatArray, FloatArray]:
    x, y = _as_pair(lngs, lats)
    outside = out_of_china_arrays(x, y)
    wx = x.copy()
    wy = y.copy()
    for _ in range(_INVERSE_MAX_ITER):
        dlng, dlat = _gcj_offset_arrays(wx, wy)
        dx = x - (wx + dlng)
        dy = y - (wy + dlat)
        wx += dx
        wy += dy
        if wx.size == 0 or (
            float(np.max(np.abs(dx))) < _INVERSE_TOL_DEG and float(np.max(np.abs(dy))) < _INVERSE_TOL_DEG
        ):
            break
    return np.where(outside, x, wx), np.where(outside, y, wy)


def gcj02_to_bd09_arrays(lngs: ArrayLike, lats: ArrayLike) -> tuple[FloatArray, FloatArray]:
    x, y = _as_pair(lngs, lats)
    z = np.sqrt(x * x + y * y) + 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) + 0.000003 * np.cos(x * _X_PI)
    return z * np.cos(theta) + 0.0065, z * np.sin(theta) + 0.006


def bd09_to_gcj02_arrays(lngs: ArrayLike, lats: ArrayLike) -> tuple[FloatArray, FloatArray]:
    bx, by = _as_pair(lngs, lats)
    x = bx - 0.0065
    y = by - 0.006
    z = np.sqrt(x * x + y * y) - 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) - 0.000003 * np.cos(x * _X_PI)
    return z * np.cos(theta), z * np.sin(theta)


def bd09_to_gcj02_exact_arrays(lngs: ArrayLike, lats: ArrayLike) -> tuple[FloatArray, FloatArray]:
    bx, by = _as_pair(lngs, lats)
    gx, gy = bd09_to_gcj02_arrays(bx, by)
    for _ in range(_INVERSE_MAX_ITER):
        cx, cy = gcj02_to_bd09_arrays(gx, gy)
        dx = bx - cx
        dy = by - cy
        gx += dx
        gy += dy
        if gx.size == 0 or (
            float(np.max(np.abs(dx))) < _INVERSE_TOL_DEG and float(np.max(np.abs(dy))) < _INVERSE_TOL_DEG
        ):
            break
    return gx, gy


def wgs84_to_bd09_arrays(lngs: ArrayLike, lats: ArrayLike) -> tuple[FloatArray, FloatArray]:
    gx, gy = wgs84_to_gcj02_arrays(lngs, lats)
    return gcj02_to_bd09_arrays(gx, gy)


def bd09_to_wgs84_arrays(lngs: ArrayLike, lats: ArrayLike) -> tuple[FloatArray, FloatArray]:
    gx, gy = bd09_to_gcj02_arrays(lngs, lats)
    return gcj02_to_wgs84_arrays(gx, gy)


# ----------------------------------------------------------------------------------- by name

CRS_NAMES: Final = ("wgs84", "gcj02", "bd09")


def convert(lng: float, lat: float, src: str, dst: str) -> tuple[float, float]:
    """Convert one point between any two of ``CRS_NAMES``."""
    if src not in CRS_NAMES or dst not in CRS_NAMES:
        raise ValueError(f"unknown CRS {src!r} or {dst!r}; expected one of {', '.join(CRS_NAMES)}")
    if src == dst:
        return lng, lat
    if src == "bd09":
        lng, lat = bd09_to_gcj02(lng, lat)
    elif src == "wgs84":
        lng, lat = wgs84_to_gcj02(lng, lat)
    if dst == "gcj02":
        return lng, lat
    if dst == "bd09":
        return gcj02_to_bd09(lng, lat)
    return gcj02_to_wgs84(lng, lat)


def convert_arrays(lngs: ArrayLike, lats: ArrayLike, src: str, dst: str) -> tuple[FloatArray, FloatArray]:
    """Convert arrays of points between any two of ``CRS_NAMES``."""
    if src not in CRS_NAMES or dst not in CRS_NAMES:
        raise ValueError(f"unknown CRS {src!r} or {dst!r}; expected one of {', '.join(CRS_NAMES)}")
    x, y = _as_pair(lngs, lats)
    if src == dst:
        return x.copy(), y.copy()
    if src == "bd09":
        x, y = bd09_to_gcj02_arrays(x, y)
    elif src == "wgs84":
        x, y = wgs84_to_gcj02_arrays(x, y)
    if dst == "gcj02":
        return x, y
    if dst == "bd09":
        return gcj02_to_bd09_arrays(x, y)
    return gcj02_to_wgs84_arrays(x, y)
