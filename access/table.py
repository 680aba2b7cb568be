"""The principals table as Markdown, for docs/security.md (a test keeps the page equal to the data)."""

from __future__ import annotations

from .principals import COMPONENTS, KafkaGrant, Principal


def _grant(grant: KafkaGrant) -> str:
    name = f"`{grant.name}*`" if grant.pattern == "PREFIXED" else f"`{grant.name}`"
    return f"{grant.resource.lower().replace('_', ' ')} {name}: {', '.join(grant.operations)}"


def _redis(principal: Principal) -> str:
    if not principal.redis:
        return "none"
    return "; ".join(f"`<prefix>:{r.pattern}` {'read/write' if r.write else 'read-only'}" for r in principal.redis)


def markdown() -> str:
    rows = ["| principal | for | Kafka grants | Redis keys |", "| --- | --- | --- | --- |"]
    for p in COMPONENTS:
        rows.append(f"| `{p.name}` | {p.purpose} | {'<br>'.join(_grant(g) for g in p.kafka)} | {_redis(p)} |")
    return "\n".join(rows) + "\n"
