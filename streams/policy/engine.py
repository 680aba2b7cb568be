"""The tier policy engine: applies a loaded policy to batches of canonical records (docs/contracts.md).

Every tier is computed from the tier above it (operator → licensed → registered → public), never from the
raw record by a separate path, so no tier can be more precise than the one above. Positions are snapped in
WGS-84 and converted to the output CRS only when a tier's view is emitted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from geo import blur
from schemas import TIERS
from settings.secret_store import PSEUDONYM_SECRET, resolve

from .batch import Batch, EncodedView, emit, emit_encoded, positions_out
from .catalogue import FIELD_OPS
from .errors import PolicyError
from .field_ops import FIELD_OPERATIONS, OpContext
from .fields import releasable_fields
from .loader import load_policy
from .model import FeedPolicy, Policy, TierRule
from .record_ops import RECORD_OPERATIONS

log = logging.getLogger(__name__)

SECRET_ENV = PSEUDONYM_SECRET.env_var

__all__ = ["SECRET_ENV", "PolicyEngine", "Window", "positions_out"]

_View = TypeVar("_View")


def _installation_secret() -> bytes:
    """The configured secret; in development, this installation's own; in production without one, MissingSecret."""
    resolved = resolve(PSEUDONYM_SECRET)
    if resolved.file is not None:
        log.warning("%s is not set: pseudonyms are keyed by the development secret in %s", SECRET_ENV, resolved.file)
    return resolved.value.encode()


