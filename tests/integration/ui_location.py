"""The code location the UI test serves: the gate test's ``fraud`` pipeline and the example's
``fraud_lgbm`` (drift and feedback sensors) on the lockgate home named by
``LOCKGATE_TEST_UI_HOME``."""

from __future__ import annotations

import os

from lockgate import Environment, build_definitions
from pipelines.fraud import PIPELINES
from tests.integration.test_gate import spec

defs = build_definitions(
    [spec(), PIPELINES[0]],
    environment=Environment.local(os.environ.get("LOCKGATE_TEST_UI_HOME", "/nonexistent")),
)
