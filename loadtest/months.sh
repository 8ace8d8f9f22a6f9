#!/usr/bin/env bash
# Issue 11's figures: resident memory and restart time after 1 million and 10 million
# sales, on release binaries with embedded storage.
#
# The market is direct-post.sh's with every campaign delivering by `pull` (sold on
# assignment, the lead waits on disk until its buyer fetches it), BUYERS (20) buyers with
# 1,000,000,000.00 each, and `dedup_days` DEDUP_DAYS (0: the dedup keys of a window are
# kept in memory by design, ~70 bytes a key, two a lead, and a run that sells millions in
# minutes keeps them all; 0 shows what grows with sales apart from that).
#
# DELIVERY (pull) is how campaigns deliver: `pull` as above, or `webhook`: synchronously to
# `loadtest mock-buyer` (latency 0), the way most buyers take leads; nothing then waits on
# the node and FETCH does not apply.
#
# FETCH (1) says whether the buyers fetch. 1: `loadtest pull` plays all BUYERS buyers,
# each fetching its leads (`GET /v1/buyer/leads`, pages of 1000) every 200 ms, the
# realistic case where waiting leads stay few. 0: the buyers never fetch and every lead
# waits: the worst case, where each waiting lead's place stays in memory by design. The
# fetcher starts once the node is ready and is stopped (SIGTERM) before each clean stop
# of the node, then started again after the restart; at each stage its JSON line of totals
# since it started (buyers, fetched, pages, errors) is printed.
#
# The load tester posts distinct leads closed loop at CONCURRENCY (32) until each stage's
# total of sales (STAGES, "1000000 10000000") is reached, in runs of at most RUN_MAX
# (3,000,000) requests; a run also ends at the load tester's 600 s, and the next one goes
# on from what was sold. After each stage: the node's resident memory (VmRSS), the data
# dir's size, then (FETCH=1) a second for the buyers to fetch the last sales and the
# fetcher's totals, then a clean stop and a restart timed to /readyz answering 200, and
# the resident memory after the restart.
#
# Needs ~1.3 KB of disk per sale (13 GB for 10 million). Environment: STAGES, FETCH,
# CONCURRENCY, RUN_MAX, DEDUP_DAYS, NO_BUILD=1, CARGO_TARGET_DIR, KEEP=1 (keep the data
# dir).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
CONCURRENCY="${CONCURRENCY:-32}"
STAGES="${STAGES:-1000000 10000000}"
RUN_MAX="${RUN_MAX:-3000000}"
DEDUP_DAYS="${DEDUP_DAYS:-0}"
FETCH="${FETCH:-1}"
case "$FETCH" in 0 | 1) ;; *) echo "FETCH must be 0 or 1, got '$FETCH'" >&2; exit 2 ;; esac
DELIVERY="${DELIVERY:-pull}"
case "$DELIVERY" in pull) ;; webhook) FETCH=0 ;; *) echo "DELIVERY must be pull or webhook, got '$DELIVERY'" >&2; exit 2 ;; esac

BUYER_ADDR=127.0.0.1:19200
LEADROUTER_ADDR=127.0.0.1:18080
OPS_ADDR=127.0.0.1:19090
GRPC_ADDR=127.0.0.1:50151
SUPPLIER_KEY=loadtest-supplier-key-0001
BUYERS=20

