#!/usr/bin/env bash
# Same-run comparison on this machine: the HTTP-only baseline (loadtest echo) against
# leadrouter answering direct posts (POST /v1/leads), each closed loop, concurrency 32.
#
# leadrouter runs a generated market: vertical `solar` (model bidding, tmax 1000 ms), one
# supplier, 10 prepaid buyers with large balances, 10 fixed-price campaigns around Munich
# (DE, 50 km of 80331) that deliver synchronously to `loadtest mock-buyer` (latency 0).
#
# FORMATS (default `native`) names the buyers' formats to measure, e.g. "native json": one
# leadrouter per format, each on a market whose campaigns speak that format (DESIGN §5.1;
# lib.sh's direct_delivery: `native` is §5's protocol, `json`, `form`, `xml` and `template`
# render the lead by a `delivery.request` and read the mock buyer's answer by JSONPath
# rules, accept `$.accepted` and reference `$.id`; `answer` sends the native body with
# those rules only). The first format listens where a
# single leadrouter always did (127.0.0.1:18080). When any format is templated the mock
# buyer runs with `--reference` (every acceptance `{"accepted":true,"id":"mb-<n>"}`), so
# native and templated buyers get the same answer bodies in that run.
#
# `pull` in FORMATS is a market whose campaigns deliver by pull (sold on assignment and
# journaled, no webhook): the sale without the outbound exchange.
#
# BASELINE (or BEFORE_BIN, the same), when set, is another leadrouter binary (an earlier
# commit's release build): one runs beside each of this build's leadrouters, on the same
# format's market, its own ports and data dir, and each round measures the echo, then per
# format BASELINE and this build back to back (odd rounds BASELINE first, even rounds this
# build first), so a change is compared with what it replaces in the same run. ROUNDS (1)
# repeats that sequence. The load average is printed before each measured run, and a summary table of
# every run closes the output. Beside each leadrouter run stands the CPU time (user +
# system, /proc/<pid>/stat) that leadrouter process used per sale, warm-up included
# (sales counted by its leadrouter_sales_total): unlike sales/s, it does not move with
# what else the machine is running, so it tells what a buyer format costs leadrouter.
#
# Exits non-zero when any leadrouter answered any 5xx or sold nothing (over all rounds).
# Everything it starts is stopped on exit. Environment: CONCURRENCY (32), DURATION (15s),
# WARMUP (2s), CARGO_TARGET_DIR (target), BASELINE, ROUNDS (1), FORMATS (native),
# OUT_DIR (keep the JSON reports there; default: a temporary directory), NO_BUILD=1 (use
# the release binaries as they are).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
CONCURRENCY="${CONCURRENCY:-32}"
DURATION="${DURATION:-15s}"
WARMUP="${WARMUP:-2s}"
ROUNDS="${ROUNDS:-1}"
BASELINE="${BASELINE:-${BEFORE_BIN:-}}"
FORMATS="${FORMATS:-native}"

BUYER_ADDR=127.0.0.1:19200
LEADROUTER_ADDR=127.0.0.1:18080
OPS_ADDR=127.0.0.1:19090
ECHO_ADDR=127.0.0.1:18081
BASELINE_ADDR=127.0.0.1:18082
BASELINE_OPS_ADDR=127.0.0.1:19091
SUPPLIER_KEY=loadtest-supplier-key-0001
BUYERS=10

read -r -a FORMAT_LIST <<<"$FORMATS"
[ "${#FORMAT_LIST[@]}" -gt 0 ] || { echo "FORMATS is empty" >&2; exit 2; }
[ "$(printf '%s\n' "${FORMAT_LIST[@]}" | sort | uniq -d)" = "" ] || { echo "FORMATS names a format twice: $FORMATS" >&2; exit 2; }

