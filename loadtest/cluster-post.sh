#!/usr/bin/env bash
# Same-run comparison on this machine of direct posts (POST /v1/leads), closed loop,
# concurrency 32, in three configurations:
#
#   a. embedded: one leadrouter node on its own (no --redis), the baseline;
#   b. redis x1: one node with --redis (budget, dedup, ledger, claims in Redis);
#   c. redis x3: three nodes on the same Redis, one `loadtest run` spreading the load over
#      them round-robin per request (`--target` three times).
#
# The market and the mock buyer are direct-post.sh's: vertical `solar` (model bidding),
# one supplier, 10 prepaid buyers with large balances, 10 fixed-price campaigns around
# Munich delivering by sync webhook to `loadtest mock-buyer` (latency 0). Every node gets
# the same --config and its own --data-dir and ports.
#
# Each Redis configuration gets a fresh redis-server on a free loopback port in its own
# temp dir, with the durable setting: `--appendonly yes --appendfsync always --save ""`
# (every write is in the append-only file and fsynced before Redis answers it; no RDB
# snapshots). Nothing is shared between configurations but the mock buyer.
#
# With RATE set (e.g. RATE=3000) each configuration also gets an open-loop run at that
# fixed arrival rate after the closed loop, so latencies compare at equal load.
#
# Exits non-zero when a configuration answered any 5xx or sold nothing. Everything it
# starts is stopped on exit. Environment: CONCURRENCY (32), DURATION (15s), WARMUP (2s),
# RATE (unset: no open-loop run), OUT_DIR (keep the JSON reports there; default: a temp
# dir removed on exit), NO_BUILD=1 (use the release binaries as built),
# CARGO_TARGET_DIR (target).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
CONCURRENCY="${CONCURRENCY:-32}"
DURATION="${DURATION:-15s}"
WARMUP="${WARMUP:-2s}"
RATE="${RATE:-}"

BUYER_ADDR=127.0.0.1:19250
# Node n (1..3): public 1828n, ops 1928n, gRPC 5025n.
NODE_PUBLIC=(127.0.0.1:18281 127.0.0.1:18282 127.0.0.1:18283)
NODE_OPS=(127.0.0.1:19281 127.0.0.1:19282 127.0.0.1:19283)
NODE_GRPC=(127.0.0.1:50251 127.0.0.1:50252 127.0.0.1:50253)
SUPPLIER_KEY=loadtest-supplier-key-0001
ADMIN_TOKEN=loadtest-admin-token-0001
# Every node of one Redis makes dedup keys under the same secret.
export LEADROUTER_DEDUP_SECRET=10ad7e5710ad7e5710ad7e5710ad7e5710ad7e5710ad7e5710ad7e5710ad7e57
BUYERS=10
# Open-loop leads are numbered from here, so they never repeat a closed-loop lead (the
# nodes remember leads for deduplication).
OPEN_FIRST_ID=100000000

