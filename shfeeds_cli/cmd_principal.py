"""``shfeeds kafka-principal``: the component principals' credentials and grants, and a lab's read-only one."""

from __future__ import annotations

import argparse
import secrets
import sys
from typing import Any

import settings as settings_mod


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("kafka-principal", help="Kafka and Redis principals and their grants")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    setup = verbs.add_parser("setup", help="(re)create every component principal and its grants (idempotent)")
    setup.set_defaults(func=handle_setup)
    add = verbs.add_parser("add", help="a lab's read-only principal for the tiers its agreement covers")
    add.add_argument("name")
    add.add_argument("--tiers", required=True, help="comma-separated tiers, e.g. licensed,registered")
    add.set_defaults(func=handle_add)
    show = verbs.add_parser("show", help="a principal's ACLs as Kafka holds them")
    show.add_argument("name")
    show.set_defaults(func=handle_show)
    remove = verbs.add_parser("remove", help="delete a lab principal's ACLs and credential")
    remove.add_argument("name")
    remove.set_defaults(func=handle_remove)


def handle_setup(_args: argparse.Namespace) -> int:
    from access.setup import setup_components

    acls, users = setup_components(settings_mod.load())
    print(f"{acls} Kafka ACLs and {users} Redis users in place")
    return 0


def handle_add(args: argparse.Namespace) -> int:
    from access import kafka_acls
    from access.principals import lab

    try:
        principal = lab(args.name, [t.strip() for t in args.tiers.split(",") if t.strip()])
    except ValueError as err:
        print(f"shfeeds kafka-principal add: {err}", file=sys.stderr)
        return 2
    password = secrets.token_urlsafe(24)
    count = kafka_acls.apply(settings_mod.load(), [principal], {principal.name: password})
    print(f"principal {principal.name}: {count} ACLs ({principal.purpose}); SCRAM-SHA-256 password, shown once:")
    print(password)
    return 0


def handle_show(args: argparse.Namespace) -> int:
    from access import kafka_acls

    for operation, resource, pattern, name in kafka_acls.describe(settings_mod.load(), args.name):
        print(f"{operation:<16} {resource:<16} {pattern:<9} {name}")
    return 0


def handle_remove(args: argparse.Namespace) -> int:
    from access import kafka_acls
    from access.principals import ADMIN, BY_NAME

    if args.name == ADMIN or args.name in BY_NAME:
        print(f"shfeeds kafka-principal remove: {args.name} is not a lab principal", file=sys.stderr)
        return 2
    print(f"removed {kafka_acls.remove(settings_mod.load(), args.name)} ACLs of {args.name}")
    return 0
