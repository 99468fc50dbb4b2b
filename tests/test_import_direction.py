"""Imports point one way (docs/plugins.md, DESIGN.md "Layers"), checked on the source.

Every module of ``engine/``, ``web/`` and ``plugins/`` is parsed with :mod:`ast`; every
``import`` / ``from ... import`` anywhere in it counts -- at module level, inside
functions, under ``if TYPE_CHECKING:`` -- because a lazy or type-only import is still a
dependency (and type-only cycles become real ones the day someone needs the name at run
time). There is no allow-list: a rule broken anywhere fails with the module and line.

The rules:

* no import cycle among these modules;
* the plugin contract (``engine/hookspecs.py``, ``engine/providers/**``, the manager
  ``engine/plugins.py``) imports no ``engine.services``, ``engine.bootstrap``,
  ``engine.store``, ``engine.tasks``, ``web`` or ``plugins``;
* a plugin imports of the engine only ``engine`` (the package, for ``hookimpl``) and
  ``engine.providers*``; never ``web`` or another plugin;
* no module of ``engine/`` or ``web/`` imports ``plugins``;
* ``engine/services`` imports neither ``engine.bootstrap`` nor ``web``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "web", "plugins")
CONTRACT = ("engine.hookspecs", "engine.providers", "engine.plugins")
CONTRACT_MAY_NOT = ("engine.services", "engine.bootstrap", "engine.store", "engine.tasks",
                    "web", "plugins")


@dataclass(frozen=True)
class Edge:
    source: str  # importing module
    target: str  # imported module (the longest name that is one of ours, else as written)
    line: int

    def __str__(self) -> str:
        path = MODULES[self.source].relative_to(ROOT)
        return f"{path}:{self.line}: {self.source} imports {self.target}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


MODULES = _modules()


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _resolve(name: str) -> str:
    """The module an import names: ``a.b.c`` if that is one of ours, else the nearest
    enclosing module of ours (``from engine.store import models`` names a module, while
    ``from engine.store import Database`` names the package), else ``name``."""
    probe = name
    while probe:
        if probe in MODULES:
            return probe
        probe = probe.rpartition(".")[0]
    return name


def _imports(module: str, path: Path) -> Iterator[Edge]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Edge(module, _resolve(alias.name), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                stem = node.module or ""
            for alias in node.names:
                full = f"{stem}.{alias.name}"
                yield Edge(module, _resolve(full) if full in MODULES else _resolve(stem),
                           node.lineno)


EDGES = [edge for module, path in MODULES.items() for edge in _imports(module, path)
         if edge.target != edge.source]
OURS = [edge for edge in EDGES if edge.target in MODULES]


def _plugin_of(module: str) -> str | None:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "plugins" and len(parts) > 1 else None


def test_the_parser_sees_imports_everywhere(tmp_path: Path) -> None:
    """The checker itself: function-level, TYPE_CHECKING and relative imports count."""
    probe = tmp_path / "probe.py"
    probe.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                     "    import engine.store\n"
                     "def f():\n    from engine.services import shops\n"
                     "from . import nothing_of_ours\nfrom .base import Provider\n")
    targets = {e.target for e in _imports("engine.providers.probe", probe)}
    assert {"engine.store", "engine.services.shops", "engine.providers",
            "engine.providers.base"} <= targets
    assert len(OURS) > 300  # the walk found the tree


def _cycles() -> list[list[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for edge in OURS:
        graph[edge.source].add(edge.target)
    # Tarjan's strongly connected components, iteratively (no recursion limit).
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
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


def test_no_import_cycle() -> None:
    cycles = _cycles()
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def _violations() -> Iterator[tuple[str, Edge]]:
    for edge in EDGES:
        src, dst = edge.source, edge.target
        if any(_within(src, c) for c in CONTRACT):
            for banned in CONTRACT_MAY_NOT:
                if _within(dst, banned):
                    yield "the plugin contract imports a use case, the wiring or the store", edge
        plugin = _plugin_of(src)
        if plugin is not None:
            if _within(dst, "engine") and not (dst == "engine"
                                                or _within(dst, "engine.providers")):
                yield "a plugin imports engine internals (only engine, engine.providers)", edge
            if _within(dst, "web"):
                yield "a plugin imports web", edge
            other = _plugin_of(dst)
            if (other is not None and other != plugin) or dst == "plugins":
                yield "a plugin imports another plugin", edge
        if (_within(src, "engine") or _within(src, "web")) and _within(dst, "plugins"):
            yield "engine/ or web/ names a plugin package", edge
        if _within(src, "engine.services") and (_within(dst, "engine.bootstrap")
                                                or _within(dst, "web")):
            yield "a use case imports the composition root or web", edge


def test_imports_point_one_way() -> None:
    found = [f"{why}: {edge}" for why, edge in _violations()]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("source, target, rule", [
    ("engine.providers.base", "engine.store.db", "the plugin contract"),
    ("engine.hookspecs", "engine.services.shops", "the plugin contract"),
    ("engine.plugins", "engine.tasks.jobs", "the plugin contract"),
    ("plugins.calendar_local", "engine.store.models", "engine internals"),
    ("plugins.calendar_local.service", "engine.errors", "engine internals"),
    ("plugins.video_meet", "plugins.calendar_google.client", "another plugin"),
    ("plugins.mail_smtp", "web.errors", "imports web"),
    ("web.connections", "plugins.calendar_local.service", "names a plugin"),
    ("engine.tasks.jobs", "plugins.calendar_local", "names a plugin"),
    ("engine.services.install", "engine.bootstrap", "composition root"),
])
def test_each_rule_catches_its_breach(source: str, target: str, rule: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Each rule fires on the breach the issue names (guards the checker itself)."""
    monkeypatch.setattr(f"{__name__}.EDGES", [Edge(source, target, 1)])
    found = [why for why, _ in _violations()]
    assert any(rule in why for why in found), found


def test_a_cycle_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(f"{__name__}.OURS", [Edge("engine.plugins", "engine.hookspecs", 1),
                                             Edge("engine.hookspecs", "engine.plugins", 1)])
    assert _cycles() == [["engine.hookspecs", "engine.plugins"]]
