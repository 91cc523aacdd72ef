#!/usr/bin/env bash
# Quick start, command 1: set up (if needed) and run the main job on the embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export DAGSTER_DISABLE_TELEMETRY=1
exec .venv/bin/python -m pipelines demo "$@"
