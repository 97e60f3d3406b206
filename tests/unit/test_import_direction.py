"""The package's import direction, read from the source: supervisor -> ipc <- workers.

Every import counts, wherever it is written (module level, inside a function, relative), because
a lazy import is a dependency all the same. `ipc` is the shared protocol and depends on nothing
else of the gateway; the supervisor never imports a worker module (it starts a zygote again by
naming its entry point on a new interpreter's command line, a process boundary); workers never
import the supervisor; and no two modules import each other, directly or around a loop.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import mcp_gateway

PACKAGE_DIR = Path(mcp_gateway.__file__).parent


def module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE_DIR.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


MODULES = module_names()


def imports_of(name: str, source: str, is_package: bool = False) -> set[str]:
    """The gateway modules `source` (the text of module `name`) imports, anywhere in it."""
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # `from pkg import module`
    resolved = set()
    for target in found:
        while target and target not in MODULES:
            target = target.rpartition(".")[0]
        if target.startswith("mcp_gateway") and target != name:
            resolved.add(target)
    return resolved


GRAPH = {name: imports_of(name, path.read_text(), path.name == "__init__.py") for name, path in MODULES.items()}


def under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def edges(source_package: str) -> list[tuple[str, str]]:
    return [(m, t) for m, targets in GRAPH.items() if under(m, source_package) for t in sorted(targets)]


def test_the_graph_is_read_from_real_modules():
    for package in ("mcp_gateway.ipc", "mcp_gateway.supervisor", "mcp_gateway.workers"):
        assert len([m for m in MODULES if under(m, package)]) >= 4, package
    assert "mcp_gateway.ipc.messages" in GRAPH["mcp_gateway.supervisor.pool"]
    assert "mcp_gateway.ipc.messages" in GRAPH["mcp_gateway.workers.runtime"]


def test_the_reader_sees_lazy_relative_and_from_package_imports():
    source = textwrap.dedent("""
        import mcp_gateway.config
        from . import pool
        from ..ipc import caps
        def later():
            from mcp_gateway.workers.zygote import start_zygotes
        class C:
            def m(self):
                import mcp_gateway.connectors.http_fetch.urls as u
    """)
    assert imports_of("mcp_gateway.supervisor.gateway", source) == {
        "mcp_gateway.config", "mcp_gateway.supervisor", "mcp_gateway.supervisor.pool", "mcp_gateway.ipc",
        "mcp_gateway.ipc.caps", "mcp_gateway.workers.zygote", "mcp_gateway.connectors.http_fetch.urls"}


def test_ipc_depends_on_nothing_else_of_the_gateway():
    assert [(m, t) for m, t in edges("mcp_gateway.ipc") if not under(t, "mcp_gateway.ipc")] == []


def test_the_supervisor_imports_no_worker_module():
    assert [(m, t) for m, t in edges("mcp_gateway.supervisor") if under(t, "mcp_gateway.workers")] == []


def test_workers_import_nothing_of_the_supervisor():
    assert [(m, t) for m, t in edges("mcp_gateway.workers") if under(t, "mcp_gateway.supervisor")] == []


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: every group of modules that import each other around a loop."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return groups


def test_cycle_finder_finds_a_loop():
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_no_two_modules_import_each_other():
    # A package's __init__ is imported by its own modules through their dotted names; that is the
    # interpreter's doing, not a dependency, so a module's import of its own package is left out.
    graph = {m: {t for t in targets if not under(m, t)} for m, targets in GRAPH.items()}
    assert strongly_connected(graph) == []
