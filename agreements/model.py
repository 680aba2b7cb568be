"""A data-use agreement and its life: applied (pending) → approved or rejected; pending or approved →
withdrawn; an approved agreement past its expiry is expired. No I/O: the store keeps these in Redis."""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .access import parse_allow_list
from .policy import AgreementPolicy

PENDING, APPROVED, REJECTED, WITHDRAWN, EXPIRED = "pending", "approved", "rejected", "withdrawn", "expired"
STATES = (PENDING, APPROVED, REJECTED, WITHDRAWN, EXPIRED)
DAY_MS = 86_400_000


class AgreementError(ValueError):
    """A request or transition that is not allowed (the message says why)."""


@dataclass(frozen=True)
class Agreement:
    id: str
    tier: str
    applicant: str
    purpose: str
    feeds: tuple[str, ...]
    term_days: int
    created_at: int
    state: str = PENDING
    allow_ips: tuple[str, ...] = ()
    daily_quota: int | None = None
    expires_at: int | None = None
    decided_at: int | None = None
    decided_by: str | None = None
    reason: str = ""
    key_id: str | None = None  # set once the applicant claimed the key
    history: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    def state_at(self, now_ms: int) -> str:
        if self.state == APPROVED and self.expires_at is not None and now_ms >= self.expires_at:
            return EXPIRED
        return self.state

    def to_json(self, now_ms: int) -> dict[str, Any]:
        out = asdict(self)
        out["state"] = self.state_at(now_ms)
        out["feeds"], out["allow_ips"], out["history"] = list(self.feeds), list(self.allow_ips), list(self.history)
        return out


def from_json(data: dict[str, Any]) -> Agreement:
    data = dict(data)
    data["state"] = data["state"] if data["state"] != EXPIRED else APPROVED  # expiry is derived, never stored
    data["feeds"], data["allow_ips"] = tuple(data["feeds"]), tuple(data.get("allow_ips") or ())
    data["history"] = tuple(data.get("history") or ())
    return Agreement(**data)


def new_id(now_ms: int) -> str:
    return f"AG-{now_ms // 1000}-{secrets.token_hex(3)}"


def apply(
    policy: AgreementPolicy,
    *,
    tier: str,
    applicant: str,
    purpose: str,
    feeds: list[str],
    known_feeds: tuple[str, ...],
    term_days: int | None,
    allow_ips: list[str],
    now_ms: int,
) -> Agreement:
    """A new application: registered ones are approved at once (with the default quota and term)."""
    if tier not in ("registered", "licensed"):
        raise AgreementError(f"keys are applied for at the registered or licensed tier, not {tier!r}")
    if not applicant.strip():
        raise AgreementError("the applicant (who is asking, with a contact) is required")
    unknown = sorted(set(feeds) - set(known_feeds))
    if unknown:
        raise AgreementError(f"unknown feed {unknown[0]!r}; feeds: {', '.join(known_feeds)}")
    try:
        ips = parse_allow_list(allow_ips, policy.max_allow_list)
    except ValueError as err:
        raise AgreementError(str(err)) from None
    if tier == "licensed":
        if not feeds or not purpose.strip():
            raise AgreementError("a licensed application names the feeds and the purpose")
        term = term_days if term_days is not None else policy.licensed_default_term_days
        if not 1 <= term <= policy.licensed_max_term_days:
            raise AgreementError(f"the term is 1 to {policy.licensed_max_term_days} days, not {term}")
        return Agreement(new_id(now_ms), tier, applicant, purpose, tuple(feeds), term, now_ms, allow_ips=ips,
                         history=({"at": now_ms, "action": "apply", "by": applicant},))  # fmt: skip
    term = policy.registered_term_days
    return Agreement(
        new_id(now_ms), tier, applicant, purpose, tuple(feeds or known_feeds), term, now_ms,
        state=APPROVED, allow_ips=ips, daily_quota=policy.registered_daily_messages,
        expires_at=now_ms + term * DAY_MS, decided_at=now_ms, decided_by="automatic",
        history=({"at": now_ms, "action": "apply", "by": applicant},
                 {"at": now_ms, "action": "approve", "by": "automatic"}),
    )  # fmt: skip


def _step(agreement: Agreement, action: str, by: str, now_ms: int, reason: str, **changes: Any) -> Agreement:
    entry = {"at": now_ms, "action": action, "by": by, "reason": reason}
    return replace(agreement, decided_at=now_ms, decided_by=by, reason=reason,
                   history=(*agreement.history, entry), **changes)  # fmt: skip


def approve(
    agreement: Agreement, by: str, now_ms: int, *, reason: str = "", expires_at: int | None = None
) -> Agreement:
    if agreement.state_at(now_ms) != PENDING:
        raise AgreementError(f"{agreement.id} is {agreement.state_at(now_ms)}; only a pending request is approved")
    until = expires_at if expires_at is not None else now_ms + agreement.term_days * DAY_MS
    if until <= now_ms:
        raise AgreementError("the expiry must be in the future")
    return _step(agreement, "approve", by, now_ms, reason, state=APPROVED, expires_at=until)


def reject(agreement: Agreement, by: str, now_ms: int, *, reason: str) -> Agreement:
    if agreement.state_at(now_ms) != PENDING:
        raise AgreementError(f"{agreement.id} is {agreement.state_at(now_ms)}; only a pending request is rejected")
    if not reason.strip():
        raise AgreementError("a rejection gives the applicant its reason")
    return _step(agreement, "reject", by, now_ms, reason, state=REJECTED)


def withdraw(agreement: Agreement, by: str, now_ms: int, *, reason: str) -> Agreement:
    if agreement.state_at(now_ms) not in (PENDING, APPROVED):
        raise AgreementError(f"{agreement.id} is {agreement.state_at(now_ms)}; nothing to withdraw")
    return _step(agreement, "withdraw", by, now_ms, reason, state=WITHDRAWN)
