"""The agreement rules' defaults, read from ``agreements/policy.toml`` (or a file given in configuration)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

DEFAULT_POLICY_FILE = Path(__file__).resolve().parent / "policy.toml"


class PolicyFileError(ValueError):
    """The agreement policy file is missing a value or has one of the wrong type."""


@dataclass(frozen=True)
class AgreementPolicy:
    version: str
    registered_daily_messages: int
    registered_term_days: int
    licensed_default_term_days: int
    licensed_max_term_days: int
    max_allow_list: int
    feedback_per_hour: float
    feedback_burst: int
    feedback_max_text: int


def _int(table: dict[str, object], name: str, where: str) -> int:
    value = table.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise PolicyFileError(f"{where}.{name} must be a whole number ≥ 0, got {value!r}")
    return value


def load_policy(path: str | Path | None = None) -> AgreementPolicy:
    file = Path(path) if path is not None else DEFAULT_POLICY_FILE
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise PolicyFileError(f"cannot read agreement policy {file.name}: {err}") from None
    reg, lic, fb = (data.get(t, {}) for t in ("registered", "licensed", "feedback"))
    return AgreementPolicy(
        version=str(data.get("version", "")),
        registered_daily_messages=_int(reg, "daily_messages", "registered"),
        registered_term_days=_int(reg, "term_days", "registered"),
        licensed_default_term_days=_int(lic, "default_term_days", "licensed"),
        licensed_max_term_days=_int(lic, "max_term_days", "licensed"),
        max_allow_list=_int(lic, "max_allow_list", "licensed"),
        feedback_per_hour=float(_int(fb, "reports_per_hour", "feedback")),
        feedback_burst=_int(fb, "burst", "feedback"),
        feedback_max_text=_int(fb, "max_text", "feedback"),
    )
