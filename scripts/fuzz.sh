#!/usr/bin/env bash
# A short run of every fuzz target in fuzz/ (cargo-fuzz, libFuzzer), as CI runs it.
#
#   scripts/fuzz.sh                 # every target, FUZZ_SECONDS (default 30) each
#   scripts/fuzz.sh money cursor    # only these targets
#
# Settings (environment): FUZZ_SECONDS per target (default 30); FUZZ_JOBS targets at once
# (default 2); FUZZ_BUILD=dev|release (default dev: an optimized build of the router's
# dependency tree with libFuzzer's instrumentation takes far longer than CI has, see
# README "Fuzzing").
#
# Installs what it needs when missing: cargo-fuzz (`cargo install cargo-fuzz --locked`),
# the nightly toolchain (if it cannot be fetched, stable with RUSTC_BOOTSTRAP=1 takes the
# -Z flags), and a C++ compiler for libFuzzer. Each target fuzzes a copy of its committed
# seed corpus (fuzz/corpus/<target>), so the seeds never change. Prints one line per target
# with the executions libFuzzer reports (-print_final_stats=1) and exits non-zero if any
# target crashed, leaked or hung; the input that did it is kept in fuzz/artifacts/<target>/.
set -uo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-30}"
jobs="${FUZZ_JOBS:-2}"
build="${FUZZ_BUILD:-dev}"
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi

all_targets=(money lead_json ping_json bulk_csv buyer_bid buyer_post journal_record checkpoint config_toml cursor
  billing_query buyer_reply_rules)
if [ "$#" -gt 0 ]; then targets=("$@"); else targets=("${all_targets[@]}"); fi

# --- toolchain and tools -----------------------------------------------------------------
if rustup run nightly rustc --version >/dev/null 2>&1 \
  || rustup toolchain install nightly --profile minimal >/dev/null 2>&1; then
  export RUSTUP_TOOLCHAIN=nightly
else
  echo "nightly toolchain not available: building on stable with RUSTC_BOOTSTRAP=1"
  export RUSTC_BOOTSTRAP=1
fi
if ! command -v c++ >/dev/null 2>&1; then
  echo "installing g++ (Debian package) to build libFuzzer"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends g++ >/dev/null \
    || { echo "could not install g++" >&2; exit 1; }
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet || { echo "could not install cargo-fuzz" >&2; exit 1; }
fi

# --- build once --------------------------------------------------------------------------
case "$build" in
  dev) build_flags=(--dev) profile=debug ;;
  release) build_flags=(-O) profile=release ;;
  *) echo "FUZZ_BUILD is dev or release, not $build" >&2; exit 2 ;;
esac
triple="$(rustc -vV | sed -n 's/^host: //p')"
# The instrumented build has flags of its own: it always goes to fuzz/target, never into a
# CARGO_TARGET_DIR shared with the main build.
unset CARGO_TARGET_DIR
echo "== building fuzz targets ($build, $(rustc --version))"
started=$SECONDS
(cd fuzz && cargo fuzz build "${build_flags[@]}" --sanitizer none) || { echo "== fuzz build FAILED" >&2; exit 1; }
echo "   built in $((SECONDS - started)) s"

# --- run ---------------------------------------------------------------------------------
bin_dir="fuzz/target/$triple/$profile"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# One target: fuzzes a copy of its seeds; the log is $work/<target>.log, the exit code
# $work/<target>.rc. -entropic=0: in runs this short, the entropic scheduler's per-feature
# bookkeeping costs more than it finds (measured: 2 to 3 times fewer executions and fewer
# new inputs for the JSON, TOML and journal targets).
run_target() {
  local target=$1
  mkdir -p "$work/corpus/$target" "fuzz/artifacts/$target"
  cp -r "fuzz/corpus/$target/." "$work/corpus/$target/" 2>/dev/null
  "$bin_dir/$target" "$work/corpus/$target" \
    -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 -entropic=0 \
    -artifact_prefix="fuzz/artifacts/$target/" >"$work/$target.log" 2>&1
  echo $? >"$work/$target.rc"
}

for target in "${targets[@]}"; do
  if [ ! -x "$bin_dir/$target" ]; then
    echo "no fuzz target $target; the targets are: ${all_targets[*]}" >&2
    exit 2
  fi
done
echo "== fuzzing ${#targets[@]} targets, $seconds s each, $jobs at once"
started=$SECONDS
running=0
for target in "${targets[@]}"; do
  run_target "$target" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n
    running=$((running - 1))
  fi
done
wait

failed=()
for target in "${targets[@]}"; do
  log="$work/$target.log"
  rc="$(cat "$work/$target.rc" 2>/dev/null || echo 1)"
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  if [ "$rc" = 0 ]; then
    printf '%-16s %10s executions in %s s: ok\n' "$target" "${execs:-?}" "$seconds"
  else
    artifact="$(grep -o "Test unit written to .*" "$log" | tail -1 | sed 's/^Test unit written to //')"
    printf '%-16s %10s executions: FAILED (exit %s) %s\n' "$target" "${execs:-?}" "$rc" \
      "${artifact:+input kept in $artifact}"
    sed 's/^/    /' "$log" | grep -v '^    #[0-9]' | tail -40
    failed+=("$target")
  fi
done
echo "   fuzzed in $((SECONDS - started)) s"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "== fuzzing FAILED: ${failed[*]} (reproduce: cd fuzz && cargo +nightly fuzz run <target> <input>)"
  exit 1
fi
echo "== fuzzing passed"
