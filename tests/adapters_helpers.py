"""Helpers for the adapters tests (not a conftest: fixtures there belong to the lead)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import settings
from adapters.formats import parse_with

SHARED_DATA = Path(settings.PROJECT_ROOT).parent / "shared" / "data"
RECEIVED_AT = 1_795_000_000_000


def shared(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        # A missing file is a broken checkout, not a reason to pass: fail with where it was looked for.
        pytest.fail(f"shared real data not found at {path} (it belongs at ../shared beside the project)")
    return path


def parse_any(name: str, data: bytes, **kwargs: Any) -> Any:
    """``parse_with`` typed loosely, so tests can read feed-specific fields without casts."""
    return parse_with(name, data, **kwargs)