WORK="$(mktemp -d -t leadrouter-loadtest.XXXXXX)"
OUT="${OUT_DIR:-$WORK}"
mkdir -p "$OUT"
PIDS=()
# shellcheck source=loadtest/lib.sh
source "$ROOT/loadtest/lib.sh"
cleanup() {
    stop_all
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

command -v jq >/dev/null || { echo "needs jq (apt-get install jq) to read the JSON report" >&2; exit 2; }
command -v curl >/dev/null || { echo "needs curl (apt-get install curl) to read leadrouter's /metrics" >&2; exit 2; }

# Markets first: an unknown format stops the script before anything is built.
CONFIG="$WORK/leadrouter.toml"
write_direct_market "$CONFIG" "loadtest/direct-post.sh"
TEMPLATED=0
declare -A FORMAT_CONFIG
for format in "${FORMAT_LIST[@]}"; do
    if [ "$format" = native ]; then
        FORMAT_CONFIG[$format]="$CONFIG"
    else
        FORMAT_CONFIG[$format]="$WORK/leadrouter-$format.toml"
        write_direct_market "${FORMAT_CONFIG[$format]}" "loadtest/direct-post.sh (FORMATS: $format)" "$format"
        [ "$format" = pull ] || TEMPLATED=1
    fi
done

build_release

MOCK_CMD=("$LOADTEST" mock-buyer --listen "$BUYER_ADDR" --latency-ms 0)
if [ "$TEMPLATED" = 1 ]; then
    MOCK_CMD+=(--reference)
fi
ECHO_CMD=("$LOADTEST" echo --listen "$ECHO_ADDR")
RUN_ARGS=(--mode closed --concurrency "$CONCURRENCY" --duration "$DURATION" --warmup "$WARMUP")
ECHO_RUN=("$LOADTEST" run --target "http://$ECHO_ADDR" --mix direct "${RUN_ARGS[@]}")
# Sets LR_RUN to the `loadtest run` that posts leads to the leadrouter on $1, writing its
# JSON report to $2.
leadrouter_run() {
    LR_RUN=("$LOADTEST" run --target "http://$1" --key "$SUPPLIER_KEY" --mix direct
        --vertical solar --zip 80331 --country DE "${RUN_ARGS[@]}" --json "$2")
}

"${MOCK_CMD[@]}" 2>"$WORK/mock-buyer.log" &
MOCK_PID=$!
PIDS+=("$MOCK_PID")
"${ECHO_CMD[@]}" 2>"$WORK/echo.log" &
PIDS+=($!)

# One leadrouter per format: the first where a lone leadrouter always listened (18080,
# ops 19090, gRPC on its default), the next ones on 18083.., ops 19092.., gRPC 50153...
declare -A SERVER_ADDR SERVER_OPS SERVER_PID
SERVER_CMDS=()
i=0
for format in "${FORMAT_LIST[@]}"; do
    if [ "$i" = 0 ]; then
        addr="$LEADROUTER_ADDR"
        ops="$OPS_ADDR"
        extra=()
        data="$WORK/data"
    else
        addr="127.0.0.1:$((18083 + i - 1))"
        ops="127.0.0.1:$((19092 + i - 1))"
        extra=(--grpc-listen "127.0.0.1:$((50153 + i - 1))")
        data="$WORK/data-$format"
    fi
    SERVER_ADDR[$format]="$addr"
    SERVER_OPS[$format]="$ops"
    cmd=("$LEADROUTER" --config "${FORMAT_CONFIG[$format]}" --listen "$addr" --ops-listen "$ops" "${extra[@]}"
        --data-dir "$data" --admin-token loadtest-admin-token-0001)
    SERVER_CMDS+=("$(printf ' %q' "${cmd[@]}")")
    "${cmd[@]}" >"$WORK/leadrouter-$format.log" 2>&1 &
    SERVER_PID[$format]=$!
    PIDS+=($!)
    i=$((i + 1))
done
# BASELINE's leadrouters, one per format: the first on 18082 (ops 19091, gRPC 50152), the
# next ones on 18090.., ops 19100.., gRPC 50160...
BASELINE_CMDS=()
if [ -n "$BASELINE" ]; then
    [ -x "$BASELINE" ] || { echo "BASELINE=$BASELINE is not an executable" >&2; exit 2; }
    i=0
    for format in "${FORMAT_LIST[@]}"; do
        if [ "$i" = 0 ]; then
            addr="$BASELINE_ADDR"
            ops="$BASELINE_OPS_ADDR"
            grpc=127.0.0.1:50152
        else
            addr="127.0.0.1:$((18090 + i - 1))"
            ops="127.0.0.1:$((19100 + i - 1))"
            grpc="127.0.0.1:$((50160 + i - 1))"
        fi
        cmd=("$BASELINE" --config "${FORMAT_CONFIG[$format]}" --listen "$addr" --ops-listen "$ops"
            --grpc-listen "$grpc" --data-dir "$WORK/baseline-data-$format" --admin-token loadtest-admin-token-0001)
        BASELINE_CMDS+=("$(printf ' %q' "${cmd[@]}")")
        "${cmd[@]}" >"$WORK/baseline-$format.log" 2>&1 &
        SERVER_PID[baseline-$format]=$!
        SERVER_ADDR[baseline-$format]="$addr"
        SERVER_OPS[baseline-$format]="$ops"
        PIDS+=($!)
        i=$((i + 1))
    done
fi

wait_for_port "$BUYER_ADDR"
for format in "${FORMAT_LIST[@]}"; do
    wait_for_port "${SERVER_ADDR[$format]}" || { cat "$WORK/leadrouter-$format.log" >&2; exit 1; }
done
wait_for_port "$ECHO_ADDR"
if [ -n "$BASELINE" ]; then
    for format in "${FORMAT_LIST[@]}"; do
        wait_for_port "${SERVER_ADDR[baseline-$format]}" || { cat "$WORK/baseline-$format.log" >&2; exit 1; }
    done
fi

echo
machine
echo "== commands"
show "${MOCK_CMD[@]}"
i=0
for format in "${FORMAT_LIST[@]}"; do
    echo "   # leadrouter, buyers' format $format"
    echo "  ${SERVER_CMDS[$i]}"
    i=$((i + 1))
done
show "${ECHO_CMD[@]}"
show "${ECHO_RUN[@]}" --json "$OUT/echo-r<round>.json"
for format in "${FORMAT_LIST[@]}"; do
    leadrouter_run "${SERVER_ADDR[$format]}" "$OUT/leadrouter-$format-r<round>.json"
    show "${LR_RUN[@]}"
done
if [ -n "$BASELINE" ]; then
    i=0
    for format in "${FORMAT_LIST[@]}"; do
        echo "   # BASELINE leadrouter, buyers' format $format"
        echo "  ${BASELINE_CMDS[$i]}"
        leadrouter_run "${SERVER_ADDR[baseline-$format]}" "$OUT/baseline-$format-r<round>.json"
        show "${LR_RUN[@]}"
        i=$((i + 1))
    done
fi
echo "   (config: $CONFIG, shown below)"
head -n 40 "$CONFIG" | sed 's/^/   | /'
echo "   | ... ($BUYERS buyers, campaigns and topups in all)"
for format in "${FORMAT_LIST[@]}"; do
    [ "$format" = native ] && continue
    echo "   (config for format $format: ${FORMAT_CONFIG[$format]}, the first campaign's delivery:)"
    awk '/^\[\[topups\]\]/ && shown { exit } /^\[campaigns\.delivery\]/ { shown = 1 } shown { print "   | " $0 }' \
        "${FORMAT_CONFIG[$format]}"
done

load() {
    echo "   (load average before the run: $(cut -d' ' -f1-3 /proc/loadavg))"
}

TICKS_PER_S="$(getconf CLK_TCK)"
# CPU time (user + system) process $1 has used so far, in clock ticks.
cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}
# The sales the leadrouter whose ops listener is $1 has settled so far.
sales_so_far() {
    curl -sf "http://$1/metrics" | awk '/^leadrouter_sales_total/ { s += $NF } END { printf "%d\n", s }'
}
# Runs LR_RUN against the leadrouter named $1 (a format or `baseline`), then prints and
# writes to file $2 the CPU time it used per sale over the run, warm-up included, in µs.
measured_run() {
    local pid="${SERVER_PID[$1]}" ops="${SERVER_OPS[$1]}" ticks sales cpu_us
    ticks="$(cpu_ticks "$pid")"
    sales="$(sales_so_far "$ops")"
    "${LR_RUN[@]}" 2>/dev/null
    ticks=$(($(cpu_ticks "$pid") - ticks))
    sales=$(($(sales_so_far "$ops") - sales))
    cpu_us="$(awk -v t="$ticks" -v hz="$TICKS_PER_S" -v n="$sales" 'BEGIN { if (n > 0) printf "%.1f", t * 1e6 / hz / n; else print "-" }')"
    echo "leadrouter CPU (user + system): $(awk -v t="$ticks" -v hz="$TICKS_PER_S" 'BEGIN { printf "%.2f", t / hz }') s for $sales sales (warm-up included): $cpu_us µs per sale"
    echo "$cpu_us" >"$2"
}

