"""The machine-readable API documents pass their official validators (run with node from tests/apidocs)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APIDOCS_DIR = Path(__file__).resolve().parent / "apidocs"


def _node_tool(script: str, *args: str) -> tuple[int, list[dict[str, object]]]:
    missing = [
        what
        for what, ok in (
            ("node", shutil.which("node") is not None),
            ("the validators in tests/apidocs", (APIDOCS_DIR / "node_modules").exists()),
        )
        if not ok
    ]
    if missing:  # `make apidoc-deps` (part of `make test`) installs them
        pytest.fail(f"the API document tests need {', '.join(missing)}: run `make apidoc-deps`")
    proc = subprocess.run(
        ["node", str(APIDOCS_DIR / script), *args],
        cwd=APIDOCS_DIR,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        pytest.fail(f"{script} printed nothing: {proc.stderr}")
    return proc.returncode, lines


def test_asyncapi_document_passes_the_official_parser() -> None:
    rc, lines = _node_tool("validate_asyncapi.mjs", str(ROOT / "docs" / "asyncapi.yaml"))
    problems = [line for line in lines if line.get("severity") in ("error", "warning")]
    assert rc == 0 and not problems, problems
    assert lines[-1] == {"result": "valid", "version": "3.0.0", "channels": 2}  # live and replay


def test_asyncapi_validator_rejects_an_unquoted_comma(tmp_path: Path) -> None:
    # The slip the document once had: an unquoted description with commas inside a flow mapping.
    text = (ROOT / "docs" / "asyncapi.yaml").read_text(encoding="utf-8")
    quoted = "description: 'after update; not in the 1, 2, 3 sequence'"
    assert quoted in text
    broken = tmp_path / "asyncapi.yaml"
    broken.write_text(text.replace(quoted, "description: after update; not in the 1, 2, 3 sequence"), encoding="utf-8")
    rc, lines = _node_tool("validate_asyncapi.mjs", str(broken))
    assert rc == 1 and lines[-1]["result"] == "invalid"
    assert any(
        line.get("severity") == "error" and line.get("line") == text[: text.index(quoted)].count("\n") + 1
        for line in lines
    )
