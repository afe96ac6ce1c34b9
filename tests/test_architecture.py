"""Imports run one way: service -> jobs <- worker -> pruning; the API never reaches torch."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN = {
    "pruning": {"jobs", "service", "worker", "fastapi", "celery", "sqlalchemy", "starlette"},
    "jobs": {"pruning", "service", "worker", "torch", "fastapi", "starlette"},
    "worker": {"service", "fastapi", "starlette"},
    "service": {"worker", "pruning", "torch"},
}
# The CLI is the composition root: it may reach the worker and engine, inside its commands.
COMPOSITION_ROOT = {"service/cli.py", "service/cli_prune.py"}


def _imports(path: Path, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_run_one_way(package: str) -> None:
    problems = []
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel in COMPOSITION_ROOT:
            continue
        bad = _imports(path, top_level_only=False) & FORBIDDEN[package]
        if bad:
            problems.append(f"{rel} imports {sorted(bad)}")
    assert problems == []


def test_the_cli_imports_the_engine_only_inside_commands() -> None:
    top = _imports(ROOT / "service" / "cli.py", top_level_only=True)
    assert not top & {"worker", "pruning", "torch", "fastapi", "uvicorn"}
