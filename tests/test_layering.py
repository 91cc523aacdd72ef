"""The dependency rule of docs/ARCHITECTURE.md, checked over the source tree: applications ->
Dagster layer -> core, never back, and the library never imports its example.

Every ``lockgate/**/*.py`` is parsed (never imported) and each ``import``/``from ... import``
anywhere in it, inside functions and ``TYPE_CHECKING`` blocks included, and each
``importlib.import_module("...")``/``__import__("...")`` with a literal name, is checked:

- a **core** module (everything but the Dagster layer and the application modules) imports no
  ``dagster*`` package, nothing of the Dagster layer (``lockgate.assets``, ``lockgate.resources``,
  ``lockgate.sensors``) and no application module (``lockgate`` itself, ``lockgate.cli``,
  ``lockgate.definitions``, ``lockgate.environment``, ``lockgate.discover``, ``lockgate.daemon``,
  ``lockgate.scaffold``, ``lockgate.traffic``);
- a **Dagster layer** module imports no application module;
- no lockgate module imports the example project (``pipelines``).

A failure names the file, the line, the module imported and the rule it breaks.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lockgate"

DAGSTER_LAYER = ("lockgate.assets", "lockgate.resources", "lockgate.sensors")
"""Packages of the Dagster layer: assets, resources, sensors."""

APPLICATION = frozenset(
    {
        "lockgate",
        "lockgate.cli",
        "lockgate.definitions",
        "lockgate.environment",
        "lockgate.discover",
        "lockgate.daemon",
        "lockgate.dagster_instance",
        "lockgate.scaffold",
        "lockgate.traffic",
        # Kubernetes builders and `lockgate deploy`; lockgate.deploy.settings is core (plain
        # pydantic, imported by the spec)
        "lockgate.deploy",
        "lockgate.deploy.cli",
        "lockgate.deploy.docker",
        "lockgate.deploy.helm",
        "lockgate.deploy.launcher",
        "lockgate.deploy.manifests",
        "lockgate.deploy.render",
    }
)
"""The public API module, the CLI and the glue that binds specs to a Dagster deployment."""

EXAMPLE = "pipelines"
"""The example project beside the library."""

RULE_DAGSTER = "a core module never imports dagster (any dagster* package)"
RULE_LAYER = "a core module never imports the Dagster layer (lockgate.assets/resources/sensors)"
RULE_APP_FROM_CORE = (
    "a core module never imports an application module (lockgate/__init__, cli, definitions, "
    "environment, discover, daemon, scaffold, traffic)"
)
RULE_APP_FROM_LAYER = "the Dagster layer never imports an application module"
RULE_EXAMPLE = "the library never imports its example (pipelines)"


def module_name(path: Path, root: Path = ROOT) -> str:
    """``lockgate/a/b.py`` -> ``lockgate.a.b``; ``lockgate/a/__init__.py`` -> ``lockgate.a``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def layer(module: str) -> str:
    """``"application"``, ``"dagster"`` or ``"core"``: where a lockgate module sits."""
    if module in APPLICATION:
        return "application"
    if any(_within(module, p) for p in DAGSTER_LAYER):
        return "dagster"
    return "core"


def _is_submodule(name: str, package_dir: Path) -> bool:
    """Whether ``name`` (dotted, under lockgate) is a module or package of the source tree."""
    rel = Path(*name.split(".")[1:])
    return (package_dir / rel).with_suffix(".py").is_file() or (package_dir / rel).is_dir()


def imported_modules(
    source: str, module: str, *, is_package: bool, package_dir: Path = PACKAGE
) -> Iterator[tuple[int, str]]:
    """``(line, dotted module)`` for every import in ``source``, relative ones resolved.

    ``from a.b import c`` yields ``a.b.c`` when that is a lockgate module (``from lockgate import
    cli``), else ``a.b`` (importing a name from ``a.b``'s ``__init__``).
    """
    base = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - node.level + 1]
                name = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                name = node.module or ""
            for alias in node.names:
                full = f"{name}.{alias.name}"
                if _within(full, "lockgate") and _is_submodule(full, package_dir):
                    yield node.lineno, full
                else:
                    yield node.lineno, name
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = (
                func.attr
                if isinstance(func, ast.Attribute)
                else func.id
                if isinstance(func, ast.Name)
                else ""
            )
            first = node.args[0]
            literal = first.value if isinstance(first, ast.Constant) else None
            named = called in ("import_module", "__import__") and isinstance(literal, str)
            if named and not str(literal).startswith("."):
                yield node.lineno, str(literal)


def broken_rules(module: str, imported: str) -> list[str]:
    """The rules that ``module`` importing ``imported`` breaks (none: an empty list)."""
    where = layer(module)
    top = imported.split(".")[0]
    rules = []
    if top == EXAMPLE:
        rules.append(RULE_EXAMPLE)
    if where == "core":
        if top.startswith("dagster"):
            rules.append(RULE_DAGSTER)
        elif any(_within(imported, p) for p in DAGSTER_LAYER):
            rules.append(RULE_LAYER)
        elif imported in APPLICATION:
            rules.append(RULE_APP_FROM_CORE)
    elif where == "dagster" and imported in APPLICATION:
        rules.append(RULE_APP_FROM_LAYER)
    return rules


def check_source(
    source: str, module: str, *, path: str, is_package: bool = False, package_dir: Path = PACKAGE
) -> list[str]:
    """Every violation in one module's source, as ``path:line: module imports x: rule``."""
    found = []
    for line, imported in imported_modules(
        source, module, is_package=is_package, package_dir=package_dir
    ):
        for rule in broken_rules(module, imported):
            found.append(f"{path}:{line}: {module} imports {imported}: {rule}")
    return found


