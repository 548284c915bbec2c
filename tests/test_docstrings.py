"""Every public class, function and method of the engine, the store and the clients says what
it does (shapes, units, errors): a reader should not need the body to use it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "stash2plex"
DOCUMENTED = ("engine", "store", "clients")


def public_definitions(path: Path):
    tree = ast.parse(path.read_text())

    def walk(node, prefix=""):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = child.name
                if name.startswith("_"):
                    continue
                yield f"{prefix}{name}", child
                if isinstance(child, ast.ClassDef):
                    yield from walk(child, f"{prefix}{name}.")

    yield from walk(tree)


FILES = sorted(p for folder in DOCUMENTED for p in (PACKAGE / folder).glob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_public_definitions_have_docstrings(path):
    missing = [
        name
        for name, node in public_definitions(path)
        if ast.get_docstring(node) is None and not _is_trivial(node)
    ]
    assert not missing, f"{path.name}: no docstring on {', '.join(missing)}"


def _is_trivial(node) -> bool:
    """Properties and dunder-free one-liners named by their return (`is_closed`) may go bare."""
    decorators = {getattr(d, "id", getattr(d, "attr", "")) for d in node.decorator_list}
    return "property" in decorators
