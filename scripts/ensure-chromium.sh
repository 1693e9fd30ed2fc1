#!/usr/bin/env bash
# Make sure Debian's Chromium is at /usr/bin/chromium for the Playwright browser tests.
#
# The browser comes only from Debian's package archive: `playwright install` and any other
# download of a browser build fail on our machines (no network but package registries),
# so we never try them.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
    exit 0
fi

echo "ensure-chromium: $CHROMIUM is missing; installing Debian's chromium package" >&2

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    # -n: never wait for a password prompt (CI has no stdin); fail clearly instead.
    SUDO=(sudo -n)
else
    echo "ensure-chromium: not root and no sudo; install it yourself with:" >&2
    echo "    apt-get update && apt-get install -y chromium" >&2
    exit 1
fi

"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

if [ ! -x "$CHROMIUM" ]; then
    echo "ensure-chromium: apt-get finished but $CHROMIUM is still missing" >&2
    exit 1
fi
"$CHROMIUM" --version 2>/dev/null >&2 || true
