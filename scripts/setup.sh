#!/usr/bin/env bash
# Create .venv and install lockgate with everything its tests need. Idempotent and quick when
# nothing changed (a stamp holds the hash of pyproject.toml and constraints.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if ! "$PYTHON" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 13) else 1)'; then
  echo "lockgate needs Python 3.11 or 3.12; $PYTHON is $("$PYTHON" --version 2>&1)." >&2
  echo "Set PYTHON=/path/to/python3.11 and rerun." >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv
fi
want=$(cat pyproject.toml constraints.txt scripts/setup.sh | sha256sum | cut -c1-16)
stamp=.venv/.lockgate-installed
if [ "$(cat "$stamp" 2>/dev/null || true)" = "$want" ]; then
  echo "==> .venv is up to date"
  exit 0
fi
echo "==> installing lockgate and its dependencies into .venv (about a minute)"
.venv/bin/python -m pip install --quiet --upgrade pip
# torch 2.13.0 first: these machines carry its CPU wheel locally; any other version or an open
# range would pull the multi-GB CUDA build.
.venv/bin/python -m pip install --progress-bar on "torch==2.13.0"
.venv/bin/python -m pip install --progress-bar on -c constraints.txt -e ".[dev]"
# The tritonserver binary and its python backend ship inside nvidia-pytriton 0.7.0, which declares
# numpy<2 although lockgate only uses the server binary, not its Python API: install it without
# its dependencies, after everything else (see docs in README, "Triton").
.venv/bin/python -m pip install --progress-bar on --no-deps "nvidia-pytriton==0.7.0"
echo "$want" > "$stamp"
echo "==> done"
