"""The architecture holds: small parts, thin cogs, and threads owned by three layers only."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PRODUCT = sorted([*REPO.glob("bot/**/*.py"), *REPO.glob("cogs/*.py")])
# The only modules that hand work to the worker threads (bot/workers.py).
THREAD_OWNERS = {"bot/vision/service.py", "bot/images/loader.py", "bot/index/image_index.py"}


def name(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


@pytest.mark.parametrize("path", PRODUCT, ids=name)
def test_files_and_functions_are_small(path: Path) -> None:
    source = path.read_text()
    assert len(source.splitlines()) <= 300
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno is not None
            assert node.end_lineno - node.lineno < 50, node.name


@pytest.mark.parametrize("path", PRODUCT, ids=name)
def test_each_module_says_what_it_owns(path: Path) -> None:
    docstring = ast.get_docstring(ast.parse(path.read_text()))
    assert docstring, "a module docstring whose first line says what the module owns"


@pytest.mark.parametrize("path", PRODUCT, ids=name)
def test_a_module_logger_is_used(path: Path) -> None:
    source = path.read_text()
    if "logging.getLogger(__name__)" in source:
        assert re.search(r"\blog\.(debug|info|warning|error|exception|critical)\(", source)


@pytest.mark.parametrize("path", sorted(REPO.glob("cogs/*.py")), ids=name)
def test_cogs_stay_thin(path: Path) -> None:
    tree = ast.parse(path.read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    }
    assert not imported & {"torch", "transformers", "numpy", "PIL", "sqlite3"}
    assert "workers" not in path.read_text()


@pytest.mark.parametrize("path", PRODUCT, ids=name)
def test_only_three_layers_use_the_worker_threads(path: Path) -> None:
    if name(path) in THREAD_OWNERS or name(path) == "bot/workers.py":
        return
    assert not re.search(r"\.run\(\s*\"(model|prep|db)\"", path.read_text())
    assert "run_in_executor" not in path.read_text()
