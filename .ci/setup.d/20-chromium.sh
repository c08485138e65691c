#!/usr/bin/env bash
# The browser tests (tests/deployment, `-m browser`) drive Debian's chromium through Playwright:
# Playwright (the provider's `browser` extra) goes into the dev venv (`./dev extra browser`; its own
# browser downloads are not used), chromium comes from apt. Idempotent: chromium is installed only
# when /usr/bin/chromium is missing (needs root or sudo then); the extra is a no-op once present.
set -euo pipefail
cd "$(dirname "$0")/../.."
start=$(date +%s)
./dev extra browser
echo "20-chromium: the browser extra (playwright) is in the dev venv ($(( $(date +%s) - start ))s)"
if [ -x /usr/bin/chromium ]; then
    echo "20-chromium: $(/usr/bin/chromium --version 2>/dev/null || echo chromium) already installed"
    exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
start=$(date +%s)
$SUDO apt-get update
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver
echo "20-chromium: installed $(/usr/bin/chromium --version 2>/dev/null) in $(( $(date +%s) - start ))s"
