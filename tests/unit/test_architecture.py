"""The floor plan holds (issue 16): no import circle in bot/, no module reaching into
another module's private names, the action server independent of the console, and a
domain with no framework imports. Pure and fast: reads the source with ast, imports nothing."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from bot.domain.model import TicketState
from bot.paths import REPO_ROOT

OURS = ("bot", "actions", "bench")
# Pure data, no framework: the State Council's holiday table that workcal falls back on.
DOMAIN_DATA_LIBRARIES = frozenset({"chinese_calendar"})


def modules(*packages: str) -> dict[str, Path]:
    """Dotted module name → file, for every .py under the given top-level folders."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imported(name: str, path: Path, tree: ast.AST) -> list[tuple[str, list[str], int]]:
    """(module, names imported from it, line) for every import, module-level or in a function."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            out.append((base, [a.name for a in node.names], node.lineno))
    return out


def resolve(target: str, names: list[str], known: dict[str, Path]) -> list[str]:
    """The modules of ours an import statement loads: `from a import b` loads a.b when b is a module."""
    out = []
    if target in known:
        out.append(target)
    out += [f"{target}.{n}" for n in names if f"{target}.{n}" in known]
    return out


def import_graph(known: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        edges = graph.setdefault(name, set())
        for target, names, _ in imported(name, path, ast.parse(path.read_text(encoding="utf-8"))):
            edges.update(m for m in resolve(target, names, known) if m != name)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
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
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
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


def private_reaches(known: dict[str, Path]) -> list[str]:
    """`from ours import _x`, or `mod._x` where mod names a module of ours imported here."""
    out = []
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        aliases: dict[str, str] = {}  # local name → module of ours
        for target, names, line in imported(name, path, tree):
            for n in names:
                if n.startswith("_") and not n.startswith("__") and target != name and target.split(".")[0] in OURS:
                    out.append(f"{name}:{line} imports {target}.{n}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] in OURS:
                        aliases[a.asname or a.name] = a.name
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in OURS:
                for a in node.names:
                    if f"{node.module}.{a.name}" in known:
                        aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and aliases[node.value.id] != name):
                out.append(f"{name}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    return out


def private_definitions(tree: ast.AST) -> set[str]:
    """Private names a module defines: functions, methods, classes, assigned names and `self._x = …`."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            out.add(node.attr)
    return {n for n in out if n.startswith("_") and not n.startswith("__")}


def private_object_reaches(known: dict[str, Path]) -> list[str]:
    """Heuristic for reaches through objects (`uow._connection()`, `Repo(conn)._load(rows)`):
    `<expr>._x` where `<expr>` is not self, cls or super(), and `_x` is defined by another module
    of ours but not by this one. Private names of third-party objects are not ours to police."""
    trees = {name: ast.parse(path.read_text(encoding="utf-8")) for name, path in known.items()}
    defined = {name: private_definitions(tree) for name, tree in trees.items()}
    elsewhere: dict[str, set[str]] = {}
    for name, names in defined.items():
        for n in names:
            elsewhere.setdefault(n, set()).add(name)
    out = []
    for name, tree in trees.items():
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and node.attr in elsewhere and node.attr not in defined[name]):
                continue
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super":
                continue
            out.append(f"{name}:{node.lineno} uses {node.attr} of {', '.join(sorted(elsewhere[node.attr]))}")
    return out


def test_no_module_reaches_a_private_name_of_another() -> None:
    known = modules(*OURS)
    assert private_reaches(known) == []
    assert private_object_reaches(known) == []


def state_literals(known: dict[str, Path]) -> list[str]:
    """A ticket state's name written as a value to compare or filter with (in a comparison, a list,
    tuple or set, a call's argument), or quoted inside SQL ('受理'). Prose that happens to contain
    the word (f-strings, labels) is not a state literal."""
    names = {s.value for s in TicketState}
    quoted = {f"'{n}'" for n in names}
    out = []
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare):
                values = [node.left, *node.comparators]
            elif isinstance(node, (ast.List, ast.Tuple, ast.Set)):
                values = node.elts
            elif isinstance(node, ast.Call):
                values = [*node.args, *(k.value for k in node.keywords)]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and any(q in node.value for q in quoted):
                out.append((name, node.lineno, f"{name}:{node.lineno} {node.value!r}"))
                continue
            else:
                continue
            for v in values:
                if isinstance(v, ast.Constant) and v.value in names:
                    out.append((name, v.lineno, f"{name}:{v.lineno} {v.value!r}"))
    return [line for *_, line in sorted(out)]


