"""What every benchmark writes the same way: the run's facts (commit, time, machine load), its result JSON
under ``bench/results/`` (not in git), its goals checked in code, and its generated section of a doc page.

A section lives between ``<!-- name -->`` and ``<!-- /name -->`` in the page; only the benchmark that owns
the name rewrites it, so a page can hold hand-written method text next to figures no one copies by hand.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench/results"


@dataclass(frozen=True)
class Goal:
    name: str
    target: str
    measured: str
    met: bool

    def line(self) -> str:
        return f"{'met' if self.met else 'MISSED'}: {self.name} ({self.target}): {self.measured}"


def git_sha() -> str:
    """HEAD, with ``-dirty`` when tracked files differ from it (the figures are then not quite that commit's)."""
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True)
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def machine() -> dict[str, Any]:
    """What else the machine was doing: 1/5/15-minute load averages, next to its core count."""
    return {"loadavg": [round(v, 2) for v in os.getloadavg()], "cores": os.cpu_count()}


def stamp() -> dict[str, Any]:
    return {"git_sha": git_sha(), "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def replace_between(text: str, marker: str, body: str) -> str:
    """Put ``body`` between ``<!-- marker -->`` and ``<!-- /marker -->``, appending the pair if absent."""
    start, end = f"<!-- {marker} -->", f"<!-- /{marker} -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        return f"{head}{start}\n{body}\n{end}{rest.split(end, 1)[1]}"
    return f"{text.rstrip()}\n\n{start}\n{body}\n{end}\n"


def write_result(result: dict[str, Any]) -> Path:
    """``result`` (with ``bench``, ``when`` and ``git_sha``) as JSON under bench/results/."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{result['bench']}-{result['when'].replace(':', '')}-{result['git_sha'][:7]}.json"
    path.write_text(json.dumps(result, indent=2))
    return path


def publish_section(doc: Path, marker: str, body: str) -> None:
    doc.write_text(replace_between(doc.read_text(encoding="utf-8"), marker, body), encoding="utf-8")


def conclude(
    result: dict[str, Any],
    publish: Callable[[dict[str, Any], Path], None] | None,
    goals: Callable[[dict[str, Any]], list[Goal]],
) -> Path:
    """The end of a measured run: the load after it, the result file, its doc sections (unless ``publish`` is
    None) and every goal's line on stdout."""
    result["machine_after"] = machine()
    path = write_result(result)
    if publish is not None:
        publish(result, path)
    for goal in goals(result):
        print(goal.line())
    print("->", path.name)
    return path