def source_files() -> list[Path]:
    """Every Python file of the lockgate package."""
    return sorted(PACKAGE.rglob("*.py"))


def check_tree() -> list[str]:
    """Every violation in the lockgate package."""
    found = []
    for path in source_files():
        found += check_source(
            path.read_text(encoding="utf-8"),
            module_name(path),
            path=str(path.relative_to(ROOT)),
            is_package=path.name == "__init__.py",
        )
    return found


def test_the_tree_keeps_the_dependency_rule() -> None:
    violations = check_tree()
    assert not violations, "dependency rule broken (docs/ARCHITECTURE.md):\n" + "\n".join(
        violations
    )


def test_the_check_sees_the_whole_tree() -> None:
    modules = {module_name(p): layer(module_name(p)) for p in source_files()}
    assert {m for m, where in modules.items() if where == "application"} == APPLICATION
    assert modules["lockgate.lineage.registry"] == "core"
    assert modules["lockgate.features.store"] == "core"
    assert modules["lockgate.spec"] == "core"
    assert modules["lockgate.state.postgres"] == "core"
    assert modules["lockgate.resources.artifacts"] == "dagster"
    assert modules["lockgate.sensors"] == "dagster"
    assert sum(where == "core" for where in modules.values()) >= 40


SYNTHETIC = [
    # (source, module, the imported module reported, rule)
    ("import dagster as dg\n", "lockgate.lineage.fake", "dagster", RULE_DAGSTER),
    (
        "def f():\n    from dagster_k8s import k8s_job_executor\n",
        "lockgate.serving.fake",
        "dagster_k8s",
        RULE_DAGSTER,
    ),
    (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import dagster\n",
        "lockgate.spec",
        "dagster",
        RULE_DAGSTER,
    ),
    (
        "from lockgate.resources.artifacts import LocalArtifactRegistryResource\n",
        "lockgate.lineage.fake",
        "lockgate.resources.artifacts",
        RULE_LAYER,
    ),
    ("from ..assets import gate\n", "lockgate.lineage.fake", "lockgate.assets.gate", RULE_LAYER),
    ("from lockgate import cli\n", "lockgate.monitoring.fake", "lockgate.cli", RULE_APP_FROM_CORE),
    (
        "from lockgate import ModelPipeline\n",
        "lockgate.monitoring.fake",
        "lockgate",
        RULE_APP_FROM_CORE,
    ),
    (
        "import importlib\nimportlib.import_module('lockgate.definitions')\n",
        "lockgate.errors",
        "lockgate.definitions",
        RULE_APP_FROM_CORE,
    ),
    ("import pipelines.fraud\n", "lockgate.gateway.fake", "pipelines.fraud", RULE_EXAMPLE),
    ("from pipelines import fraud\n", "lockgate.cli", "pipelines", RULE_EXAMPLE),
    (
        "from lockgate.environment import Environment\n",
        "lockgate.assets.fake",
        "lockgate.environment",
        RULE_APP_FROM_LAYER,
    ),
]


@pytest.mark.parametrize(("source", "module", "imported", "rule"), SYNTHETIC)
def test_the_check_reports_a_broken_rule(
    source: str, module: str, imported: str, rule: str
) -> None:
    found = check_source(source, module, path="lockgate/fake.py")
    line = len(source.splitlines())  # each synthetic module breaks the rule on its last line
    assert found == [f"lockgate/fake.py:{line}: {module} imports {imported}: {rule}"]


def test_a_synthetic_core_module_importing_dagster_fails_the_tree_check(tmp_path: Path) -> None:
    """The tree check itself fails on a core module that imports dagster inside a function."""
    package = tmp_path / "lockgate"
    (package / "lineage").mkdir(parents=True)
    (package / "__init__.py").write_text("import dagster\n")  # application: allowed
    (package / "lineage" / "__init__.py").write_text("")
    (package / "lineage" / "steps.py").write_text(
        "from lockgate.lineage import hashing\n\n\ndef run():\n    import dagster as dg\n"
    )
    (package / "lineage" / "hashing.py").write_text("import json\n")
    found = []
    for path in sorted(package.rglob("*.py")):
        found += check_source(
            path.read_text(),
            module_name(path, tmp_path),
            path=str(path.relative_to(tmp_path)),
            is_package=path.name == "__init__.py",
            package_dir=package,
        )
    assert found == [
        f"lockgate/lineage/steps.py:5: lockgate.lineage.steps imports dagster: {RULE_DAGSTER}"
    ]


@pytest.mark.parametrize(
    ("source", "module"),
    [
        ("import dagster as dg\nfrom lockgate.spec import ModelPipeline\n", "lockgate.assets.fake"),
        ("from lockgate.resources.audit import AuditTrail\n", "lockgate.cli"),
        ("from lockgate.lineage.registry import LocalArtifactRegistry\n", "lockgate.serving.fake"),
        ("from lockgate.evaluation import plots\n", "lockgate.lineage.fake"),
        ("from . import hashing\n", "lockgate.lineage.fake"),
        ("import json\nimport importlib\nimportlib.import_module(name)\n", "lockgate.lineage.fake"),
    ],
)
def test_imports_the_rule_allows_are_not_reported(source: str, module: str) -> None:
    assert check_source(source, module, path="lockgate/fake.py") == []
