"""Every file path a document or a comment mentions exists in the repository.

Read: Markdown files, everything under ``docs/``, comments and docstrings of Python modules, and comments
of the TOML, YAML, Makefile and Dockerfile. What counts as a path, to keep it useful rather than clever:

- a name with a slash whose first part is a top-level entry of the repository (``streams/io/stage.py``,
  ``docs/contracts.md``, ``streams/policy/``), starts with ``./`` or ``../``, or is a folder beside the
  mentioning file; it must exist, from the repository root or from the mentioning file's folder, and
  inside the repository;
- a bare file name ending in ``.py``, ``.md`` or ``.toml`` (``contracts.md``); a file of that name must
  exist somewhere in the repository.

URLs, placeholders (``tier.<tier>.<feed>``, ``{feed}``), globs and paths of other projects (a data source's
``province/310000.json``) are not paths of this repository and are left alone.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

from .tree import project_files

ROOT = Path(__file__).resolve().parent.parent
EXTENSIONS = r"py|md|toml|json|ya?ml|csv|geojson|html|js|mjs|css|proto|txt|sh|cfg|ini|xml|pb"
PATH = re.compile(
    r"(?<![\w./<>{}$*:@%=-])"  # not inside a URL, a longer path, a placeholder or an option
    r"((?:\.\.?/)*[A-Za-z0-9_][\w.-]*(?:/[\w.-]+)*(?:/|\.(?:" + EXTENSIONS + r")))"
    r"(?![\w/<>{}*(])"
)
BARE = (".py", ".md", ".toml")
COMMENTED = {".toml", ".yaml", ".yml"}
COMMENTED_NAMES = {"Makefile", "Dockerfile"}


def repo_files(root: Path) -> list[Path]:
    return sorted(project_files(root))


def _python_prose(text: str) -> Iterator[tuple[int, str]]:
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.COMMENT:
            yield tok.start[0], tok.string
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                yield node.body[0].lineno, doc


def prose(path: Path, root: Path) -> Iterator[tuple[int, str]]:
    """(line, text) of the parts of ``path`` written for people."""
    rel = path.relative_to(root)
    if path.suffix == ".md" or (rel.parts[0] == "docs" and path.suffix in {".md", ".yaml", ".yml", ".txt"}):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            yield number, line
    elif path.suffix == ".py":
        yield from _python_prose(path.read_text())
    elif path.suffix in COMMENTED or path.name in COMMENTED_NAMES or path.name.startswith("docker-compose"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "#" in line:
                yield number, line[line.index("#") :]


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def dangling(root: Path) -> list[str]:
    files = repo_files(root)
    names = {p.name for p in files}
    top = {p.name for p in root.iterdir()}
    out = []
    for path in files:
        for line, text in prose(path, root):
            for ref in PATH.findall(text):
                first = ref.split("/", 1)[0]
                if "/" in ref:
                    here = path.parent
                    if first not in top and first not in (".", "..") and not (here / first).exists():
                        continue  # another project's path
                    ok = any(_inside(base / ref, root) and (base / ref).exists() for base in (root, here))
                elif ref.endswith(BARE):
                    ok = ref in names
                else:
                    continue
                if not ok:
                    out.append(f"{path.relative_to(root)}:{line}: {ref}")
    return out


def test_every_path_in_docs_and_comments_exists() -> None:
    assert dangling(ROOT) == []


def test_the_check_finds_paths_that_point_nowhere(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "streams" / "logic").mkdir(parents=True)
    (tmp_path / "docs" / "contracts.md").write_text("See `streams/logic/fanout.py` and `../shared/design/`.\n")
    (tmp_path / "streams" / "logic" / "fanout.py").write_text(
        '"""Fan-out (docs/contracts.md, docs/missing.md).\n\nURL: https://example.org/a/b.md"""\n'
        "# the rules are in faust-rules.md; tier.<tier>.<feed> is no path\nX = 'docs/in-code-is-not-prose.md'\n"
    )
    (tmp_path / "Makefile").write_text("# see streams/gone.py\nall:\n\techo streams/not-a-comment.py\n")
    assert sorted(dangling(tmp_path)) == [
        "Makefile:1: streams/gone.py",
        "docs/contracts.md:1: ../shared/design/",
        "streams/logic/fanout.py:1: docs/missing.md",
        "streams/logic/fanout.py:4: faust-rules.md",
    ]
