#!/usr/bin/env bash
# The Prefect tier (tests/prefect, `-m prefect`) needs a Prefect 3 server and a runner serving
# the test flows: install Prefect from PyPI into its own environment, .prefect-venv/, kept out
# of the provider's runtime dependencies (Prefect pins its own pydantic, fastapi, sqlalchemy…).
# Idempotent: a stamp records the installed version.
set -euo pipefail
cd "$(dirname "$0")/../.."
PREFECT_VERSION=${JOBSERVICE_PREFECT_VERSION:-3.9.1}
PYTHON=${PYTHON:-python3}
VENV=.prefect-venv
stamp="$VENV/.prefect-installed"

if [ -x "$VENV/bin/prefect" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$PREFECT_VERSION" ]; then
    echo "40-prefect: prefect $PREFECT_VERSION already in $VENV"
    exit 0
fi
start=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check uv
"$VENV/bin/python" -m uv pip install --quiet -p "$VENV/bin/python" "prefect==$PREFECT_VERSION"
"$VENV/bin/prefect" --version
echo "$PREFECT_VERSION" > "$stamp"
echo "40-prefect: installed prefect $PREFECT_VERSION into $VENV in $(( $(date +%s) - start ))s"
