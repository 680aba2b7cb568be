"""Health rules: figures of a feed → its state (ok / degraded / stale / down) with reasons in words. Pure."""

from .rules import DIMENSIONS, STATES, FeedHealth, assess, overall
from .thresholds import FeedThresholds, Thresholds, load_thresholds

__all__ = ["DIMENSIONS", "STATES", "FeedHealth", "FeedThresholds", "Thresholds", "assess", "load_thresholds", "overall"]
