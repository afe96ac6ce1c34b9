"""The shape of the house, checked: imports run one way (service -> jobs <- worker -> pruning),
the API never reaches torch, no import cycle, no file over 300 lines, one home per concept."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pruning", "jobs", "service", "worker")

FORBIDDEN = {
    "pruning": {"jobs", "service", "worker", "fastapi", "celery", "sqlalchemy", "starlette"},
    "jobs": {"pruning", "service", "worker", "torch", "fastapi", "starlette"},
    "worker": {"service", "fastapi", "starlette"},
    "service": {"worker", "pruning", "torch"},
}
# The job's vocabulary (enums, defaults, published file names) is shared by the API and the
# engine; it is a leaf of the standard library, so the engine may import it and nothing else
# of `jobs`.
SHARED_VOCABULARY = "jobs.job_config"
# The CLI is the composition root: it may reach the worker and engine, inside its commands.
COMPOSITION_ROOT = {"service/cli.py", "service/cli_prune.py"}
MAX_LINES = 300
# The Python client (./client, a distribution of its own) needs httpx and nothing of ours; in
# `service/` only the remote commands use it, so the API server never needs it installed.
CLIENT = "deadweight_client"
CLIENT_ALLOWED = {CLIENT, "httpx", "__future__"}
CLIENT_USERS = {"service/cli_remote.py", "service/cli_show.py", "service/cli_submit.py"}


def _sources(*tops: str) -> Iterator[Path]:
    for top in tops:
        yield from sorted((ROOT / top).rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(path: Path, top_level_only: bool = False) -> set[str]:
    """Dotted names this file imports (`from a.b import c` gives `a.b.c` when c is a module
    of ours, else `a.b`), at module level or anywhere in it."""
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                is_module = (ROOT / candidate.replace(".", "/")).with_suffix(".py").exists() or (
                    ROOT / candidate.replace(".", "/") / "__init__.py"
                ).exists()
                found.add(candidate if is_module else node.module)
    return found


def _tops(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_run_one_way(package: str) -> None:
    problems = []
    for path in _sources(package):
        rel = path.relative_to(ROOT).as_posix()
        if rel in COMPOSITION_ROOT:
            continue
        modules = _imported_modules(path) - {SHARED_VOCABULARY}
        bad = _tops(modules) & FORBIDDEN[package]
        if bad:
            problems.append(f"{rel} imports {sorted(bad)}")
    assert problems == []


# Inside the packages, the parts that stand alone: what each may import of its own package.
# The reader knows nothing of what is done with a program; the channel analysis nothing of
# statistics or cuts; the report only the results it publishes; the sandbox only its protocol.
LAYERS = {
    "pruning.reader": {"pruning.reader", "pruning.errors"},
    "pruning.graph": {"pruning.graph", "pruning.errors"},
    "pruning.report": {"pruning.report", "pruning.results", "pruning.choice", "pruning.errors"},
    "worker.sandbox": {"worker.sandbox", "worker.protocol"},
    "worker.protocol": {"worker.protocol"},
}


@pytest.mark.parametrize("part", sorted(LAYERS))
def test_the_parts_that_stand_alone_import_only_what_they_may(part: str) -> None:
    own = part.split(".")[0]
    allowed = LAYERS[part]
    problems = []
    for path in (
        _sources(part.replace(".", "/"))
        if (ROOT / part.replace(".", "/")).is_dir()
        else [ROOT / (part.replace(".", "/") + ".py")]
    ):
        for module in _imported_modules(path):
            if module.split(".")[0] == own and not any(
                module == a or module.startswith(a + ".") for a in allowed
            ):
                problems.append(f"{path.relative_to(ROOT).as_posix()} imports {module}")
    assert problems == []


def test_the_cli_and_the_engines_vocabulary_load_no_torch() -> None:
    """`deadweight prune`'s parent only supervises the engine's child: it must start fast."""
    code = (
        "import sys, pruning, pruning.config, service.cli, service.cli_prune, worker.protocol\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


def test_the_client_needs_only_httpx() -> None:
    problems = []
    for path in _sources(f"client/{CLIENT}"):
        extra = _tops(_imported_modules(path)) - CLIENT_ALLOWED - set(sys.stdlib_module_names)
        if extra:
            problems.append(f"{path.relative_to(ROOT).as_posix()} imports {sorted(extra)}")
    assert problems == []


def test_only_the_remote_commands_use_the_client() -> None:
    users = {
        path.relative_to(ROOT).as_posix()
        for path in _sources(*PACKAGES)
        if CLIENT in _tops(_imported_modules(path))
    }
    assert users <= CLIENT_USERS
    code = (
        "import sys, service.main, service.cli\n"
        f"assert {CLIENT!r} not in sys.modules, 'the API imported the client'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


def test_the_shared_vocabulary_is_a_leaf_of_the_standard_library() -> None:
    path = ROOT / (SHARED_VOCABULARY.replace(".", "/") + ".py")
    imported = _tops(_imported_modules(path))
    assert imported - set(sys.stdlib_module_names) - {"__future__"} == set()


def test_the_cli_imports_the_engine_only_inside_commands() -> None:
    top = _tops(_imported_modules(ROOT / "service" / "cli.py", top_level_only=True))
    assert not top & {"worker", "pruning", "torch", "fastapi", "uvicorn"}


def _import_graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in _sources(*PACKAGES, "bench")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        # An edge to a package's own `__init__` from its submodules is how Python imports
        # them, not a dependency; only edges between our modules count.
        graph[name] = {m for m in _imported_modules(path) if m in paths and m != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
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
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
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
    assert _cycles(_import_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_no_file_over_300_lines() -> None:
    long = {
        path.relative_to(ROOT).as_posix(): n
        for path in _sources(*PACKAGES, "bench", "tests", "client")
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


# Names that each module defines on purpose: entry points, Alembic's migration functions, and
# the handler table each op family of `pruning/graph/` fills.
MANY_HOMES = {"main", "upgrade", "downgrade", "HANDLERS"}


def _defined_names(path: Path) -> Iterator[str]:
    """Classes, type aliases (a CapWords name bound at module level), public functions and
    constants (an UPPER_CASE name bound at module level)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            yield node.name
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if not node.name.startswith("_"):
                yield node.name
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name) and _is_a_definition(target.id):
                    yield target.id


def _is_a_definition(name: str) -> bool:
    bare = name.lstrip("_")
    cap_words = bare[:1].isupper() and not bare.isupper() and "_" not in bare
    constant = bare.isupper() and len(bare) > 1 and name != "__all__"
    return cap_words or constant


def test_each_name_is_defined_once() -> None:
    """One home per concept: a second `Metric`, `Batch`, `child_env` or `PROGRESS_EVERY_S`
    is a second meaning of one word, or one meaning written twice."""
    homes: dict[str, list[str]] = {}
    for path in _sources(*PACKAGES):
        for name in set(_defined_names(path)) - MANY_HOMES:
            homes.setdefault(name, []).append(path.relative_to(ROOT).as_posix())
    assert {name: where for name, where in homes.items() if len(where) > 1} == {}
