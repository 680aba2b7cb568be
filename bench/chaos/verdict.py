"""What held and what did not: the checks of a chaos run, pure (no I/O), and the table and JSON made of them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

# (entity, observed_at, state): one version of an entity as a tier topic carries it and a client sees it
Version = tuple[str, int, str]
REMOVED = "removed"


@dataclass
class Check:
    what: str  # what was tried
    held: bool
    detail: str  # the figures behind the verdict

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def version_of(record: Mapping[str, Any]) -> Version:
    return str(record.get("id")), int(record.get("observed_at", 0)), str(record.get("state", ""))


def latest_per_entity(records: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """The newest record of each entity, in log order (records of one entity share a partition)."""
    latest: dict[str, Mapping[str, Any]] = {}
    for record in records:
        latest[str(record.get("id"))] = record
    return latest


def state_matches(
    client: Mapping[str, Mapping[str, Any]],
    log_latest: Mapping[str, Mapping[str, Any]],
    only: Iterable[str] | None = None,
) -> list[str]:
    """Entities whose client view differs from the newest record the log holds up to the client's position
    (a removed entity must be absent). ``only``: compare these entities (default: those of the log)."""
    problems = []
    for entity in only if only is not None else log_latest:
        newest = log_latest.get(entity)
        mine = client.get(entity)
        if newest is None or newest.get("state") == REMOVED:
            if mine is not None and newest is not None:
                problems.append(f"{entity}: removed in Kafka, still held by the client")
            continue
        if mine is None:
            problems.append(f"{entity}: missing at the client")
        elif version_of(mine) != version_of(newest):
            problems.append(f"{entity}: client has {version_of(mine)[1:]}, Kafka {version_of(newest)[1:]}")
    return problems


def missing_versions(log_versions: Iterable[Version], seen: Iterable[Version]) -> list[Version]:
    """Versions of the log the client never got, leaving aside those a newer version of the same entity
    replaced before they were sent (a frame carries an entity's present state, so a version superseded
    within one tick or during a catch-up is not owed to the client)."""
    seen_set = set(seen)
    by_entity: dict[str, list[Version]] = {}
    for version in log_versions:
        by_entity.setdefault(version[0], []).append(version)
    missing = []
    for versions in by_entity.values():
        newest_seen = max((v[1] for v in versions if v in seen_set), default=None)
        for version in versions:
            if version not in seen_set and (newest_seen is None or version[1] > newest_seen):
                missing.append(version)
    return missing


def dead_letter_version(letter: Mapping[str, Any]) -> Version:
    """The raw version a dead letter holds (its ``original`` bytes, a MessagePack record when it got that
    far), with the raw log's empty state."""
    import msgpack

    try:
        original = msgpack.unpackb(letter.get("original") or b"", raw=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        return ("", 0, "")
    if not isinstance(original, dict):
        return ("", 0, "")
    return str(original.get("id")), int(original.get("observed_at", 0) or 0), ""


def repeated(versions: Iterable[Version]) -> int:
    counts = Counter(versions)
    return sum(n - 1 for n in counts.values() if n > 1)


def p99(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, -(-99 * len(ordered) // 100) - 1)]


def all_held(checks: Iterable[Check]) -> bool:
    return all(check.held for check in checks)


def render(checks: list[Check], title: str) -> Any:
    """A rich table: one row per check."""
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    table.add_column("what was tried")
    table.add_column("held", justify="center")
    table.add_column("figures")
    for check in checks:
        table.add_row(check.what, "[green]yes[/green]" if check.held else "[red]NO[/red]", check.detail)
    return table


def markdown(checks: list[Check], result: Mapping[str, Any]) -> str:
    """The run as a page of the docs: written by the run itself, so its figures are never copied by hand."""
    lines = [
        "# Chaos run (`make chaos`)",
        "",
        "Written by `bench/chaos/` at the end of its last run; do not edit by hand. What it does and how to run",
        "it: `bench/chaos/__main__.py`. The full result, with every event, health state and memory sample, is",
        "`docs/chaos-result.json`.",
        "",
        f"- commit `{result['git_sha']}`, finished {result['finished_at']}, {result['duration_s']:.0f} s",
        f"- {result['setup']}",
        f"- verdict: **{'everything held' if result['held'] else 'something did not hold'}**",
        "",
        "| what was tried | held | figures |",
        "|---|---|---|",
    ]
    for check in checks:
        figures = check.detail.replace("|", "\\|")
        lines.append(f"| {check.what} | {'yes' if check.held else '**NO**'} | {figures} |")
    lines += ["", "Timeline (seconds after the service answered):", ""]
    lines += [f"- {e['t_s']:.0f} s: {e['what']}" for e in result.get("events", [])]
    return "\n".join(lines) + "\n"
