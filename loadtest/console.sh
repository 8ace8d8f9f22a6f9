#!/usr/bin/env bash
# Issue 16's figures in one run, on one release leadrouter: what the console's dashboard
# costs to serve, and what its live updates cost the router's throughput.
#
# The router runs direct-post.sh's market (lib.sh's write_direct_market: vertical `solar`,
# one supplier, 10 prepaid buyers, fixed-price campaigns delivering synchronously to
# `loadtest mock-buyer --latency-ms 0`). In order:
#
# 1. page time, fresh: `loadtest dashboards --sequential N` (SEQUENTIAL, 200): one operator
#    fetches /console N times back to back, then /console/live/dashboard N times, with the
#    router just started (a few seconds of activity samples, no sale yet).
# 2. a short priming run of posts (3 s), then a wait until the router has been up AGE
#    seconds (660: the dashboard reads the activity samples of the last 11 minutes, one a
#    second, so from then on it renders a full window; AGE=0 skips the wait).
# 3. page time, full window: the same sequential fetches again.
# 4. the live updates alone: the router's CPU time over IDLE_SPAN (60s) with nothing asked,
#    then over IDLE_SPAN with DASHBOARDS (10) dashboards polling and no posts, read from
#    every thread's /proc/<pid>/task/*/schedstat (nanoseconds): the difference per live
#    fetch is what one fragment costs the router.
# 5. ROUNDS (3) rounds of (a) direct posts, closed loop, CONCURRENCY 32, DURATION 15s after
#    WARMUP 2s, nobody on the console, and (b) the same with DASHBOARDS dashboards open
#    (`loadtest dashboards`, started just before the posts and open for WARMUP + DURATION):
#    odd rounds a then b, even rounds b then a, so a drift of the machine over the run
#    shows in the per-round ratios instead of leaning on one side. Each run also gets the
#    router's CPU time per sale (user + system from /proc/<pid>/stat over the whole run,
#    warm-up included, sales from its leadrouter_sales_total).
#
# The summary gives per run: sales, sales/s, the posts' p50/p99, CPU µs per sale, the load
# average before and after, and for b the live part's and the whole page's answers and
# p50/p99 (the page is loaded once per dashboard, so its n is DASHBOARDS per run); then per
# round the ratio b/a of sales/s and p99, and their mean over the rounds.
#
# Exits non-zero when the router answered any 5xx, sold nothing, or a dashboard saw an
# error (a failed sign-in, an answer that was not the page). Its own ports (18095, ops
# 19096, gRPC 50171, mock buyer 19220), so it can run beside direct-post.sh. Environment:
# CONCURRENCY, DURATION, WARMUP, ROUNDS, DASHBOARDS, SEQUENTIAL, AGE, IDLE_SPAN,
# CARGO_TARGET_DIR (target), OUT_DIR (keep the JSON reports; default: a temporary
# directory), NO_BUILD=1 (use the release binaries as they are). A short trial:
# `AGE=0 ROUNDS=1 DURATION=3s WARMUP=1s IDLE_SPAN=4s SEQUENTIAL=20 loadtest/console.sh`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
CONCURRENCY="${CONCURRENCY:-32}"
DURATION="${DURATION:-15s}"
WARMUP="${WARMUP:-2s}"
ROUNDS="${ROUNDS:-3}"
DASHBOARDS="${DASHBOARDS:-10}"
SEQUENTIAL="${SEQUENTIAL:-200}"
AGE="${AGE:-660}"
IDLE_SPAN="${IDLE_SPAN:-60s}"

BUYER_ADDR=127.0.0.1:19220
LEADROUTER_ADDR=127.0.0.1:18095
OPS_ADDR=127.0.0.1:19096
GRPC_ADDR=127.0.0.1:50171
SUPPLIER_KEY=loadtest-supplier-key-0001
ADMIN_TOKEN=loadtest-admin-token-0001
BUYERS=10

WORK="$(mktemp -d -t leadrouter-console.XXXXXX)"
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

command -v jq >/dev/null || { echo "needs jq (apt-get install jq) to read the JSON reports" >&2; exit 2; }
command -v curl >/dev/null || { echo "needs curl (apt-get install curl) to read leadrouter's /metrics" >&2; exit 2; }

# `15s`, `1.5s`, `500ms`, `2m` (a bare number is seconds) -> whole milliseconds.
to_ms() {
    awk -v d="$1" 'BEGIN {
        if (d ~ /ms$/) { sub(/ms$/, "", d); f = 1 } else if (d ~ /s$/) { sub(/s$/, "", d); f = 1000 }
        else if (d ~ /m$/) { sub(/m$/, "", d); f = 60000 } else { f = 1000 }
        if (d !~ /^[0-9]+(\.[0-9]+)?$/) { exit 1 }
        printf "%d\n", d * f + 0.5 }' || { echo "not a duration: $1" >&2; exit 2; }
}
SPAN_MS=$(($(to_ms "$WARMUP") + $(to_ms "$DURATION")))
IDLE_MS="$(to_ms "$IDLE_SPAN")"

