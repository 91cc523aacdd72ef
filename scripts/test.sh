#!/usr/bin/env bash
# Quick start, command 2: set up (if needed), lint, type-check and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/services.sh install
export DAGSTER_DISABLE_TELEMETRY=1
echo "==> ruff check"; .venv/bin/ruff check .
echo "==> ruff format --check"; .venv/bin/ruff format --check .
echo "==> mypy"; scripts/typecheck.sh
echo "==> dagster definitions validate"
LOCKGATE_HOME="$(mktemp -d)" .venv/bin/dagster definitions validate -w workspace.yaml
# two worker processes (pytest-xdist), one test file at a time on each: module fixtures (a demo
# run, a Triton server) stay in one process. LOCKGATE_TEST_WORKERS=0 runs in this process alone.
echo "==> pytest"
exec .venv/bin/python -m pytest -n "${LOCKGATE_TEST_WORKERS:-2}" --dist loadfile "$@"
