"""The naming rules ``promtool check metrics`` applies, checked on an exposition with prometheus_client's
own parser (promtool itself is not installed here)."""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

from schemas import TIERS

NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
NON_BASE_UNITS = ("_milliseconds", "_microseconds", "_nanoseconds", "_minutes", "_hours", "_days", "_bytes_total_")


def lint(text: str) -> list[str]:
    """Problems in ``text``; empty when it would pass."""
    problems: list[str] = []
    for family in text_string_to_metric_families(text):
        name = family.name
        if not NAME.match(name) or name != name.lower():
            problems.append(f"{name}: not snake_case")
        if not family.documentation:
            problems.append(f"{name}: no help text")
        if any(name.endswith(u) for u in NON_BASE_UNITS):
            problems.append(f"{name}: not in base units")
        if family.type != "histogram" and family.type != "summary" and name.endswith(("_count", "_sum", "_bucket")):
            problems.append(f"{name}: reserved suffix")
        for sample in family.samples:
            if family.type == "counter" and not sample.name.endswith(("_total", "_created")):
                problems.append(f"{sample.name}: counter without _total")
            for label, value in sample.labels.items():
                if not NAME.match(label) or label.startswith("__"):
                    problems.append(f"{sample.name}: bad label name {label}")
                if any(value.endswith("_" + tier) and value != tier for tier in TIERS):
                    problems.append(f"{sample.name}: a tier glued into label value {value!r}; use a tier label")
    return problems
