"""docs/security.md lists the principals exactly as access/principals.py grants them."""

from __future__ import annotations

import settings as settings_mod
from access.table import markdown


def test_the_security_page_has_the_principals_table_of_the_code() -> None:
    page = (settings_mod.PROJECT_ROOT / "docs" / "security.md").read_text()
    assert markdown() in page, "regenerate the table: python -c 'from access.table import markdown; print(markdown())'"
