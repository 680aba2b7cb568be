"""UTM (ETRS89 / WGS-84, northern hemisphere) easting/northing → longitude/latitude.

The inverse Transverse Mercator series as given in Snyder, "Map Projections — A Working Manual" (USGS
Professional Paper 1395, 1987, eq. 8-12 … 8-18), with the footpoint latitude series to e1⁴. Within a
zone (±3° of the central meridian) it is good to well under a metre. ETRS89 and WGS-84 differ by less
than a metre in Europe, so EPSG:258xx coordinates are returned as WGS-84.
"""

from __future__ import annotations

import math

K0 = 0.9996
FALSE_EASTING = 500_000.0
# GRS80 (ETRS89); WGS-84's flattening differs in the 10th digit, irrelevant at this accuracy.
A = 6_378_137.0
F = 1 / 298.257222101
E2 = F * (2 - F)
EP2 = E2 / (1 - E2)
_E1 = (1 - math.sqrt(1 - E2)) / (1 + math.sqrt(1 - E2))
_MU_DIVISOR = A * (1 - E2 / 4 - 3 * E2**2 / 64 - 5 * E2**3 / 256)


# ETRS89 / UTM zones 28N-38N are EPSG:25828-25838; WGS-84 / UTM north zones are EPSG:32601-32660.
def zone_of_epsg(epsg: int) -> int | None:
    if 25828 <= epsg <= 25838:
        return epsg - 25800
    if 32601 <= epsg <= 32660:
        return epsg - 32600
    return None


def utm_to_lnglat(easting: float, northing: float, zone: int) -> tuple[float, float]:
    """(lng, lat) in degrees of a northern-hemisphere UTM point."""
    if not 1 <= zone <= 60:
        raise ValueError(f"UTM zone {zone} is not 1-60")
    central = math.radians(zone * 6 - 183)
    x = easting - FALSE_EASTING
    mu = northing / K0 / _MU_DIVISOR
    e1 = _E1
    phi1 = (
        mu
        + (3 * e1 / 2 - 27 * e1**3 / 32) * math.sin(2 * mu)
        + (21 * e1**2 / 16 - 55 * e1**4 / 32) * math.sin(4 * mu)
        + (151 * e1**3 / 96) * math.sin(6 * mu)
        + (1097 * e1**4 / 512) * math.sin(8 * mu)
    )
    sin1, cos1, tan1 = math.sin(phi1), math.cos(phi1), math.tan(phi1)
    c1 = EP2 * cos1**2
    t1 = tan1**2
    n1 = A / math.sqrt(1 - E2 * sin1**2)
    r1 = A * (1 - E2) / (1 - E2 * sin1**2) ** 1.5
    d = x / (n1 * K0)
    lat = phi1 - (n1 * tan1 / r1) * (
        d**2 / 2
        - (5 + 3 * t1 + 10 * c1 - 4 * c1**2 - 9 * EP2) * d**4 / 24
        + (61 + 90 * t1 + 298 * c1 + 45 * t1**2 - 252 * EP2 - 3 * c1**2) * d**6 / 720
    )
    lng = (
        central
        + (d - (1 + 2 * t1 + c1) * d**3 / 6 + (5 - 2 * c1 + 28 * t1 - 3 * c1**2 + 8 * EP2 + 24 * t1**2) * d**5 / 120)
        / cos1
    )
    return math.degrees(lng), math.degrees(lat)


def lnglat_to_utm(lng: float, lat: float, zone: int) -> tuple[float, float]:
    """The forward projection (Snyder eq. 8-9 … 8-10), used to check the inverse by round trip."""
    phi = math.radians(lat)
    lam = math.radians(lng) - math.radians(zone * 6 - 183)
    sin, cos, tan = math.sin(phi), math.cos(phi), math.tan(phi)
    n = A / math.sqrt(1 - E2 * sin**2)
    t = tan**2
    c = EP2 * cos**2
    a_ = lam * cos
    m = A * (
        (1 - E2 / 4 - 3 * E2**2 / 64 - 5 * E2**3 / 256) * phi
        - (3 * E2 / 8 + 3 * E2**2 / 32 + 45 * E2**3 / 1024) * math.sin(2 * phi)
        + (15 * E2**2 / 256 + 45 * E2**3 / 1024) * math.sin(4 * phi)
        - (35 * E2**3 / 3072) * math.sin(6 * phi)
    )
    easting = FALSE_EASTING + K0 * n * (
        a_ + (1 - t + c) * a_**3 / 6 + (5 - 18 * t + t**2 + 72 * c - 58 * EP2) * a_**5 / 120
    )
    northing = K0 * (
        m
        + n
        * tan
        * (
            a_**2 / 2
            + (5 - t + 9 * c + 4 * c**2) * a_**4 / 24
            + (61 - 58 * t + t**2 + 600 * c - 330 * EP2) * a_**6 / 720
        )
    )
    return easting, northing
