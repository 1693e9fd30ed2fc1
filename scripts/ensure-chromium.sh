#!/usr/bin/env bash
# Make sure Debian's Chromium is at /usr/bin/chromium for the Playwright browser tests, with a
# Devanagari font (fonts-lohit-deva) so the Hindi pages render as text, not empty boxes.
# Idempotent: apt-get runs only when the browser or the font is missing.
#
# The browser comes only from Debian's package archive: `playwright install` and any other
# download of a browser build fail on our machines (no network but package registries),
# so we never try them.
set -euo pipefail

CHROMIUM=/usr/bin/chromium
# Any installed font covering Hindi will do (fonts-noto-core has one too); we install the
# small Lohit one when there is none.
DEVANAGARI_FONT=fonts-lohit-deva

has_devanagari_font() {
    if command -v fc-list >/dev/null 2>&1; then
        [ -n "$(fc-list ':lang=hi' family 2>/dev/null)" ]
    else
        dpkg-query -W -f='${Status}' "$DEVANAGARI_FONT" 2>/dev/null | grep -q "ok installed" ||
            dpkg-query -W -f='${Status}' fonts-noto-core 2>/dev/null | grep -q "ok installed"
    fi
}

PACKAGES=()
[ -x "$CHROMIUM" ] || PACKAGES+=(chromium)
has_devanagari_font || PACKAGES+=("$DEVANAGARI_FONT")

if [ ${#PACKAGES[@]} -eq 0 ]; then
    exit 0
fi

echo "ensure-chromium: missing ${PACKAGES[*]}; installing from Debian's archive" >&2

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    # -n: never wait for a password prompt (CI has no stdin); fail clearly instead.
    SUDO=(sudo -n)
else
    echo "ensure-chromium: not root and no sudo; install it yourself with:" >&2
    echo "    apt-get update && apt-get install -y ${PACKAGES[*]}" >&2
    exit 1
fi

"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${PACKAGES[@]}"

if [ ! -x "$CHROMIUM" ]; then
    echo "ensure-chromium: apt-get finished but $CHROMIUM is still missing" >&2
    exit 1
fi
if ! has_devanagari_font; then
    echo "ensure-chromium: apt-get finished but no Devanagari font is installed" >&2
    exit 1
fi
"$CHROMIUM" --version 2>/dev/null >&2 || true
