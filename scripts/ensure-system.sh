#!/usr/bin/env bash
# Installs the system packages Trawl needs, when they are missing: Chromium for the browser
# engine; with `tests`, also PgBouncer (the integration tests run it), nginx (benchmarks
# serve their site with it) and docker-compose where a docker client lacks the compose
# plugin (a test runs `config` on docker-compose.yml). Packages come from apt where we can
# use it (root); without root, Chromium falls back to Playwright's own build.
set -euo pipefail
need=()
have_chromium() {
  { [ -n "${TRAWL_CHROMIUM_PATH:-}" ] && [ -x "${TRAWL_CHROMIUM_PATH}" ]; } ||
    command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1
}
have_chromium || need+=(chromium)
if [ "${1:-}" = "tests" ]; then
  command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || need+=(pgbouncer)
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
  # A docker client without the compose plugin: docker-compose checks docker-compose.yml.
  if command -v docker >/dev/null 2>&1 && ! docker compose version >/dev/null 2>&1; then
    command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
  fi
fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${need[*]} with apt-get" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  exit 0
fi
if [[ " ${need[*]} " == *" chromium "* ]]; then
  echo "no system chromium and no root: installing Playwright's Chromium" >&2
  .venv/bin/python -m playwright install chromium
fi
rest=("${need[@]/chromium/}")
if [ -n "${rest[*]// /}" ]; then
  echo "missing system packages: ${rest[*]} (install them, e.g. apt-get install ${rest[*]})" >&2
  exit 1
fi
