#!/usr/bin/env bash
# Creates .venv-evidently, a virtualenv apart from the project's .venv, holding Evidently for
# benchmarks/bench_drift.py. Evidently is not a lockgate dependency (it pins older libraries),
# so the benchmark runs it in this venv as a subprocess over the same data. pandas is held
# below 3: evidently 0.7.23 imports a helper that pandas 3 removed.
#
# Usage: bash benchmarks/setup_evidently.sh   (from the repository root)
#        EVIDENTLY_VERSION=0.7.23 bash benchmarks/setup_evidently.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-evidently
VERSION="${EVIDENTLY_VERSION:-0.7.23}"
PYTHON="${PYTHON:-python3.11}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "evidently==${VERSION}" "pandas>=2.2,<3" pyarrow
"$VENV/bin/python" -c "import evidently, sys; print('evidently', evidently.__version__, 'in', sys.prefix)"
