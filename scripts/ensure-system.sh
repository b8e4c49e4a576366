#!/usr/bin/env bash
# Installs the system packages Trawl's browser engine and tests need, when they are missing.
# Chromium comes from the distribution where we can use apt (root); otherwise Playwright's
# own build is fetched with `playwright install chromium`.
set -euo pipefail
if [ -n "${TRAWL_CHROMIUM_PATH:-}" ] && [ -x "${TRAWL_CHROMIUM_PATH}" ]; then exit 0; fi
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing chromium with apt-get" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  exit 0
fi
echo "no system chromium and no root: installing Playwright's Chromium" >&2
.venv/bin/python -m playwright install chromium
