#!/usr/bin/env bash
# The Ray tier (tests/ray, `-m ray`) needs the Ray CLI: install Ray from PyPI into its own
# environment, .ray-venv/, kept out of the provider's runtime dependencies (Ray is ~350 MB
# and pins its own aiohttp/pydantic). Idempotent: a stamp records the installed version.
set -euo pipefail
cd "$(dirname "$0")/../.."
RAY_VERSION=${JOBSERVICE_RAY_VERSION:-2.60.0}
PYTHON=${PYTHON:-python3}
VENV=.ray-venv
stamp="$VENV/.ray-installed"

if [ -x "$VENV/bin/ray" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$RAY_VERSION" ]; then
    echo "30-ray: ray $RAY_VERSION already in $VENV"
    exit 0
fi
start=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check uv
"$VENV/bin/python" -m uv pip install --quiet -p "$VENV/bin/python" "ray[default]==$RAY_VERSION"
"$VENV/bin/ray" --version
echo "$RAY_VERSION" > "$stamp"
echo "30-ray: installed ray $RAY_VERSION into $VENV in $(( $(date +%s) - start ))s"
