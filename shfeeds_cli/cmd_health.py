"""``shfeeds health``: each feed's state from the control plane, as a table (colour on a terminal) or JSON.

Exit code 0 when every feed is ok, 1 otherwise (degraded, stale, down, or the control plane not
answering), so a cron job or a probe can use it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from .cmd_control_plane import DEFAULT_WEB_PORT

COLOURS = {"ok": "green", "degraded": "yellow", "stale": "red", "down": "bold red"}


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("health", help="each feed's health (exit 0 when all are ok)")
    default = f"http://127.0.0.1:{os.environ.get('SHFEEDS_CONTROL_PLANE_PORT', DEFAULT_WEB_PORT)}"
    parser.add_argument("--url", default=default, help=f"the control plane (default {default})")
    parser.add_argument("--json", action="store_true", help="print the /health/feeds report as JSON")
    parser.add_argument("--watch", type=float, nargs="?", const=2.0, default=None, metavar="SECONDS",
                        help="refresh every SECONDS (default 2) until interrupted")  # fmt: skip
    parser.set_defaults(func=handle)


def fetch(url: str, timeout_s: float = 5.0) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url.rstrip('/')}/health/feeds", timeout=timeout_s) as response:
        body: dict[str, Any] = json.loads(response.read())
        return body


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.1%}"


def _age(ms: int | None, now_ms: int) -> str:
    if not ms:
        return "never"
    s = (now_ms - ms) / 1000
    return f"{s:.0f} s ago" if s < 120 else f"{s / 60:.0f} min ago"


def render(report: dict[str, Any]) -> Any:
    from rich.table import Table

    now = int(report["generated_at"])
    table = Table(title=f"feed health: {report['state']}", title_justify="left")
    for col in ("feed", "state", "last seen", "records/s", "rejects", "duplicates", "complete", "lag p99", "why"):
        table.add_column(col, overflow="fold")
    for f in report["feeds"]:
        fig = f["figures"]
        colour = COLOURS.get(f["state"], "")
        p99 = fig.get("event_lag_p99_ms")
        table.add_row(
            f["feed"],
            f"[{colour}]{f['state']}[/]",
            _age(fig.get("last_seen_ms"), now),
            f"{fig.get('records_per_s', 0):g}",
            _pct(fig.get("reject_ratio")),
            _pct(fig.get("duplicate_ratio")),
            _pct(fig.get("completeness")),
            "–" if p99 is None else f"{p99 / 1000:g} s",
            "; ".join(f["reasons"]),
        )
    return table


def handle(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console()  # colour only on a terminal (rich checks), plain text in a pipe
    while True:
        try:
            report = fetch(args.url)
        except (urllib.error.URLError, OSError, ValueError) as err:
            report = None
            message = f"the control plane at {args.url} is not answering: {err}"
        code = 0 if report is not None and all(f["state"] == "ok" for f in report["feeds"]) else 1
        if args.json:
            print(json.dumps(report if report is not None else {"error": message}, ensure_ascii=False, indent=2))
        elif report is None:
            console.print(f"[red]{message}[/]")
        else:
            if args.watch is not None and sys.stdout.isatty():
                console.clear()
            console.print(render(report))
        if args.watch is None:
            return code
        try:
            time.sleep(args.watch)
        except KeyboardInterrupt:
            return code
