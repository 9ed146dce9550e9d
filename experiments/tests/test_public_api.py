"""The experiments use gfe_sklearn's public API alone, so a refactor of its private modules
cannot break them: every name they import from it is in a public module's ``__all__``
(hence in the API reference), and they touch no private attribute of its objects."""

import ast
import importlib
from pathlib import Path

import pytest

SOURCES = sorted(Path(__file__).resolve().parents[1].glob("*.py"))
# Private names of the standard library that the experiments use on purpose.
STANDARD_LIBRARY = {"_exit"}  # os._exit: a worker whose parent died leaves at once


def _private(name):
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _defined(trees):
    """Private names the experiments define themselves (functions, classes, attributes)."""
    names = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.ImportFrom) and node.level:  # from ._common import _x
                names.update(alias.asname or alias.name for alias in node.names)
    return {name for name in names if _private(name)}


def reaches_into(sources):
    """``(file, line, what)`` for each use of a name that gfe_sklearn does not make public."""
    trees = {name: ast.parse(text) for name, text in sources.items()}
    own = _defined(trees.values()) | STANDARD_LIBRARY
    found = []
    for name, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
                imported = []
            elif isinstance(node, ast.ImportFrom) and not node.level:
                modules, imported = [node.module], [alias.name for alias in node.names]
            elif isinstance(node, ast.Attribute) and _private(node.attr) and node.attr not in own:
                found.append((name, node.lineno, f".{node.attr}"))
                continue
            else:
                continue
            for module in modules:
                if module.split(".")[0] != "gfe_sklearn":
                    continue
                if any(_private(part) for part in module.split(".")):
                    found.append((name, node.lineno, module))
                    continue
                public = set(getattr(importlib.import_module(module), "__all__", ()))
                for item in imported:
                    if item not in public:
                        found.append((name, node.lineno, f"{module}.{item}"))
    return found


def test_the_experiments_use_only_the_public_api():
    assert SOURCES and any(path.name == "_cli.py" for path in SOURCES)
    assert reaches_into({path.name: path.read_text() for path in SOURCES}) == []


@pytest.mark.parametrize(
    "code, what",
    [
        ("from gfe_sklearn._base import FIT_LOOP_PARAMETERS", "gfe_sklearn._base"),
        ("import gfe_sklearn._device", "gfe_sklearn._device"),
        ("from gfe_sklearn.flow import horizon, _amd", "gfe_sklearn.flow._amd"),
        ("from gfe_sklearn import BaseFlowEstimator", "gfe_sklearn.BaseFlowEstimator"),
        ("model._validate_params()", "._validate_params"),
        ("import gfe_sklearn\ngfe_sklearn._files.atomic_write(path, [])", "._files"),
    ],
)
def test_the_check_finds_a_private_name(code, what):
    assert [found[2] for found in reaches_into({"x.py": code})] == [what]
