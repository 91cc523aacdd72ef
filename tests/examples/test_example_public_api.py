"""The fraud example is a project on lockgate's public API, like any team's project.

It lives beside the library (``pipelines/``, importing from the repository root), is not part of
the installed distribution, and imports nothing from lockgate but the names ``lockgate``
exports; the library imports nothing from it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import lockgate

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = sorted((REPO / "pipelines").rglob("*.py"))
LIBRARY = sorted(
    p
    for folder in ("lockgate", "assets", "resources", "sensors")
    for p in (REPO / folder).rglob("*.py")
)


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) of every import in ``path``, nested ones included."""
    found: list[tuple[int, str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module, [a.name for a in node.names]))
    return found


def test_the_example_is_found() -> None:
    names = {p.name for p in EXAMPLE}
    assert {"fraud.py", "definitions.py", "demo.py", "fraud_data.py", "__main__.py"} <= names


@pytest.mark.parametrize("path", EXAMPLE, ids=lambda p: str(p.relative_to(REPO)))
def test_the_example_uses_only_lockgates_exported_names(path: Path) -> None:
    public = set(lockgate.__all__)
    for line, module, names in _imports(path):
        if module != "lockgate" and not module.startswith("lockgate."):
            continue
        where = f"{path.relative_to(REPO)}:{line}"
        assert module == "lockgate", f"{where} imports {module}: use `from lockgate import ...`"
        assert set(names) <= public, f"{where} imports {set(names) - public}, not exported"


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(REPO)))
def test_the_library_never_imports_the_example(path: Path) -> None:
    for line, module, _ in _imports(path):
        assert module.split(".")[0] != "pipelines", (
            f"{path.relative_to(REPO)}:{line} imports {module}: the library must not depend "
            "on its example"
        )


def test_the_library_imports_without_the_example_on_the_path(tmp_path: Path) -> None:
    """Installed, lockgate has no ``pipelines`` package: from any other folder, the library and
    its console command import, and the example does not."""
    code = (
        "import importlib.util, lockgate, lockgate.cli\n"
        "assert importlib.util.find_spec('pipelines') is None, 'pipelines is installed'\n"
        "assert importlib.util.find_spec('lockgate.pipelines') is None\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
