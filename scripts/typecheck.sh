#!/usr/bin/env bash
# mypy over the library and the fraud example, read from the tree as it is (the example imports
# from the repository root, as a team's project imports from its own).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/mypy --config-file pyproject.toml -p lockgate -p pipelines
