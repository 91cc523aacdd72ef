"""Test layers, by marker: every test is ``unit`` or ``integration``, and long runs are ``slow``.

- ``integration``: against real servers and stores (tritonserver, gateway processes, Feast, a
  Dagster instance, daemon or webserver). Everything under ``tests/integration/``, and a module
  elsewhere that declares ``pytestmark = pytest.mark.integration``.
- ``unit``: everything else; lockgate's own logic in one process, no server started.
- ``slow``: the long soak/stress variants; a short version of each runs in every layer's default.

``pytest -m unit``, ``pytest -m integration`` and ``pytest -m slow`` each run one layer alone; the
default run (``scripts/test.sh``, CI) is the full suite.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("integration") is not None:
            continue
        parts = Path(str(item.path)).resolve().relative_to(TESTS).parts
        item.add_marker(pytest.mark.integration if parts[0] == "integration" else pytest.mark.unit)