def test_ticket_state_names_are_written_only_in_the_domain() -> None:
    known = {n: p for n, p in modules(*OURS).items() if not (n == "bot.domain" or n.startswith("bot.domain."))}
    assert state_literals(known) == []


def test_the_state_check_sees_a_literal_and_sql(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(
        'OPEN = ["受理", "派单中心"]\nQ = "SELECT 1 FROM tickets WHERE state = \'办结\'"\n'
        'if t.state == "回访" or f(state="退单"):\n    pass\n'
        'TABS = {"returned": "退单"}\nNOTE = f"退单{n}次"\n')
    assert state_literals({"bot.a": tmp_path / "a.py"}) == [
        "bot.a:1 '受理'", "bot.a:2 \"SELECT 1 FROM tickets WHERE state = '办结'\"", "bot.a:3 '回访'", "bot.a:3 '退单'"]


def test_no_import_circle_in_bot() -> None:
    found = circles(import_graph(modules("bot")))
    assert found == [], "import circles (module-level and function-level imports): " + "; ".join(
        " <-> ".join(c) for c in found)


def test_actions_import_nothing_from_the_console() -> None:
    known = modules("bot", "actions")
    graph = import_graph(known)
    reached = {m for a in known if a.startswith("actions") for m in graph[a]}
    assert sorted(m for m in reached if m == "bot.console" or m.startswith("bot.console.")) == []


def test_domain_imports_only_the_standard_library_and_itself() -> None:
    bad = []
    for name, path in modules("bot/domain").items():
        for target, _, line in imported(name, path, ast.parse(path.read_text(encoding="utf-8"))):
            top = target.split(".")[0]
            if not (target == "bot.domain" or target.startswith("bot.domain.") or top in sys.stdlib_module_names
                    or top in DOMAIN_DATA_LIBRARIES):
                bad.append(f"{name}:{line} imports {target}")
    assert bad == []


# The checks themselves catch what they are for (on small made-up modules).


def test_the_circle_check_names_a_circle(tmp_path: Path) -> None:
    graph = {"bot.a": {"bot.b"}, "bot.b": {"bot.c"}, "bot.c": {"bot.a"}, "bot.d": {"bot.a"}}
    assert circles(graph) == [["bot.a", "bot.b", "bot.c"]]
    assert circles({"bot.a": {"bot.b"}, "bot.b": set()}) == []


def test_function_level_imports_count(tmp_path: Path) -> None:
    pkg = tmp_path / "bot"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "web.py").write_text("from bot import pages\n")
    (pkg / "pages.py").write_text("def f():\n    from bot.web import render\n    return render\n")
    known = {"bot": pkg / "__init__.py", "bot.web": pkg / "web.py", "bot.pages": pkg / "pages.py"}
    assert circles(import_graph(known)) == [["bot.pages", "bot.web"]]


def test_the_private_check_sees_both_ways_in(tmp_path: Path) -> None:
    pkg = tmp_path / "bot"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "uow.py").write_text("def _connection():\n    pass\n")
    (pkg / "a.py").write_text("from bot.uow import _connection\n")
    (pkg / "b.py").write_text("from bot import uow\n\n\ndef f():\n    return uow._connection()\n")
    known = {"bot": pkg / "__init__.py", "bot.uow": pkg / "uow.py", "bot.a": pkg / "a.py", "bot.b": pkg / "b.py"}
    assert private_reaches(known) == ["bot.a:1 imports bot.uow._connection", "bot.b:5 uses bot.uow._connection"]


def test_the_object_check_sees_a_reach_through_an_instance(tmp_path: Path) -> None:
    pkg = tmp_path / "bot"
    pkg.mkdir()
    (pkg / "uow.py").write_text(
        "class Uow:\n    def _connection(self):\n        return self._conn\n\n"
        "    def commit(self):\n        self._connection().commit()\n")
    (pkg / "a.py").write_text(
        "from bot.uow import Uow\n\n\ndef f(uow: Uow, row):\n    row._mapping\n    return uow._connection()\n")
    (pkg / "b.py").write_text(
        "class B(Base):\n    def _connection(self):\n        return super()._conn\n\n"
        "    def g(self, other):\n        return other._connection(), self._conn\n")
    known = {"bot.uow": pkg / "uow.py", "bot.a": pkg / "a.py", "bot.b": pkg / "b.py"}
    # a reaches into uow (row._mapping is not ours); b defines its own _connection, so other._connection is its own
    assert private_object_reaches(known) == ["bot.a:6 uses _connection of bot.b, bot.uow"]