for addr in "$BUYER_ADDR" "$LEADROUTER_ADDR" "$OPS_ADDR" "$GRPC_ADDR"; do
    port_free "$addr"
done

CONFIG="$WORK/leadrouter.toml"
write_direct_market "$CONFIG" "loadtest/console.sh"
build_release

MOCK_CMD=("$LOADTEST" mock-buyer --listen "$BUYER_ADDR" --latency-ms 0)
LR_CMD=("$LEADROUTER" --config "$CONFIG" --listen "$LEADROUTER_ADDR" --ops-listen "$OPS_ADDR"
    --grpc-listen "$GRPC_ADDR" --data-dir "$WORK/data" --admin-token "$ADMIN_TOKEN")
RUN_ARGS=(--mode closed --concurrency "$CONCURRENCY" --duration "$DURATION" --warmup "$WARMUP")
# Sets LR_RUN to the posts of run number $1 (its own lead numbers), JSON report to $2.
posts_run() {
    LR_RUN=("$LOADTEST" run --target "http://$LEADROUTER_ADDR" --key "$SUPPLIER_KEY" --mix direct
        --vertical solar --zip 80331 --country DE "${RUN_ARGS[@]}" --first-id "$(($1 * 10000000))" --json "$2")
}
DASH_CMD=("$LOADTEST" dashboards --target "http://$OPS_ADDR" --admin-token "$ADMIN_TOKEN")

"${MOCK_CMD[@]}" 2>"$WORK/mock-buyer.log" &
PIDS+=($!)
"${LR_CMD[@]}" >"$WORK/leadrouter.log" 2>&1 &
LR_PID=$!
PIDS+=("$LR_PID")
LR_STARTED="$(date +%s)"
wait_for_port "$BUYER_ADDR"
wait_for_port "$LEADROUTER_ADDR" || { cat "$WORK/leadrouter.log" >&2; exit 1; }
wait_for_port "$OPS_ADDR" || { cat "$WORK/leadrouter.log" >&2; exit 1; }

echo
machine
echo "== commands"
show "${MOCK_CMD[@]}"
show "${LR_CMD[@]}"
posts_run 1 "$OUT/r<round>-<a|b>.json"
show "${LR_RUN[@]}"
echo "   (--first-id: the run's number, 1, 2, ..., times 10,000,000, so no lead repeats an earlier one)"
show "${DASH_CMD[@]}" --dashboards "$DASHBOARDS" --duration "${SPAN_MS}ms" --json "$OUT/r<round>-b-dashboards.json"
show "${DASH_CMD[@]}" --sequential "$SEQUENTIAL" --json "$OUT/idle-<when>.json"
echo "   (config: $CONFIG, direct-post.sh's market: $BUYERS buyers, fixed prices, sync webhook to the mock buyer)"

loadavg() {
    cut -d' ' -f1-3 /proc/loadavg
}
TICKS_PER_S="$(getconf CLK_TCK)"
# CPU time (user + system) process $1 has used so far, in clock ticks.
cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}
# CPU time process $1's threads have run so far, in ns (every thread's schedstat).
cpu_ns() {
    cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f\n", s }'
}
sales_so_far() {
    curl -sf "http://$OPS_ADDR/metrics" | awk '/^leadrouter_sales_total/ { s += $NF } END { printf "%d\n", s }'
}

# Sequential page time; $1 names the moment (fresh, full).
idle_pages() {
    echo
    echo "== page time, $1 (router up $(($(date +%s) - LR_STARTED)) s): one operator, $SEQUENTIAL fetches of each page back to back"
    echo "   (load average before: $(loadavg))"
    local ns
    ns="$(cpu_ns "$LR_PID")"
    "${DASH_CMD[@]}" --sequential "$SEQUENTIAL" --json "$OUT/idle-$1.json" 2>/dev/null
    ns=$(($(cpu_ns "$LR_PID") - ns))
    echo "router CPU over the $((2 * SEQUENTIAL)) fetches: $(awk -v n="$ns" -v f="$((2 * SEQUENTIAL))" 'BEGIN { printf "%.1f µs per fetch", n / 1000 / f }') (sign-in included)"
    echo "$ns" >"$OUT/idle-$1.cpu_ns"
}

idle_pages fresh

echo
echo "== priming: 3 s of posts, so the activity samples carry sales and revenue"
"$LOADTEST" run --target "http://$LEADROUTER_ADDR" --key "$SUPPLIER_KEY" --mix direct --vertical solar \
    --zip 80331 --country DE --mode closed --concurrency "$CONCURRENCY" --duration 3s --first-id 0 \
    --json "$OUT/prime.json" >/dev/null 2>&1
