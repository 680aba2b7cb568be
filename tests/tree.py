"""Walking the project's own files for the checks that read the tree (layout, doc paths).

Folders the scripts create (the virtual environment, the running stack's Kafka and Redis data, caches,
node modules) are pruned before they are entered: the stack's broker deletes topic folders while a walk
is under way, and reading into them would race with it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

SKIP_DIRS = frozenset(
    {".git", ".venv", ".stack", "node_modules", "build", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
)


def project_files(root: Path, suffix: str = "") -> Iterator[Path]:
    """Every file below ``root`` ending in ``suffix``, in a stable order, outside the generated folders."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info"))
        for name in sorted(files):
            if name.endswith(suffix):
                yield Path(folder) / name