def _uncertainties(feed: FeedPolicy) -> dict[str, dict[str, float]]:
    """For each tier, how far each count field of its incoming views may be from the true count."""
    out: dict[str, dict[str, float]] = {}
    current: dict[str, float] = {}
    for tier in TIERS[1:]:
        rule = feed.tiers[tier]
        if any(r.op == "aggregate_sessions" for r in rule.records):
            current = {k: v for k, v in current.items() if k != "sessions"}
        out[tier] = dict(current)
        for f in rule.fields:
            if f.op in ("count", "zones"):
                half = 2.0 if f.params.get("mode") == "random3" else float(int(f.params["base"]) // 2)
                current[f.field] = current.get(f.field, 0.0) + half
            elif f.op == "round":
                current[f.field] = current.get(f.field, 0.0) + float(f.params["base"]) / 2
    return out


@dataclass(frozen=True, slots=True)
class Window:
    """Records grouped by ``by`` and by the ``window_ms`` interval of their ``time_field`` (epoch ms)."""

    by: str
    time_field: str
    window_ms: int

    def end_of(self, record: Mapping[str, Any]) -> int | None:
        """When the window holding ``record`` closes, or None if its time field is missing or not a time."""
        when = record.get(self.time_field)
        if not isinstance(when, int) or isinstance(when, bool):
            return None
        return blur.truncate_time(when, self.window_ms) + self.window_ms


class PolicyEngine:
    def __init__(self, policy: Policy | None = None, secret: bytes | None = None) -> None:
        self.policy = policy if policy is not None else load_policy()
        if secret is not None and not secret:
            raise PolicyError("the pseudonym secret must not be empty")
        self._secret = secret if secret is not None else _installation_secret()
        self._uncertainty = {feed: _uncertainties(fp) for feed, fp in self.policy.feeds.items()}
        self._pseudonyms = blur.PseudonymCache(self._secret, days=self.policy.pseudonym_days)
        self._contexts: dict[tuple[str, str], OpContext] = {}
        self._allowed: dict[str, frozenset[str]] = {}
        for feed, fp in self.policy.feeds.items():
            bands = {
                f"{r.field}_band"
                for t in fp.tiers.values()
                for r in t.fields
                if r.op == "count" and "bands" in r.params
            }
            self._allowed[feed] = releasable_fields(feed, fp.never_released) | bands

    @property
    def policy_version(self) -> str:
        return self.policy.version

    # ------------------------------------------------------------------------------------------ lookup

    def _feed(self, feed: str) -> FeedPolicy:
        try:
            return self.policy.feeds[feed]
        except KeyError:
            known = ", ".join(self.policy.feeds)
            raise PolicyError(f"unknown feed {feed!r}; known feeds: {known}") from None

    def tier_rule(self, feed: str, tier: str) -> TierRule:
        fp = self._feed(feed)
        try:
            return fp.tiers[tier]
        except KeyError:
            raise PolicyError(f"unknown tier {tier!r}; known tiers: {', '.join(TIERS)}") from None

    def delay_ms(self, feed: str, tier: str) -> int:
        """Release delay after ``observed_at`` (the stream layer enforces it)."""
        return self.tier_rule(feed, tier).delay_ms

    def min_interval_ms(self, feed: str, tier: str) -> int:
        """Per-entity minimum time between released updates (0 = no cap)."""
        return self.tier_rule(feed, tier).min_interval_ms

    def window(self, feed: str, tier: str) -> Window | None:
        """The time window ``tier``'s view of ``feed`` is computed over, if any: a record-level step at this
        tier or above (filters of small groups, session aggregates) that groups records by a field and a
        window of their time. Such a view is only right over every record of a window, so the stream layer
        holds the records until their window has closed (streams/logic/windows.py) and applies the policy then.
        The steps of one feed must agree on the grouping: a policy where they do not is refused."""
        found: Window | None = None
        for t in TIERS[1 : TIERS.index(tier) + 1]:
            for rule in self.tier_rule(feed, t).records:
                if "window_s" not in rule.params:
                    continue
                mine = Window(
                    str(rule.params["by"]), str(rule.params["time_field"]), int(rule.params["window_s"]) * 1000
                )
                if found is not None and mine != found:
                    raise PolicyError(f"{feed}: windowed steps disagree: {found} at one tier, {mine} at {t}")
                found = mine
        return found

    def allowed_crs(self, feed: str, tier: str) -> tuple[str, ...]:
        return self.tier_rule(feed, tier).crs

    def _check_crs(self, feed: str, tier: str, crs: str) -> TierRule:
        rule = self.tier_rule(feed, tier)
        if crs not in rule.crs:
            raise PolicyError(f"tier {tier!r} may not receive feed {feed!r} in {crs!r}; allowed: {', '.join(rule.crs)}")
        return rule

    # ------------------------------------------------------------------------------------------- apply

    def _step(self, feed: str, tier: str, batch: Batch) -> Batch:
        """Turn the view of the tier above into ``tier``'s view, in place where possible."""
        rule = self.policy.feeds[feed].tiers[tier]
        for rec_rule in rule.records:
            batch = RECORD_OPERATIONS[rec_rule.op](batch, rec_rule)
        ctx = self._contexts.get((feed, tier))
        if ctx is None:
            ctx = OpContext(feed, self._secret, self._uncertainty[feed][tier], self._pseudonyms)
            self._contexts[(feed, tier)] = ctx
        for field_rule in rule.fields:
            FIELD_OPERATIONS[field_rule.op](batch, field_rule, ctx)
        # Whatever the policy does not know (and every never-released field) stays at operator. The subset
        # test runs in C; only views that carry such keys are rebuilt.
        allowed = self._allowed[feed]
        for v in batch.views:
            if not v.keys() <= allowed:
                for key in [k for k in v if k not in allowed]:
                    del v[key]
        return batch

    def _start(self, records: Sequence[dict[str, Any]]) -> Batch:
        if not isinstance(records, Sequence) or not all(isinstance(r, dict) for r in records):
            raise PolicyError("records must be a list of dicts (canonical records from schemas.to_dict)")
        return Batch.from_records(records)

    def apply(
        self, feed: str, tier: str, records: Sequence[dict[str, Any]], crs: str = "gcj02"
    ) -> list[dict[str, Any]]:
        """``tier``'s view of each record, in order; records the tier may not see at all are left out."""
        rule = self._check_crs(feed, tier, crs)
        batch = self._start(records)
        for t in TIERS[1 : TIERS.index(tier) + 1]:
            batch = self._step(feed, t, batch)
        # The views are this call's own copies and nothing derives from them after this: emit in place.
        return emit(batch, crs, rule.coord_decimals, self.policy_version, copy=False)

    def apply_all(
        self, feed: str, records: Sequence[dict[str, Any]], crs_for_tier: Mapping[str, str] | None = None
    ) -> dict[str, list[dict[str, Any]]]:
        """Every tier's view in one pass, each derived from the one above. ``crs_for_tier`` maps tier → CRS
        (a tier not named gets its default, the first CRS the policy lists for it)."""
        crs_for_tier = dict(crs_for_tier or {})
        unknown = sorted(set(crs_for_tier) - set(TIERS))
        if unknown:
            raise PolicyError(f"unknown tier(s) {unknown}; known tiers: {', '.join(TIERS)}")
        chosen = {t: crs_for_tier.get(t, self.tier_rule(feed, t).crs[0]) for t in TIERS}
        rules = {t: self._check_crs(feed, t, c) for t, c in chosen.items()}
        batch = self._start(records)
        out: dict[str, list[dict[str, Any]]] = {}
        for i, tier in enumerate(TIERS):
            if i > 0:
                batch = self._step(feed, tier, batch)
            out[tier] = emit(batch, chosen[tier], rules[tier].coord_decimals, self.policy_version)
        return out

    def views_by_tier(
        self, feed: str, records: Sequence[dict[str, Any]], crs_for_tier: Mapping[str, str] | None = None
    ) -> dict[str, list[dict[str, Any] | None]] | None:
        """Like ``apply_all``, but each tier's list is aligned with ``records`` (None where the tier does not
        see a record), so a caller can pick per tier which records to release. None if the feed's policy
        aggregates records (its views then do not map to single records): use ``apply`` per tier."""
        return self._aligned(feed, records, crs_for_tier, emit)

    def encoded_by_tier(
        self, feed: str, records: Sequence[dict[str, Any]], crs_for_tier: Mapping[str, str] | None = None
    ) -> dict[str, list[EncodedView | None]] | None:
        """``views_by_tier`` with each view already encoded: ``(id, observed_at, MessagePack bytes)``, the
        bytes being those of the view ``views_by_tier`` returns. Cheaper when the views are only encoded:
        no released dict is built per record and tier."""
        return self._aligned(feed, records, crs_for_tier, emit_encoded)

    def _aligned(
        self,
        feed: str,
        records: Sequence[dict[str, Any]],
        crs_for_tier: Mapping[str, str] | None,
        release: Callable[[Batch, str, int, str], list[_View]],
    ) -> dict[str, list[_View | None]] | None:
        crs_for_tier = dict(crs_for_tier or {})
        chosen = {t: crs_for_tier.get(t, self.tier_rule(feed, t).crs[0]) for t in TIERS}
        rules = {t: self._check_crs(feed, t, c) for t, c in chosen.items()}
        batch = self._start(records)
        n = len(records)
        out: dict[str, list[_View | None]] = {}
        for i, tier in enumerate(TIERS):
            if i > 0:
                batch = self._step(feed, tier, batch)
            if batch.index is None:
                return None
            views = release(batch, chosen[tier], rules[tier].coord_decimals, self.policy_version)
            if len(views) == n:
                out[tier] = list(views)
            else:
                aligned: list[_View | None] = [None] * n
                for pos, view in zip(batch.index.tolist(), views, strict=True):
                    aligned[pos] = view
                out[tier] = aligned
        return out

    # --------------------------------------------------------------------------------------- describe

    def describe(self) -> list[dict[str, Any]]:
        """One row per (feed, tier): delays, CRS and the operations, for ``shfeeds policy show``."""
        rows = []
        for feed, fp in self.policy.feeds.items():
            for tier in TIERS:
                t = fp.tiers[tier]
                ops = [f"{r.op}({', '.join(f'{k}={v}' for k, v in r.params.items())})" for r in t.records]
                ops += [
                    f"{r.field}: {r.op}" + (f" {_params(r.params)}" if r.params else "")
                    for r in t.fields
                    if r.op in FIELD_OPS
                ]
                rows.append(
                    {
                        "feed": feed,
                        "tier": tier,
                        "delay_s": t.delay_ms / 1000,
                        "min_interval_s": t.min_interval_ms / 1000,
                        "crs": list(t.crs),
                        "operations": ops,
                        "note": t.note,
                    }
                )
        return rows


def _params(params: Mapping[str, Any]) -> str:
    parts = []
    for k, v in params.items():
        if k == "bands":
            v = "|".join(b["label"] for b in v)
        parts.append(f"{k}={v}")
    return " ".join(parts)
