#!/usr/bin/env bash
# mypy over the whole distribution and the fraud example. The top-level folders are mapped into the lockgate package by
# setuptools (package-dir), which mypy cannot follow, so we check a symlinked view of the package.
# Runs are serialised with a lock on the view, so two at once cannot tear each other's links.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .build
exec 9>.build/typecheck.lock
flock 9
view=.build/typecheck
rm -rf "$view"
mkdir -p "$view/lockgate"
for entry in lockgate/*; do ln -s "../../../$entry" "$view/lockgate/$(basename "$entry")"; done
for pkg in assets resources sensors; do ln -s "../../../$pkg" "$view/lockgate/$pkg"; done
# the fraud example imports from the repository root, as a team's project imports from its own
ln -s "../../pipelines" "$view/pipelines"
cd "$view"
exec ../../.venv/bin/mypy --config-file ../../pyproject.toml -p lockgate -p pipelines
