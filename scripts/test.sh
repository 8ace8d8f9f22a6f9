#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this).
# Installs what the tests need when it is missing (promtool for the metrics lint,
# redis-server and redis-cli for the Redis and Redis Cluster tests, chromium and
# chromedriver for the browser tests), then runs every step even when one fails: format
# check, clippy with warnings as errors, every test of the workspace (the browser tests
# among them), and a short run of every fuzz target (scripts/fuzz.sh, which installs
# cargo-fuzz); the failures are listed at the end and the exit code is non-zero if there
# was any.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi

# Installs Debian packages without starting their services: the tests start their own
# servers on free ports, and a developer's own Redis or Prometheus is never touched.
install_quietly() {
  local policy=/usr/sbin/policy-rc.d placed=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null && $SUDO chmod +x "$policy" && placed=1
  fi
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  local status=$?
  if [ "$placed" = 1 ]; then $SUDO rm -f "$policy"; fi
  return $status
}

if ! command -v promtool >/dev/null 2>&1; then
  echo "installing promtool (Debian package prometheus) for the metrics lint"
  install_quietly prometheus || { echo "could not install prometheus" >&2; exit 1; }
fi

if ! command -v redis-server >/dev/null 2>&1; then
  echo "installing redis-server (Debian package) for the Redis integration tests"
  install_quietly redis-server || { echo "could not install redis-server" >&2; exit 1; }
fi

if ! command -v redis-cli >/dev/null 2>&1; then
  echo "installing redis-cli (Debian package redis-tools) to create the test Redis Clusters"
  install_quietly redis-tools || { echo "could not install redis-tools" >&2; exit 1; }
fi

# The browser tests (tests/browser) drive a headless Chromium through chromedriver: about
# 11 s to install on a fresh machine (26 packages, ~125 MB downloaded, recommends left out).
if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
  echo "installing chromium and chromium-driver (Debian packages) for the browser tests"
  install_quietly chromium chromium-driver || { echo "could not install chromium" >&2; exit 1; }
fi

failed=()
step() {
  echo "== $*"
  "$@" || failed+=("$*")
}
step cargo fmt --all -- --check
step cargo clippy --workspace --all-targets --quiet -- -D warnings
step cargo test --workspace --no-fail-fast
# A short run of every fuzz target (README "Fuzzing"): 10 s each, two at once, after an
# unoptimized instrumented build (~5 min on two cores); FUZZ_SECONDS=0 skips it.
if [ "${FUZZ_SECONDS:-10}" != 0 ]; then
  FUZZ_SECONDS="${FUZZ_SECONDS:-10}" step scripts/fuzz.sh
fi

if [ "${#failed[@]}" -gt 0 ]; then
  echo "== FAILED:"
  printf '   %s\n' "${failed[@]}"
  exit 1
fi
echo "== all passed"
