"""``shfeeds catalog``: the data catalogue in the terminal (or as DCAT JSON-LD with ``--json``), built from
this installation's policy and metadata with the control plane's live health when it answers."""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from typing import Any

import orjson

import settings as settings_mod


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("catalog", help="the data catalogue: feeds, tiers, terms, quality")
    parser.add_argument("--json", action="store_true", help="print the catalogue as DCAT JSON-LD")
    parser.add_argument("--control-plane", default=None, help="control plane URL for the live quality figures")
    parser.add_argument("--feed", default=None, help="only this feed")
    parser.set_defaults(func=handle)


def _health(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health/feeds", timeout=2) as answer:
            report: dict[str, Any] = orjson.loads(answer.read())
            return report
    except (urllib.error.URLError, OSError, orjson.JSONDecodeError):
        return None


def handle(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from catalog import MetadataError
    from catalog.dcat import to_jsonld
    from catalog.page import to_text
    from catalog.sources import installed_catalogue
    from schemas import now_ms
    from streams.policy import PolicyError

    settings = settings_mod.load()
    url = args.control_plane or f"http://127.0.0.1:{settings.control_plane_port}"
    try:
        catalogue = installed_catalogue(_health(url), now_ms())
    except (MetadataError, PolicyError) as err:
        print(f"shfeeds catalog: {err}", file=sys.stderr)
        return 2
    if args.feed:
        entries = tuple(e for e in catalogue.entries if e.feed == args.feed)
        if not entries:
            known = ", ".join(e.feed for e in catalogue.entries)
            print(f"shfeeds catalog: no feed {args.feed!r}; feeds: {known}", file=sys.stderr)
            return 2
        catalogue = replace(catalogue, entries=entries)
    if args.json:
        host = f"127.0.0.1:{settings.ws_port}"
        doc = to_jsonld(catalogue, f"http://{host}", f"ws://{host}/")
        sys.stdout.buffer.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        sys.stdout.write(to_text(catalogue))
    return 0
