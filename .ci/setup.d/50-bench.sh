#!/usr/bin/env bash
# The benchmark's harness test (tests/bench, `-m bench`) runs bench/run_all.py, which compares against
# Airflow's HTTP and Amazon providers and draws a plot: the provider's `bench` extra, installed into
# the dev venv only to run the benchmark (`./dev test` alone does not install it, and that test then
# skips saying so). Idempotent: a no-op once the extra is present.
set -euo pipefail
cd "$(dirname "$0")/../.."
start=$(date +%s)
./dev extra bench
echo "50-bench: the bench extra is in the dev venv ($(( $(date +%s) - start ))s)"