WORK="$(mktemp -d -t leadrouter-months.XXXXXX)"
PIDS=()
# shellcheck source=loadtest/lib.sh
source "$ROOT/loadtest/lib.sh"
cleanup() {
    stop_all
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT INT TERM

build_release
machine
port_free "$LEADROUTER_ADDR"
port_free "$OPS_ADDR"

write_direct_market "$WORK/market.toml" "loadtest/months.sh"
sed -i -e 's|amount = "10000000.00"|amount = "1000000000.00"|' \
    -e "s|^\(delivery = .*\)$|\1\ndedup_days = $DEDUP_DAYS|" "$WORK/market.toml"
if [ "$DELIVERY" = pull ]; then
    sed -i -e "s|delivery = { mode = \"webhook\", url = \"http://$BUYER_ADDR/post\" }|delivery = { mode = \"pull\" }|" \
        "$WORK/market.toml"
else
    port_free "$BUYER_ADDR"
    "$LOADTEST" mock-buyer --listen "$BUYER_ADDR" --latency-ms 0 2>"$WORK/mock-buyer.log" &
    PIDS+=($!)
    BUYER_PID=$!
    wait_for_port "$BUYER_ADDR"
fi

start_node() {
    "$LEADROUTER" --config "$WORK/market.toml" --data-dir "$WORK/data" --listen "$LEADROUTER_ADDR" \
        --ops-listen "$OPS_ADDR" --grpc-listen "$GRPC_ADDR" --admin-token months-admin-token-0001 \
        >>"$WORK/node.log" 2>&1 &
    NODE=$!
    PIDS=("$NODE" ${BUYER_PID:+"$BUYER_PID"})
}

# The buyers' keys, exactly as write_direct_market writes them (`seq -w`: 0001 ... 0020).
FETCH_KEYS=()
for i in $(seq -w 1 "$BUYERS"); do
    FETCH_KEYS+=(--key "loadtest-buyer-key-00$i")
done
FETCHER=

# FETCH=1: the pull buyers, in the background, from a node that answers /readyz.
start_fetcher() {
    [ "$FETCH" = 1 ] || return 0
    "$LOADTEST" pull --target "http://$LEADROUTER_ADDR" "${FETCH_KEYS[@]}" --interval-ms 200 \
        >"$WORK/fetch.json" 2>>"$WORK/fetch.log" &
    FETCHER=$!
    PIDS+=("$FETCHER")
}

# Stops the pull buyers (SIGTERM) and prints their totals since start_fetcher, labelled $1.
stop_fetcher() {
    [ -n "$FETCHER" ] || return 0
    local status=0
    kill -TERM "$FETCHER" 2>/dev/null || true
    wait "$FETCHER" || status=$?
    PIDS=("$NODE" ${BUYER_PID:+"$BUYER_PID"})
    FETCHER=
    if [ "$status" = 0 ] && [ -s "$WORK/fetch.json" ]; then
        echo "== $1: fetcher $(cat "$WORK/fetch.json")"
    else
        echo "== $1: fetcher failed (exit $status):" >&2
        tail -n 5 "$WORK/fetch.log" >&2
        exit 1
    fi
}

# Milliseconds until /readyz answers 200.
wait_ready_ms() {
    local started now
    started=$(date +%s%N)
    until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$OPS_ADDR/readyz")" = 200 ]; do
        sleep 0.01
    done
    now=$(date +%s%N)
    echo $(((now - started) / 1000000))
}

rss_mb() {
    awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"
}

start_node
echo "== first start: ready in $(wait_ready_ms) ms, RSS $(rss_mb "$NODE") MB"
start_fetcher
echo "== delivery: $DELIVERY; buyers fetch: $([ "$FETCH" = 1 ] && echo "every 200 ms (FETCH=1)" || echo "never (FETCH=0)")"
sold=0
for stage in $STAGES; do
    while [ "$sold" -lt "$stage" ]; do
        run=$((stage - sold))
        [ "$run" -gt "$RUN_MAX" ] && run=$RUN_MAX
        echo "== posting $run leads (from lead $sold)"
        "$LOADTEST" run --target "http://$LEADROUTER_ADDR" --key "$SUPPLIER_KEY" --mix direct --mode closed \
            --concurrency "$CONCURRENCY" --duration 600s --warmup 0s --max-requests "$run" --first-id "$sold" \
            --json "$WORK/run.json" | tail -n 12 | tee "$WORK/run.txt"
        # A run ends at its requests or at the load tester's 600 s, whichever comes first:
        # what counts is what it sold.
        ran=$(sed -n 's/.*outcome sold \([0-9]*\).*/\1/p' "$WORK/run.txt" | head -n 1)
        [ -n "$ran" ] && [ "$ran" -gt 0 ] || { echo "the run sold nothing" >&2; exit 1; }
        sold=$((sold + ran))
    done
    sales=$(curl -s "http://$OPS_ADDR/metrics" | awk '/^leadrouter_sales_total/ {s += $2} END {printf "%d", s}')
    echo "== stage $stage: node sold $sales since its start; RSS $(rss_mb "$NODE") MB; data dir $(du -sh "$WORK/data" | cut -f1)"
    if [ -n "$FETCHER" ]; then
        # A buyer's last fetch may be up to its interval behind the last sale.
        sleep 1
        stop_fetcher "stage $stage"
    fi
    kill -TERM "$NODE"
    wait "$NODE" || true
    start_node
    echo "== stage $stage: restart ready in $(wait_ready_ms) ms, RSS after restart $(rss_mb "$NODE") MB"
    start_fetcher
    echo "== stage $stage: checkpoint $(du -h "$WORK/data/journal/checkpoint" | cut -f1)"
    grep -E "journal replayed|checkpoint written" "$WORK/node.log" | tail -n 2
done
if [ -n "$FETCHER" ]; then
    # Whatever the buyers had not taken before the last stop is theirs to fetch now; they
    # acknowledged everything else, so a restart hands nothing out twice.
    sleep 1
    stop_fetcher "after the last restart"
fi