echo "   sold $(jq '.phases[0].outcomes.sold' "$OUT/prime.json")"
UP=$(($(date +%s) - LR_STARTED))
if [ "$UP" -lt "$AGE" ]; then
    echo "== waiting $((AGE - UP)) s, until the router has been up $AGE s (a full window of samples)"
    sleep $((AGE - UP))
fi

idle_pages full

echo
echo "== the live updates alone: router CPU over $IDLE_SPAN idle, then over $IDLE_SPAN with $DASHBOARDS dashboards polling"
echo "   (load average before: $(loadavg))"
NS="$(cpu_ns "$LR_PID")"
sleep "$(awk -v ms="$IDLE_MS" 'BEGIN { printf "%.3f", ms / 1000 }')"
IDLE_NS=$(($(cpu_ns "$LR_PID") - NS))
NS="$(cpu_ns "$LR_PID")"
"${DASH_CMD[@]}" --dashboards "$DASHBOARDS" --duration "${IDLE_MS}ms" --json "$OUT/idle-dashboards.json" 2>/dev/null
DASH_NS=$(($(cpu_ns "$LR_PID") - NS))
FETCHES="$(jq '[.pages[].requests] | add' "$OUT/idle-dashboards.json")"
SIGN_INS="$(jq '.sign_ins' "$OUT/idle-dashboards.json")"
awk -v i="$IDLE_NS" -v d="$DASH_NS" -v f="$FETCHES" -v s="$SIGN_INS" -v span="$IDLE_MS" 'BEGIN {
    printf "router CPU: idle %.1f ms, with dashboards %.1f ms over %.1f s: %.1f ms more for %d fetches and %d sign-ins\n",
        i / 1e6, d / 1e6, span / 1000, (d - i) / 1e6, f, s
    printf "            = %.0f µs per fetch (sign-ins and the %d whole pages included), %.3f %% of one core\n",
        (d - i) / 1000 / f, s, (d - i) / 1e6 / span * 100 }' | tee "$OUT/idle-dashboards.txt"

# Runs posts (number $1, name $2), with dashboards when $3 = b; reports in $OUT/$2.*.
measured_run() {
    local n="$1" name="$2" with="$3" ticks sales dash_pid=""
    echo
    echo "== $name: direct posts$([ "$with" = b ] && echo ", $DASHBOARDS dashboards open")"
    echo "   (load average before: $(loadavg))"
    loadavg >"$OUT/$name.load-before"
    ticks="$(cpu_ticks "$LR_PID")"
    sales="$(sales_so_far)"
    if [ "$with" = b ]; then
        "${DASH_CMD[@]}" --dashboards "$DASHBOARDS" --duration "${SPAN_MS}ms" --json "$OUT/$name-dashboards.json" \
            >"$OUT/$name-dashboards.txt" 2>/dev/null &
        dash_pid=$!
    fi
    posts_run "$n" "$OUT/$name.json"
    "${LR_RUN[@]}" 2>/dev/null
    if [ -n "$dash_pid" ]; then
        wait "$dash_pid" || echo "   (the dashboards reported errors)"
        cat "$OUT/$name-dashboards.txt"
    fi
    ticks=$(($(cpu_ticks "$LR_PID") - ticks))
    sales=$(($(sales_so_far) - sales))
    loadavg >"$OUT/$name.load-after"
    awk -v t="$ticks" -v hz="$TICKS_PER_S" -v n="$sales" 'BEGIN { if (n > 0) printf "%.1f\n", t * 1e6 / hz / n; else print "-" }' \
        >"$OUT/$name.cpu"
    echo "router CPU: $(awk -v t="$ticks" -v hz="$TICKS_PER_S" 'BEGIN { printf "%.2f", t / hz }') s for $sales sales (warm-up included): $(cat "$OUT/$name.cpu") µs per sale"
}

RUNS=()
n=1
for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then order="a b"; else order="b a"; fi
    for with in $order; do
        measured_run "$n" "r$round-$with" "$with"
        RUNS+=("$round $with")
        n=$((n + 1))
    done
done

echo
echo "== page time with nothing else asked (one operator, $SEQUENTIAL back to back each)"
printf '%-6s %-24s %8s %8s %8s %8s %8s %8s\n' when page answers p50_ms p99_ms max_ms bytes errors
for when in fresh full; do
    jq -r --arg when "$when" '.pages[] | [$when, .path, .requests, .latency.p50_ms, .latency.p99_ms, .latency.max_ms,
        .bytes_mean, .errors] | @tsv' "$OUT/idle-$when.json" |
        awk -F'\t' '{ printf "%-6s %-24s %8s %8s %8s %8s %8s %8s\n", $1, $2, $3, $4, $5, $6, $7, $8 }'
