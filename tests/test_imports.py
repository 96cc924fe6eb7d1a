"""The package's import graph (issue 15): no module imports, directly or through others, a module
that imports it back -- counting imports inside functions, which hide circles from Python itself --
and the job queue knows every kind the worker's table runs."""

from __future__ import annotations

import ast
from pathlib import Path

import dsft

ROOT = Path(dsft.__file__).resolve().parent


def _module(path: Path) -> str:
    parts = ("dsft", *path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the dsft modules it imports anywhere in its body (`from a import b` names `a.b`
    when `b` is a module)."""
    modules = {_module(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            found |= {t for t in targets if t in modules and t != name}
        graph[name] = found
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_through_others():
    graph = import_graph()
    assert len(graph) > 100 and "dsft.train.trainer" in graph["dsft.cli.train"] | {"dsft.train.trainer"}
    assert cycles(graph) == []


def test_the_queue_accepts_exactly_the_kinds_the_worker_runs():
    from dsft.registry import jobs, kinds

    assert set(kinds.KINDS) == set(jobs.KINDS)
    graph = import_graph()
    workflows = {"dsft.registry.pipeline", "dsft.registry.continuous"}
    assert not graph["dsft.registry.worker"] & workflows and not graph["dsft.registry.tasks"] & workflows


def test_training_knows_no_evaluation():
    """Tool accuracy reaches a run as a callback (train/callbacks.py): nothing in dsft.train imports dsft.eval."""
    graph = import_graph()
    leaks = {m: sorted(t for t in ts if t.startswith("dsft.eval")) for m, ts in graph.items() if m.startswith("dsft.train")}
    assert {m: ts for m, ts in leaks.items() if ts} == {}
