#!/usr/bin/env bash
# Headless Chromium for the HTML statement test (it renders the statement and reads the totals back
# from the DOM).
#
#   scripts/chromium.sh install-if-missing   apt-get install chromium unless it is on PATH already.
#                                            Never fails: when apt cannot install it, the reason is
#                                            kept in target/chromium/not-installed and the test prints
#                                            NOT RUN with it.
#   scripts/chromium.sh path                 print the browser's path (exit 1 when none is installed)
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="$ROOT/target/chromium"

find_browser() {
  command -v chromium 2>/dev/null || command -v chromium-browser 2>/dev/null
}

case "${1:-}" in
  install-if-missing)
    mkdir -p "$STATE"
    if find_browser >/dev/null; then
      rm -f "$STATE/not-installed"
      exit 0
    fi
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo -n"; fi
    if { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium; } \
      > "$STATE/apt.log" 2>&1 && find_browser >/dev/null; then
      rm -f "$STATE/not-installed"
    else
      echo "apt-get install chromium failed: $(tail -n 1 "$STATE/apt.log")" > "$STATE/not-installed"
      cat "$STATE/not-installed" >&2
    fi
    exit 0
    ;;
  path)
    find_browser
    ;;
  *)
    echo "usage: $0 install-if-missing | path" >&2
    exit 2
    ;;
esac
