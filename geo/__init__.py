"""Geometry for Shanghai: coordinate systems (``crs``), the metric grid (``grid``), blur primitives
(``blur``), districts, metro stations and scenic areas. Pure functions and data loaded once; no I/O beyond
reading the bundled files in ``geo/data``."""