WORK="$(mktemp -d -t leadrouter-cluster.XXXXXX)"
OUT_DIR="${OUT_DIR:-$WORK/out}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
PIDS=()      # for the whole run: the mock buyer
RUN_PIDS=()  # for one configuration: redis-server and the nodes
NODE_LOGS=() # for one configuration: the nodes' logs, copied to OUT_DIR after the run
# shellcheck source=loadtest/lib.sh
source "$ROOT/loadtest/lib.sh"
# shellcheck disable=SC2317 # reached through the trap
cleanup() {
    stop_all RUN_PIDS
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

command -v jq >/dev/null || { echo "needs jq (apt-get install jq) to read the JSON report" >&2; exit 2; }
command -v curl >/dev/null || { echo "needs curl to ask the nodes' /readyz" >&2; exit 2; }
command -v redis-server >/dev/null || { echo "needs redis-server (apt-get install redis-server)" >&2; exit 2; }
command -v redis-cli >/dev/null || { echo "needs redis-cli (apt-get install redis-tools)" >&2; exit 2; }

for addr in "$BUYER_ADDR" "${NODE_PUBLIC[@]}" "${NODE_OPS[@]}" "${NODE_GRPC[@]}"; do
    port_free "$addr"
done

build_release

CONFIG="$WORK/leadrouter.toml"
write_direct_market "$CONFIG" "loadtest/cluster-post.sh (the market of direct-post.sh)"

# A free loopback port for redis-server, from 16380 up.
free_port() {
    local port
    for port in $(seq 16380 16479); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    echo "no free port in 16380-16479" >&2
    return 1
}

# Starts a fresh redis-server in $1 (a new dir); sets REDIS_PORT and REDIS_URL.
start_redis() {
    local dir="$1"
    mkdir -p "$dir"
    REDIS_PORT="$(free_port)"
    REDIS_URL="redis://127.0.0.1:$REDIS_PORT/"
    REDIS_CMD=(redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$dir"
        --appendonly yes --appendfsync always --save "")
    "${REDIS_CMD[@]}" >"$dir/redis.log" 2>&1 &
    RUN_PIDS+=($!)
    wait_for_port "127.0.0.1:$REDIS_PORT" || { cat "$dir/redis.log" >&2; exit 1; }
    show "${REDIS_CMD[@]}"
    redis-cli -p "$REDIS_PORT" config get appendfsync | paste -sd' ' | sed 's/^/   redis: /'
}

# Starts node $1 (0-based) with a fresh data dir under $2; more arguments go to the node
# (--redis URL). Waits until its /readyz answers 200 (at most ~20 s).
start_node() {
    local n="$1" dir="$2"
    shift 2
    mkdir -p "$dir"
    local -a cmd=("$LEADROUTER" --config "$CONFIG" --listen "${NODE_PUBLIC[$n]}" --ops-listen "${NODE_OPS[$n]}"
        --grpc-listen "${NODE_GRPC[$n]}" --data-dir "$dir/data" --admin-token "$ADMIN_TOKEN" "$@")
    "${cmd[@]}" >"$dir/leadrouter.log" 2>&1 &
    RUN_PIDS+=($!)
    NODE_LOGS+=("$dir/leadrouter.log")
    show "${cmd[@]}"
    local i
    for i in $(seq 1 200); do
        if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://${NODE_OPS[$n]}/readyz")" = 200 ]; then
            return 0
        fi
        if ! kill -0 "${RUN_PIDS[-1]}" 2>/dev/null; then
            echo "node $((n + 1)) exited before it was ready:" >&2
            cat "$dir/leadrouter.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "node $((n + 1)) not ready after 20 s:" >&2
    tail -n 20 "$dir/leadrouter.log" >&2
    exit 1
}

# Sales counted by one node (leadrouter_sales_total, all labels summed).
node_sales() {
    curl -s "http://${NODE_OPS[$1]}/metrics" | awk '/^leadrouter_sales_total/ { s += $NF } END { printf "%d", s }'
}

# Stops this configuration's processes (nodes and redis-server).
stop_run() {
    stop_pids RUN_PIDS
    RUN_PIDS=()
    NODE_LOGS=()
}

STATUS=0
NAMES=()
REPORTS=()

# Runs the load for configuration $1 (a label) against the first $2 nodes; writes
# $OUT_DIR/$1.json (and $1-open.json with RATE) and checks the verdict.
measure() {
    local name="$1" nodes="$2" n
    local -a targets=()
    for n in $(seq 0 $((nodes - 1))); do
        targets+=(--target "http://${NODE_PUBLIC[$n]}")
    done
    local -a common=("$LOADTEST" run "${targets[@]}" --key "$SUPPLIER_KEY" --mix direct
        --vertical solar --zip 80331 --country DE --duration "$DURATION" --warmup "$WARMUP")
    local -a runs=("$name")
    local -a closed=("${common[@]}" --mode closed --concurrency "$CONCURRENCY" --json "$OUT_DIR/$name.json")
    show "${closed[@]}"
    echo "   (uptime: $(uptime | sed 's/.*load average/load average/'))"
    "${closed[@]}" 2>/dev/null
    if [ -n "$RATE" ]; then
        local -a open=("${common[@]}" --mode open --rate "$RATE" --first-id "$OPEN_FIRST_ID"
            --json "$OUT_DIR/$name-open.json")
        show "${open[@]}"
        "${open[@]}" 2>/dev/null
        runs+=("$name-open")
    fi
    local per_node=()
    for n in $(seq 0 $((nodes - 1))); do
        per_node+=("node$((n + 1)) $(node_sales "$n")")
    done
    echo "   sales counted by the nodes (/metrics, warm-up included): ${per_node[*]}"
    # The nodes' ERROR lines, grouped (timestamps and sale ids cut), and the logs kept.
    for n in $(seq 0 $((nodes - 1))); do
        local log="${NODE_LOGS[$n]}" errors
        errors="$(grep -c ' ERROR ' "$log" || true)"
        echo "   node$((n + 1)) log: $errors ERROR lines (kept as $OUT_DIR/$name-node$((n + 1)).log)"
        { grep ' ERROR ' "$log" || true; } | sed -E 's/^[^ ]+ +ERROR +//; s/ sale_id=[^ ]+//' | sort | uniq -c | sort -rn |
            head -n 3 | sed 's/^/     /'
        cp "$log" "$OUT_DIR/$name-node$((n + 1)).log"
    done
    if [ -n "${REDIS_PORT:-}" ]; then
        redis-cli -p "$REDIS_PORT" info stats | tr -d '\r' | grep -E '^total_commands_processed:' | sed 's/^/   redis: /'
        redis-cli -p "$REDIS_PORT" info cpu | tr -d '\r' | grep -E '^used_cpu_(sys|user):' | paste -sd' ' | sed 's/^/   redis: /'
        redis-cli -p "$REDIS_PORT" info persistence | tr -d '\r' | grep -E '^aof_(enabled|last_write_status):' | paste -sd' ' | sed 's/^/   redis: /'
    fi
    local run five_xx sold
    for run in "${runs[@]}"; do
        read -r five_xx sold < <(jq -r '[(.phases | map(.statuses["5xx"]) | add), (.phases | map(.outcomes.sold) | add)] | @tsv' "$OUT_DIR/$run.json")
        if [ "$five_xx" != "0" ]; then
            echo "FAIL: $run answered $five_xx 5xx" >&2
            STATUS=1
        fi
        if [ "$sold" = "0" ]; then
            echo "FAIL: $run sold nothing" >&2
            STATUS=1
        fi
        NAMES+=("$run")
        REPORTS+=("$OUT_DIR/$run.json")
    done
}

echo
machine
echo "== $(date -u '+%Y-%m-%d %H:%M UTC'), $(uptime | sed 's/.*load average/load average/')"
echo "   (config: $CONFIG, the market of direct-post.sh; JSON reports in $OUT_DIR)"
MOCK_CMD=("$LOADTEST" mock-buyer --listen "$BUYER_ADDR" --latency-ms 0)
show "${MOCK_CMD[@]}"
"${MOCK_CMD[@]}" 2>"$WORK/mock-buyer.log" &
PIDS+=($!)
wait_for_port "$BUYER_ADDR"

echo
echo "== a. embedded: one node, no --redis"
REDIS_PORT=
start_node 0 "$WORK/embedded/node1"
measure embedded 1
stop_run

echo
echo "== b. redis x1: one node on a fresh redis-server"
start_redis "$WORK/redis-x1/redis"
start_node 0 "$WORK/redis-x1/node1" --redis "$REDIS_URL"
measure redis-x1 1
stop_run

echo
echo "== c. redis x3: three nodes on a fresh redis-server, load round-robin over them"
start_redis "$WORK/redis-x3/redis"
for n in 0 1 2; do
    start_node "$n" "$WORK/redis-x3/node$((n + 1))" --redis "$REDIS_URL"
done
measure redis-x3 3
stop_run

echo
echo "== mock buyer"
kill -TERM "${PIDS[0]}" 2>/dev/null || true
wait "${PIDS[0]}" 2>/dev/null || true
tail -n 1 "$WORK/mock-buyer.log"

echo
echo "== summary (direct posts; latencies in ms)"
printf '%-16s %10s %10s %9s %9s %9s %9s %7s %6s %9s\n' \
    configuration requests req/s p50 p99 p99.9 max errors 5xx sold
for i in "${!NAMES[@]}"; do
    jq -r --arg name "${NAMES[$i]}" '.phases[0] as $p |
        [$name, $p.requests, ($p.throughput_per_s | floor), $p.latency.p50_ms, $p.latency.p99_ms,
         $p.latency["p99.9_ms"], $p.latency.max_ms, $p.errors, $p.statuses["5xx"], $p.outcomes.sold] | @tsv' \
        "${REPORTS[$i]}" |
        awk -F'\t' '{ printf "%-16s %10d %10d %9.3f %9.3f %9.3f %9.3f %7d %6d %9d\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 }'
done

if [ "$STATUS" = 0 ]; then
    echo "OK: no 5xx, every configuration sold"
fi
exit "$STATUS"
