"""Which code may import which: the layout's one-way rules, read from the source with ``ast`` (no imports run).

- adapters never import the stream layer (``streams``);
- ``streams/logic/`` is pure: no Kafka, Redis, WebSocket or Faust client, and nothing of ``streams/stages/``
  or ``streams/io/``; ``streams/io/`` never imports ``streams/stages/``; the policy engine
  (``streams/policy/``) imports no other part of ``streams/``;
- the bottom packages (``schemas/``, ``kafka_admin/``, ``geo/``, ``settings/``) import nothing above them;
- the sans-I/O WebSocket core (``ws_server/protocol/``) imports no network client and has no import cycle;
- the catalogue core (``catalog/``) imports no network client and nothing of the server or the CLI.

Imports under ``if TYPE_CHECKING:`` are left out: they never run, so they cannot make a cycle at run time.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .tree import project_files

ROOT = Path(__file__).resolve().parent.parent
PROJECT: tuple[str, ...] = (
    "adapters",
    "bench",
    "client",
    "geo",
    "kafka_admin",
    "schemas",
    "settings",
    "shfeeds_cli",
    "streams",
    "tests",
)
PROJECT += ("ws_server",)
NETWORK_CLIENTS = ("aiokafka", "redis", "hiredis", "websockets", "faust", "aiohttp")


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    path: Path
    line: int
    target: str  # the imported module (or, for ``from x import y``, also ``x.y``)


@dataclass(frozen=True)
class Rule:
    package: str  # the rule holds for every module in this package
    forbidden: tuple[str, ...]  # packages or modules it must not import
    why: str


RULES = (
    Rule("adapters", ("streams",), "adapters write raw topics; the stream layer sits above them"),
    Rule("streams.logic", NETWORK_CLIENTS, "streams/logic is pure: no broker, store or network client"),
    Rule("streams.logic", ("streams.stages", "streams.io"), "imports run stages -> io -> logic, never back"),
    Rule("streams.io", ("streams.stages",), "imports run stages -> io, never back"),
    Rule("streams.policy", ("streams.stages", "streams.io", "streams.logic", "streams.config"), "policy is below"),
    Rule("streams.policy", NETWORK_CLIENTS, "the policy engine is pure"),
    Rule("schemas", tuple(p for p in PROJECT if p != "schemas"), "schemas is the bottom of the project"),
    Rule("kafka_admin", tuple(p for p in PROJECT if p != "kafka_admin"), "kafka_admin knows no project code"),
    Rule("geo", tuple(p for p in PROJECT if p != "geo"), "geo is the bottom of the project"),
    Rule("settings", tuple(p for p in PROJECT if p != "settings"), "settings is the bottom of the project"),
    Rule("ws_server.protocol", NETWORK_CLIENTS, "the WebSocket core is sans-I/O (a Sink seam, fake in tests)"),
    Rule("catalog", (*NETWORK_CLIENTS, "ws_server", "shfeeds_cli"), "the catalogue core is sans-I/O; servers use it"),
)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def python_files(root: Path) -> Iterator[Path]:
    return project_files(root, ".py")


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def imports_in(path: Path, root: Path) -> list[Import]:
    module = module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: list[Import] = []
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [Import(module, path, node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*base_parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            out.append(Import(module, path, node.lineno, base))
            out += [Import(module, path, node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return out


def all_imports(root: Path) -> list[Import]:
    return [imp for path in python_files(root) for imp in imports_in(path, root)]


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def violations(rule: Rule, imports: list[Import], root: Path) -> list[str]:
    found = {
        f"{imp.path.relative_to(root)}:{imp.line} imports {imp.target} ({rule.why})"
        for imp in imports
        if _within(imp.module, rule.package) and any(_within(imp.target, f) for f in rule.forbidden)
    }
    return sorted(found)


def import_cycles(package: str, imports: list[Import]) -> list[list[str]]:
    """Cycles among the modules of ``package`` (each as the path of modules round the cycle)."""
    modules = {imp.module for imp in imports if _within(imp.module, package)}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for imp in imports:
        if imp.module in graph and imp.target in modules and imp.target != imp.module:
            graph[imp.module].add(imp.target)
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


@pytest.fixture(scope="module")
def tree_imports() -> list[Import]:
    return all_imports(ROOT)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: f"{r.package}-not-{r.forbidden[0]}")
def test_imports_run_one_way(rule: Rule, tree_imports: list[Import]) -> None:
    assert any(_within(imp.module, rule.package) for imp in tree_imports), f"no module in {rule.package}"
    assert violations(rule, tree_imports, ROOT) == []


def test_the_websocket_core_has_no_import_cycle(tree_imports: list[Import]) -> None:
    assert import_cycles("ws_server.protocol", tree_imports) == []


def test_the_checker_catches_each_kind_of_violation(tmp_path: Path) -> None:
    """The rules above are only worth something if a violation makes them fail: plant one of each."""
    files = {
        "adapters/runtime/sink.py": "from streams.stages import worker\n",
        "streams/logic/pure.py": "import aiokafka\nfrom ..io import stage\n",
        "streams/io/stage.py": "from streams.stages.clean import CleanStage\n",
        "schemas/records.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import streams\nimport geo\n",
        "ws_server/protocol/hub.py": "from .session import Session\n",
        "ws_server/protocol/session.py": "from . import stream\n",
        "ws_server/protocol/stream.py": "from .hub import Hub\n",
    }
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    imports = all_imports(tmp_path)
    found = [v for rule in RULES for v in violations(rule, imports, tmp_path)]
    assert [v.split(" (")[0] for v in found] == [
        "adapters/runtime/sink.py:1 imports streams.stages",
        "adapters/runtime/sink.py:1 imports streams.stages.worker",
        "streams/logic/pure.py:1 imports aiokafka",
        "streams/logic/pure.py:2 imports streams.io",
        "streams/logic/pure.py:2 imports streams.io.stage",
        "streams/io/stage.py:1 imports streams.stages.clean",
        "streams/io/stage.py:1 imports streams.stages.clean.CleanStage",
        "schemas/records.py:4 imports geo",  # the TYPE_CHECKING import of streams never runs
    ]
    assert import_cycles("ws_server.protocol", imports) == [
        ["ws_server.protocol.hub", "ws_server.protocol.session", "ws_server.protocol.stream", "ws_server.protocol.hub"]
    ]
