#!/usr/bin/env bash
# The browser tests (tests/deployment, `-m browser`) drive Debian's chromium through Playwright
# (Playwright itself comes with the test extra; its own browser downloads are not used).
# Idempotent: installs only when /usr/bin/chromium is missing. Needs root or sudo.
set -euo pipefail
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