RUNS=()
for round in $(seq 1 "$ROUNDS"); do
    echo
    echo "== round $round: baseline: loadtest echo (HTTP alone)"
    load
    "${ECHO_RUN[@]}" --json "$OUT/echo-r$round.json" 2>/dev/null
    RUNS+=("$round echo $OUT/echo-r$round.json")
    for format in "${FORMAT_LIST[@]}"; do
        order=(this)
        if [ -n "$BASELINE" ]; then
            if [ $((round % 2)) = 1 ]; then order=(baseline this); else order=(this baseline); fi
        fi
        for which in "${order[@]}"; do
            echo
            if [ "$which" = baseline ]; then
                echo "== round $round: BASELINE $BASELINE: direct posts, buyers' format $format"
                name="baseline-$format"
            else
                echo "== round $round: leadrouter: direct posts, buyers' format $format"
                name="$format"
            fi
            load
            leadrouter_run "${SERVER_ADDR[$name]}" "$OUT/leadrouter-$name-r$round.json"
            measured_run "$name" "$OUT/leadrouter-$name-r$round.cpu"
            RUNS+=("$round $name $OUT/leadrouter-$name-r$round.json")
        done
    done
done

echo
echo "== summary (closed loop, concurrency $CONCURRENCY, $DURATION after $WARMUP warm-up)"
printf '%-5s %-16s %10s %10s %8s %8s %9s %8s %5s %10s %12s %7s\n' \
    round target requests req/s p50_ms p99_ms p99.9_ms max_ms 5xx sold cpu_us/sale x_echo
