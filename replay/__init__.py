"""History replay: a sans-I/O core (event-time merge, as-of snapshot, paced deltas) and the sources that
feed it (tier topics in Kafka, the Parquet archive). See docs/replay.md."""

from .core import ReplayCore, ReplaySink, parse_speed
from .merge import EventTimeMerge, SourceRecord

__all__ = ["EventTimeMerge", "ReplayCore", "ReplaySink", "SourceRecord", "parse_speed"]