done

echo
echo "== summary: direct posts, closed loop, concurrency $CONCURRENCY, $DURATION after $WARMUP warm-up;"
echo "   b: $DASHBOARDS dashboards open (the live part every 2 s each; the whole page once each)"
printf '%-5s %-3s %8s %8s %7s %7s %6s %11s %-15s %-15s %6s %8s %8s %5s %8s %8s\n' \
    round run sales sales/s p50_ms p99_ms 5xx cpu_us/sale load_before load_after live_n live_p50 live_p99 page_n page_p50 page_p99
for run in "${RUNS[@]}"; do
    read -r round with <<<"$run"
    name="r$round-$with"
    dash='- - - - - -'
    if [ "$with" = b ]; then
        dash="$(jq -r '[.pages[1].requests, .pages[1].latency.p50_ms, .pages[1].latency.p99_ms,
            .pages[0].requests, .pages[0].latency.p50_ms, .pages[0].latency.p99_ms] | @tsv' "$OUT/$name-dashboards.json")"
    fi
    jq -r --arg round "$round" --arg with "$with" --arg cpu "$(cat "$OUT/$name.cpu")" \
        --arg before "$(cat "$OUT/$name.load-before")" --arg after "$(cat "$OUT/$name.load-after")" --arg dash "$dash" \
        '.phases[0] as $p | [$round, $with, $p.outcomes.sold, (($p.outcomes.sold / .run.duration_s * 10 | round) / 10),
          $p.latency.p50_ms, $p.latency.p99_ms, $p.statuses["5xx"], $cpu, ($before | gsub(" "; "/")),
          ($after | gsub(" "; "/"))] + ($dash | split("\\s+"; null)) | @tsv' "$OUT/$name.json" |
        awk -F'\t' '{ printf "%-5s %-3s %8s %8s %7s %7s %6s %11s %-15s %-15s %6s %8s %8s %5s %8s %8s\n",
            $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16 }'
done

echo
echo "== b/a per round (same round, back to back)"
printf '%-5s %12s %12s %12s %12s\n' round sales/s_b/a p50_b/a p99_b/a cpu/sale_b/a
for round in $(seq 1 "$ROUNDS"); do
    jq -r -s --arg round "$round" --arg ca "$(cat "$OUT/r$round-a.cpu")" --arg cb "$(cat "$OUT/r$round-b.cpu")" '
        def rate: .phases[0].outcomes.sold / .run.duration_s;
        def r(x): (x * 1000 | round) / 1000;
        [$round, r((.[1] | rate) / (.[0] | rate)), r(.[1].phases[0].latency.p50_ms / .[0].phases[0].latency.p50_ms),
         r(.[1].phases[0].latency.p99_ms / .[0].phases[0].latency.p99_ms), r(($cb | tonumber) / ($ca | tonumber))] | @tsv' \
        "$OUT/r$round-a.json" "$OUT/r$round-b.json"
done | tee "$OUT/ratios.tsv" | awk -F'\t' '{ printf "%-5s %12s %12s %12s %12s\n", $1, $2, $3, $4, $5 }'
awk -F'\t' '{ s += $2; p50 += $3; p99 += $4; c += $5; n++ } END {
    printf "%-5s %12.3f %12.3f %12.3f %12.3f\n", "mean", s / n, p50 / n, p99 / n, c / n }' "$OUT/ratios.tsv"

# The verdict: any 5xx, nothing sold, or a dashboard error fails.
STATUS=0
reports=()
for run in "${RUNS[@]}"; do
    read -r round with <<<"$run"
    reports+=("$OUT/r$round-$with.json")
done
read -r FIVE_XX SOLD < <(jq -s -r '[(map(.phases[0].statuses["5xx"]) | add), (map(.phases[0].outcomes.sold) | add)] | @tsv' \
    "${reports[@]}")
DASH_ERRORS="$(jq -s '[.[] | .sign_in_errors + ([.pages[].errors] | add)] | add' "$OUT"/*dashboards.json "$OUT"/idle-fresh.json "$OUT"/idle-full.json)"
[ "$FIVE_XX" = 0 ] || { echo "FAIL: leadrouter answered $FIVE_XX 5xx" >&2; STATUS=1; }
[ "$SOLD" != 0 ] || { echo "FAIL: leadrouter sold nothing" >&2; STATUS=1; }
[ "$DASH_ERRORS" = 0 ] || { echo "FAIL: the console answered $DASH_ERRORS errors" >&2; STATUS=1; }
[ "$STATUS" = 1 ] || echo "OK: no 5xx, $SOLD leads sold, no console errors"
exit "$STATUS"
