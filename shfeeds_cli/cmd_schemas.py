"""``shfeeds schemas [--write]``: the published record schemas per feed and tier (JSON Schema)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streams.policy import load_policy
from streams.policy.record_schema import schemas_json, schemas_markdown

DOCS = Path(__file__).resolve().parent.parent / "docs"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("schemas", help="print (or write into docs/) the record schemas per feed and tier")
    p.add_argument("--write", action="store_true", help="write docs/record-schemas.json and .md")
    p.add_argument("--policy", default=None, help="a policy file (default: the project's)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    policy = load_policy(args.policy)
    if not args.write:
        sys.stdout.write(schemas_json(policy))
        return 0
    (DOCS / "record-schemas.json").write_text(schemas_json(policy), encoding="utf-8")
    (DOCS / "record-schemas.md").write_text(schemas_markdown(policy), encoding="utf-8")
    print(f"wrote {DOCS / 'record-schemas.json'} and {DOCS / 'record-schemas.md'}")
    return 0
