"""Simulators of Shanghai's upstream feeds, served over HTTP in the city's own formats (docs/sources.md).

Everything is deterministic for a seed: a feed's content is a function of the seed, the configuration and
the simulated time, so two simulators started alike serve the same bytes at the same simulated second.
"""
