#!/usr/bin/env bash
# Same-run comparison on this machine: the HTTP-only baseline (loadtest echo) against
# leadrouter answering direct posts (POST /v1/leads), each closed loop, concurrency 32.
#
# leadrouter runs a generated market: vertical `solar` (model bidding, tmax 1000 ms), one
# supplier, 10 prepaid buyers with large balances, 10 fixed-price campaigns around Munich
# (DE, 50 km of 80331) that deliver synchronously to `loadtest mock-buyer` (latency 0).
#
# BASELINE, when set, is another leadrouter binary (an earlier commit's release build): it
# runs beside this one on its own ports and data dir, and each round measures the echo,
# then BASELINE, then this build, one after another, so a change is compared with what
# it replaces in the same run. ROUNDS (1) repeats that sequence.
#
# Exits non-zero when leadrouter answered any 5xx or sold nothing. Everything it starts is
# stopped on exit. Environment: CONCURRENCY (32), DURATION (15s), WARMUP (2s),
# CARGO_TARGET_DIR (target), BASELINE, ROUNDS (1).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
CONCURRENCY="${CONCURRENCY:-32}"
DURATION="${DURATION:-15s}"
WARMUP="${WARMUP:-2s}"
ROUNDS="${ROUNDS:-1}"
BASELINE="${BASELINE:-}"

BUYER_ADDR=127.0.0.1:19200
LEADROUTER_ADDR=127.0.0.1:18080
OPS_ADDR=127.0.0.1:19090
ECHO_ADDR=127.0.0.1:18081
BASELINE_ADDR=127.0.0.1:18082
BASELINE_OPS_ADDR=127.0.0.1:19091
SUPPLIER_KEY=loadtest-supplier-key-0001
BUYERS=10

WORK="$(mktemp -d -t leadrouter-loadtest.XXXXXX)"
PIDS=()
# shellcheck source=loadtest/lib.sh
source "$ROOT/loadtest/lib.sh"
cleanup() {
    stop_all
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

command -v jq >/dev/null || { echo "needs jq (apt-get install jq) to read the JSON report" >&2; exit 2; }

build_release


CONFIG="$WORK/leadrouter.toml"
write_direct_market "$CONFIG" "loadtest/direct-post.sh"

MOCK_CMD=("$LOADTEST" mock-buyer --listen "$BUYER_ADDR" --latency-ms 0)
SERVER_CMD=("$LEADROUTER" --config "$CONFIG" --listen "$LEADROUTER_ADDR" --ops-listen "$OPS_ADDR"
    --data-dir "$WORK/data" --admin-token loadtest-admin-token-0001)
ECHO_CMD=("$LOADTEST" echo --listen "$ECHO_ADDR")
RUN_ARGS=(--mode closed --concurrency "$CONCURRENCY" --duration "$DURATION" --warmup "$WARMUP")
ECHO_RUN=("$LOADTEST" run --target "http://$ECHO_ADDR" --mix direct "${RUN_ARGS[@]}"
    --json "$WORK/echo.json")
LEADROUTER_RUN=("$LOADTEST" run --target "http://$LEADROUTER_ADDR" --key "$SUPPLIER_KEY" --mix direct
    --vertical solar --zip 80331 --country DE "${RUN_ARGS[@]}" --json "$WORK/leadrouter.json")
if [ -n "$BASELINE" ]; then
    [ -x "$BASELINE" ] || { echo "BASELINE=$BASELINE is not an executable" >&2; exit 2; }
    BASELINE_CMD=("$BASELINE" --config "$CONFIG" --listen "$BASELINE_ADDR" --ops-listen "$BASELINE_OPS_ADDR"
        --grpc-listen 127.0.0.1:50152
        --data-dir "$WORK/baseline-data" --admin-token loadtest-admin-token-0001)
    BASELINE_RUN=("$LOADTEST" run --target "http://$BASELINE_ADDR" --key "$SUPPLIER_KEY" --mix direct
        --vertical solar --zip 80331 --country DE "${RUN_ARGS[@]}" --json "$WORK/baseline.json")
    "${BASELINE_CMD[@]}" >"$WORK/baseline.log" 2>&1 &
    PIDS+=($!)
fi

"${MOCK_CMD[@]}" 2>"$WORK/mock-buyer.log" &
PIDS+=($!)
"${SERVER_CMD[@]}" >"$WORK/leadrouter.log" 2>&1 &
PIDS+=($!)
"${ECHO_CMD[@]}" 2>"$WORK/echo.log" &
PIDS+=($!)
wait_for_port "$BUYER_ADDR"
wait_for_port "$LEADROUTER_ADDR" || { cat "$WORK/leadrouter.log" >&2; exit 1; }
wait_for_port "$ECHO_ADDR"
if [ -n "$BASELINE" ]; then
    wait_for_port "$BASELINE_ADDR" || { cat "$WORK/baseline.log" >&2; exit 1; }
fi

echo
machine
echo "== commands"
show "${MOCK_CMD[@]}"
show "${SERVER_CMD[@]}"
show "${ECHO_CMD[@]}"
show "${ECHO_RUN[@]}"
show "${LEADROUTER_RUN[@]}"
if [ -n "$BASELINE" ]; then
    show "${BASELINE_CMD[@]}"
    show "${BASELINE_RUN[@]}"
fi
echo "   (config: $CONFIG, shown below)"
head -n 40 "$CONFIG" | sed 's/^/   | /'
echo "   | ... ($BUYERS buyers, campaigns and topups in all)"

for round in $(seq 1 "$ROUNDS"); do
    echo
    echo "== round $round: baseline: loadtest echo (HTTP alone)"
    "${ECHO_RUN[@]}" 2>/dev/null
    if [ -n "$BASELINE" ]; then
        echo
        echo "== round $round: BASELINE $BASELINE: direct posts, sync webhook delivery to mock-buyer"
        "${BASELINE_RUN[@]}" 2>/dev/null
    fi
    echo
    echo "== round $round: leadrouter: direct posts, sync webhook delivery to mock-buyer"
    "${LEADROUTER_RUN[@]}" 2>/dev/null
done

# Read the verdict from the JSON report: any 5xx, or nothing sold, is a failure.
read -r FIVE_XX SOLD < <(jq -r '[(.phases | map(.statuses["5xx"]) | add), (.phases | map(.outcomes.sold) | add)] | @tsv' "$WORK/leadrouter.json")
echo
echo "== mock buyer"
kill -TERM "${PIDS[0]}" 2>/dev/null || true
wait "${PIDS[0]}" 2>/dev/null || true
tail -n 1 "$WORK/mock-buyer.log"
STATUS=0
if [ "$FIVE_XX" != "0" ]; then
    echo "FAIL: leadrouter answered $FIVE_XX 5xx" >&2
    STATUS=1
fi
if [ "$SOLD" = "0" ]; then
    echo "FAIL: leadrouter sold nothing" >&2
    STATUS=1
fi
[ "$STATUS" = 0 ] && echo "OK: no 5xx, $SOLD leads sold"
exit "$STATUS"