# x_echo: req/s over the same round's echo req/s.
echo_rate=
for run in "${RUNS[@]}"; do
    read -r round target file <<<"$run"
    cpu=-
    [ -f "${file%.json}.cpu" ] && cpu="$(cat "${file%.json}.cpu")"
    [ "$target" = echo ] && echo_rate="$(jq -r '.phases[0].throughput_per_s' "$file")"
    jq -r --arg round "$round" --arg target "$target" --arg cpu "$cpu" \
        '.phases[0] as $p | [$round, $target, $p.requests, $p.throughput_per_s, $p.latency.p50_ms, $p.latency.p99_ms,
          $p.latency["p99.9_ms"], $p.latency.max_ms, $p.statuses["5xx"], $p.outcomes.sold, $cpu] | @tsv' "$file" |
        awk -F'\t' -v echo_rate="$echo_rate" '{ ratio = (echo_rate > 0) ? sprintf("%.3f", $4 / echo_rate) : "-"
            printf "%-5s %-16s %10s %10s %8s %8s %9s %8s %5s %10s %12s %7s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, ratio }'
done

echo
echo "== mock buyer"
kill -TERM "$MOCK_PID" 2>/dev/null || true
wait "$MOCK_PID" 2>/dev/null || true
tail -n 1 "$WORK/mock-buyer.log"

# The verdict, from the JSON reports of every round: any 5xx, or nothing sold, fails.
STATUS=0
for format in "${FORMAT_LIST[@]}"; do
    reports=()
    for round in $(seq 1 "$ROUNDS"); do
        reports+=("$OUT/leadrouter-$format-r$round.json")
    done
    read -r FIVE_XX SOLD < <(jq -s -r '[(map(.phases | map(.statuses["5xx"]) | add) | add),
        (map(.phases | map(.outcomes.sold) | add) | add)] | @tsv' "${reports[@]}")
    failed=0
    if [ "$FIVE_XX" != "0" ]; then
        echo "FAIL: leadrouter ($format buyers) answered $FIVE_XX 5xx" >&2
        failed=1
    fi
    if [ "$SOLD" = "0" ]; then
        echo "FAIL: leadrouter ($format buyers) sold nothing" >&2
        failed=1
    fi
    if [ "$failed" = 0 ]; then
        echo "OK ($format buyers): no 5xx, $SOLD leads sold"
    else
        STATUS=1
    fi
done
exit "$STATUS"
