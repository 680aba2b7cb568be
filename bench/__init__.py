"""Benchmarks. Like the test harness they act as Kafka's and Redis' admin (development only): they make and
delete their own topics under prefixes that no component principal is granted (docs/security.md)."""

import os

os.environ.setdefault("SHFEEDS_ACT_AS_ADMIN", "1")
