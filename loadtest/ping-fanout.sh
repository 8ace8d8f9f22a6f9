#!/usr/bin/env bash
# Same-run measurement on this machine: leadrouter answering pings (POST /v1/ping) while it
# fans each one out to 10 dynamic buyers that answer in 5 ms, beside two baselines, all
# open loop at the same fixed arrival rate:
#
#   1. HTTP floor: `loadtest echo` (every POST answered at once).
#   2. Buyer floor: the first of the mock buyers that leadrouter pings, loaded
#      directly. `loadtest run --mix ping` can only POST /v1/ping, not the buyer's /ping;
#      the mock buyer sleeps its latency before it routes a request, so it answers
#      /v1/ping with a 404 after exactly the delay its /ping bids get. Those 404s are
#      expected (reported as errors by the load tester, not a failure here): the figure is
#      what "a buyer answering in LATENCY_MS" costs as seen over HTTP on this machine
#      (the mock buyer times its delay from the request's arrival on a precise timer).
#   3. Fan-out floor: `loadtest run --mix fanout` calls the ten buyers' /ping directly,
#      one call to each at once per arrival (the body leadrouter sends, keep-alive
#      connections, all from one task), and records the arrival when the last one answered.
#      A fan-out waits for the slowest of ten, so this, not one buyer's latency, is the
#      honest floor under "what leadrouter adds". With MOCK_BUYERS=1 it makes the ten calls
#      to the one mock buyer, as leadrouter's ten campaigns then do.
#   4. leadrouter --mix ping: each ping pings the 10 campaigns' ping_url, waits for every
#      bid (or the deadline), holds the winner, answers.
#
# leadrouter runs a generated market: vertical `solar` (model ping_post, tmax 1000 ms,
# max_winners 1), one supplier, 10 prepaid buyers with large balances, 10 dynamic campaigns
# around Munich (DE, 50 km of 80331) whose ping_url and delivery URL point at the mock
# buyer(s). MOCK_BUYERS=10 (the default) gives each campaign its own mock buyer process
# (one runtime thread each) on its own port: ten buyers are ten hosts, as in production, and
# each mock buyer sees the same rate in the buyer-floor run as in the fan-out. MOCK_BUYERS=1
# puts all ten campaigns on one mock buyer; it keeps up (same latencies within the noise),
# but leadrouter then keeps more pings in flight to that one host than its pool keeps idle
# connections per host (32), so it opens and closes connections all along (~500/s at
# RATE=1000), which ten distinct buyers would not cause.
#
# Prints the reports and the summary lines: leadrouter's p99 minus the buyers' LATENCY_MS,
# against FLOOR_MS; the fan-out floor's own line; leadrouter's p99 minus the fan-out floor's. Exits non-zero when leadrouter answered any 5xx or
# no ping got a bid. Everything it starts is stopped on exit.
# Environment: RATE (500 arrivals/s), DURATION (15s), WARMUP (2s), LATENCY_MS (5),
# MOCK_BUYERS (10 or 1, default 10), FLOOR_MS (1: issue 17's bound; issue 6 asked 2),
# CARGO_TARGET_DIR (target),
# OUT_DIR (keep the JSON reports and SVG plots there; default: a temporary directory),
# NO_BUILD=1 (use the release binaries as they are: repeated runs on a tree others commit
# to then measure the same binaries),
# BEFORE_BIN (another leadrouter binary, e.g. one built from main before a change: it runs
# beside this tree's on its own ports and data dir with the same market, and is measured
# right before it with the same buyers, generator and baselines, so one run of the script
# gives a same-run before/after; its summary line says "before").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
RATE="${RATE:-500}"
DURATION="${DURATION:-15s}"
WARMUP="${WARMUP:-2s}"
LATENCY_MS="${LATENCY_MS:-5}"
MOCK_BUYERS="${MOCK_BUYERS:-10}"
FLOOR_MS="${FLOOR_MS:-1}"

# Ports apart from direct-post.sh's, so the two scripts can run on one machine.
BUYER_PORT_FIRST=19300
LEADROUTER_ADDR=127.0.0.1:18180
OPS_ADDR=127.0.0.1:19190
GRPC_ADDR=127.0.0.1:50151
ECHO_ADDR=127.0.0.1:18181
BEFORE_ADDR=127.0.0.1:18182
BEFORE_OPS_ADDR=127.0.0.1:19191
BEFORE_GRPC_ADDR=127.0.0.1:50152
BEFORE_BIN="${BEFORE_BIN:-}"
SUPPLIER_KEY=loadtest-supplier-key-0001
BUYERS=10

case "$MOCK_BUYERS" in
    1 | 10) ;;
    *) echo "MOCK_BUYERS must be 1 or 10, got $MOCK_BUYERS" >&2; exit 2 ;;
esac

WORK="$(mktemp -d -t leadrouter-ping-fanout.XXXXXX)"
OUT="${OUT_DIR:-$WORK}"
mkdir -p "$OUT"
PIDS=()
MOCK_PIDS=()
# shellcheck source=loadtest/lib.sh
source "$ROOT/loadtest/lib.sh"
cleanup() {
    stop_all MOCK_PIDS
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

command -v jq >/dev/null || { echo "needs jq (apt-get install jq) to read the JSON report" >&2; exit 2; }

build_release
if [ -n "$BEFORE_BIN" ]; then
    [ -x "$BEFORE_BIN" ] || { echo "BEFORE_BIN=$BEFORE_BIN is not an executable" >&2; exit 2; }
fi


# Campaign i (1-based) pings mock buyer ((i-1) mod MOCK_BUYERS).
buyer_addr() {
    echo "127.0.0.1:$((BUYER_PORT_FIRST + (10#$1 - 1) % MOCK_BUYERS))"
}

CONFIG="$WORK/leadrouter.toml"
{
    cat <<EOF
# Generated by loadtest/ping-fanout.sh.
[[verticals]]
name = "solar"
model = "ping_post"
tmax_ms = 1000
max_winners = 1
default_country = "DE"
required_fields = ["roof_type"]

[[suppliers]]
id = "loadtest-portal"
name = "Load test portal"
api_key = "$SUPPLIER_KEY"
payout = { type = "revshare", percent = "60" }
EOF
    for i in $(seq -w 1 "$BUYERS"); do
        addr="$(buyer_addr "$i")"
        cat <<EOF

[[buyers]]
id = "lt-buyer-$i"
name = "Load test buyer $i"
api_key = "loadtest-buyer-key-00$i"
webhook_secret = "loadtest-webhook-secret-00$i"
currency = "EUR"
timezone = "Europe/Berlin"
billing = { mode = "prepaid", interval = "monthly" }

[[campaigns]]
id = "lt-campaign-$i"
buyer_id = "lt-buyer-$i"
vertical = "solar"
pricing = { type = "dynamic", ping_url = "http://$addr/ping", min_price = "10.00" }
filters = { countries = ["DE"], radius = { zip = "80331", km = 50 } }
delivery = { mode = "webhook", url = "http://$addr/post" }

[[topups]]
buyer_id = "lt-buyer-$i"
amount = "10000000.00"
reference = "loadtest-opening-balance"
EOF
    done
} >"$CONFIG"

BUYER_ADDRS=()
for b in $(seq 0 $((MOCK_BUYERS - 1))); do
    BUYER_ADDRS+=("127.0.0.1:$((BUYER_PORT_FIRST + b))")
done
# One mock buyer takes every ping with the default threads (the cores); ten share the
# cores with one runtime thread each.
MOCK_THREADS=()
[ "$MOCK_BUYERS" = 10 ] && MOCK_THREADS=(--threads 1)
mock_cmd() {
    local b="$1"
    MOCK_CMD=("$LOADTEST" mock-buyer "${MOCK_THREADS[@]}" --listen "${BUYER_ADDRS[$b]}" --latency-ms "$LATENCY_MS"
        --jitter-ms 0 --bid-min 20.00 --bid-max 60.00 --seed "$((b + 1))")
}
SERVER_CMD=("$LEADROUTER" --config "$CONFIG" --listen "$LEADROUTER_ADDR" --ops-listen "$OPS_ADDR"
    --grpc-listen "$GRPC_ADDR" --data-dir "$WORK/data" --admin-token loadtest-admin-token-0001)
ECHO_CMD=("$LOADTEST" echo --listen "$ECHO_ADDR")
LOAD_ARGS=(--mode open --rate "$RATE" --duration "$DURATION" --warmup "$WARMUP")
RUN_ARGS=(--mix ping "${LOAD_ARGS[@]}")
ECHO_RUN=("$LOADTEST" run --target "http://$ECHO_ADDR" "${RUN_ARGS[@]}"
    --json "$OUT/echo.json" --plot "$OUT/echo.svg")
BUYER_RUN=("$LOADTEST" run --target "http://${BUYER_ADDRS[0]}" "${RUN_ARGS[@]}"
    --json "$OUT/mock-buyer.json" --plot "$OUT/mock-buyer.svg")
# The fan-out floor calls the buyer of every campaign (ten targets; with MOCK_BUYERS=1 the
# same one ten times, on ten connections per arrival as leadrouter's ten campaigns).
FANOUT_TARGETS=()
for i in $(seq -w 1 "$BUYERS"); do
    FANOUT_TARGETS+=(--target "http://$(buyer_addr "$i")")
done
FANOUT_RUN=("$LOADTEST" run "${FANOUT_TARGETS[@]}" --mix fanout "${LOAD_ARGS[@]}"
    --json "$OUT/fanout-floor.json" --plot "$OUT/fanout-floor.svg")
LEADROUTER_RUN=("$LOADTEST" run --target "http://$LEADROUTER_ADDR" --key "$SUPPLIER_KEY"
    --vertical solar --zip 80331 --country DE "${RUN_ARGS[@]}"
    --json "$OUT/leadrouter.json" --plot "$OUT/leadrouter.svg")
BEFORE_CMD=()
BEFORE_RUN=()
if [ -n "$BEFORE_BIN" ]; then
    BEFORE_CMD=("$BEFORE_BIN" --config "$CONFIG" --listen "$BEFORE_ADDR" --ops-listen "$BEFORE_OPS_ADDR"
        --grpc-listen "$BEFORE_GRPC_ADDR" --data-dir "$WORK/data-before" --admin-token loadtest-admin-token-0001)
    BEFORE_RUN=("$LOADTEST" run --target "http://$BEFORE_ADDR" --key "$SUPPLIER_KEY"
        --vertical solar --zip 80331 --country DE "${RUN_ARGS[@]}"
        --json "$OUT/before.json" --plot "$OUT/before.svg")
fi

for addr in "${BUYER_ADDRS[@]}" "$LEADROUTER_ADDR" "$OPS_ADDR" "$GRPC_ADDR" "$ECHO_ADDR"; do
    port_free "$addr"
done
if [ -n "$BEFORE_BIN" ]; then
    for addr in "$BEFORE_ADDR" "$BEFORE_OPS_ADDR" "$BEFORE_GRPC_ADDR"; do
        port_free "$addr"
    done
fi
for b in "${!BUYER_ADDRS[@]}"; do
    mock_cmd "$b"
    "${MOCK_CMD[@]}" 2>"$WORK/mock-buyer-$b.log" &
    MOCK_PIDS+=($!)
done
"${SERVER_CMD[@]}" >"$WORK/leadrouter.log" 2>&1 &
ROUTER_PID=$!
PIDS+=($!)
"${ECHO_CMD[@]}" 2>"$WORK/echo.log" &
PIDS+=($!)
if [ -n "$BEFORE_BIN" ]; then
    "${BEFORE_CMD[@]}" >"$WORK/before.log" 2>&1 &
    BEFORE_PID=$!
    PIDS+=($!)
fi
for addr in "${BUYER_ADDRS[@]}"; do
    wait_for_port "$addr"
done
wait_for_port "$LEADROUTER_ADDR" || { cat "$WORK/leadrouter.log" >&2; exit 1; }
wait_for_port "$ECHO_ADDR"
if [ -n "$BEFORE_BIN" ]; then
    wait_for_port "$BEFORE_ADDR" || { cat "$WORK/before.log" >&2; exit 1; }
fi

echo
machine
echo "== commands"
for b in "${!BUYER_ADDRS[@]}"; do
    mock_cmd "$b"
    show "${MOCK_CMD[@]}"
done
show "${SERVER_CMD[@]}"
[ -n "$BEFORE_BIN" ] && show "${BEFORE_CMD[@]}"
show "${ECHO_CMD[@]}"
show "${ECHO_RUN[@]}"
show "${BUYER_RUN[@]}"
show "${FANOUT_RUN[@]}"
[ -n "$BEFORE_BIN" ] && show "${BEFORE_RUN[@]}"
show "${LEADROUTER_RUN[@]}"
echo "   (config: $CONFIG, shown below)"
head -n 42 "$CONFIG" | sed 's/^/   | /'
echo "   | ... ($BUYERS buyers, dynamic campaigns and topups in all, on $MOCK_BUYERS mock buyer(s))"

echo
echo "== baseline 1, HTTP floor: loadtest echo"
"${ECHO_RUN[@]}" 2>/dev/null
echo
echo "== baseline 2, buyer floor: mock-buyer ${BUYER_ADDRS[0]} (${LATENCY_MS} ms; its 404s to /v1/ping come after the same sleep as its bids)"
"${BUYER_RUN[@]}" 2>/dev/null
echo
echo "== baseline 3, fan-out floor: ten ${LATENCY_MS} ms buyers called directly, waiting for all (one /ping to each at once per arrival)"
"${FANOUT_RUN[@]}" 2>/dev/null
# leadrouter's own view (warmup included, no generator lag): its decision-time histogram
# (buckets 5, 10, 25 ms) and the outcomes of its calls to the buyers; over its phase (the
# difference from `router_counts` taken right before it), its CPU time per ping and, from a
# `--features count-allocs` build, its allocations per ping.
router_counts() { # "<allocations> <pings> <cpu ticks>" of the router at ops address $1, pid $2
    local ticks
    ticks="$(awk '{ print $14 + $15 }' "/proc/$2/stat" 2>/dev/null || echo 0)"
    curl -fsS --max-time 5 "http://$1/metrics" 2>/dev/null | awk -v ticks="$ticks" '
        /^leadrouter_allocations_total/ { allocs = $NF } /^leadrouter_pings_total/ { pings += $NF }
        END { printf "%d %d %d\n", allocs, pings, ticks }'
}
router_metrics() { # $1 ops address, $2 pid, $3 router_counts before the phase
    local metrics after
    after="$(router_counts "$1" "$2")"
    if metrics="$(curl -fsS --max-time 5 "http://$1/metrics")"; then
        echo "leadrouter /metrics (warmup included):"
        awk '/^leadrouter_decision_duration_seconds_(bucket\{.*le="0\.(005|01|025)"|count)/ { print "  " $0 }
             /^leadrouter_buyer_requests_total/ { split($0, a, "outcome=\""); split(a[2], b, "\""); calls[b[1]] += $NF }
             END { for (o in calls) printf "  buyer calls %s: %d\n", o, calls[o] }' <<<"$metrics"
        awk -v before="$3" -v after="$after" -v hz="$(getconf CLK_TCK)" 'BEGIN {
            split(before, b, " "); split(after, a, " "); pings = a[2] - b[2]
            if (pings <= 0) exit
            printf "  over the phase: %d pings, router CPU per ping %.3f ms", pings, (a[3] - b[3]) * 1000 / hz / pings
            if (a[1] > 0) printf ", allocations per ping %.1f", (a[1] - b[1]) / pings
            printf "\n" }'
    else
        echo "(could not read http://$1/metrics)"
    fi
}
if [ -n "$BEFORE_BIN" ]; then
    echo
    echo "== before ($BEFORE_BIN): pings fanned out to $BUYERS dynamic buyers answering in ${LATENCY_MS} ms"
    counts="$(router_counts "$BEFORE_OPS_ADDR" "$BEFORE_PID")"
    "${BEFORE_RUN[@]}" 2>/dev/null
    router_metrics "$BEFORE_OPS_ADDR" "$BEFORE_PID" "$counts"
fi
echo
echo "== leadrouter: pings fanned out to $BUYERS dynamic buyers answering in ${LATENCY_MS} ms"
counts="$(router_counts "$OPS_ADDR" "$ROUTER_PID")"
"${LEADROUTER_RUN[@]}" 2>/dev/null
router_metrics "$OPS_ADDR" "$ROUTER_PID" "$counts"

# The verdict from the JSON reports: any 5xx, or no bid at all, is a failure.
read -r FIVE_XX BIDS NO_BIDS LR_P99 < <(jq -r '.phases[0] | [.statuses["5xx"], .outcomes.bid, .outcomes.no_bid, .latency.p99_ms] | @tsv' "$OUT/leadrouter.json")
read -r BUYER_P99 < <(jq -r '.phases[0].latency.p99_ms' "$OUT/mock-buyer.json")
read -r ECHO_P99 < <(jq -r '.phases[0].latency.p99_ms' "$OUT/echo.json")
read -r FANOUT_P50 FANOUT_P99 FANOUT_ERRORS CALL_P99 < <(jq -r '[(.phases[] | select(.name == "fanout") | .latency.p50_ms, .latency.p99_ms, .errors), (.phases[] | select(.name == "call") | .latency.p99_ms)] | @tsv' "$OUT/fanout-floor.json")

echo
echo "== mock buyer(s)"
for pid in "${MOCK_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
done
MOCK_PIDS=()
for b in "${!BUYER_ADDRS[@]}"; do
    tail -n 1 "$WORK/mock-buyer-$b.log"
done

if [ -n "$BEFORE_BIN" ]; then
    read -r BEFORE_5XX BEFORE_BIDS BEFORE_P99 < <(jq -r '.phases[0] | [.statuses["5xx"], .outcomes.bid, .latency.p99_ms] | @tsv' "$OUT/before.json")
    echo
    awk -v lr="$BEFORE_P99" -v lat="$LATENCY_MS" -v floor="$FLOOR_MS" -v buyer="$BUYER_P99" -v rate="$RATE" 'BEGIN {
        above = lr - lat
        printf "SUMMARY before rate %s/s: leadrouter p99 %.3f ms - %s ms buyer latency = %.3f ms above (floor <= %s ms: %s); leadrouter p99 - buyer p99 = %.3f ms\n",
            rate, lr, lat, above, floor, (above <= floor ? "met" : "MISSED"), lr - buyer
    }'
    awk -v lr="$BEFORE_P99" -v fanout="$FANOUT_P99" -v rate="$RATE" 'BEGIN {
        printf "SUMMARY before rate %s/s: leadrouter p99 - fan-out floor p99 = %.3f ms\n", rate, lr - fanout
    }'
    [ "$BEFORE_5XX" != "0" ] && echo "(before answered $BEFORE_5XX 5xx; $BEFORE_BIDS pings bid)"
fi
echo
awk -v lr="$LR_P99" -v lat="$LATENCY_MS" -v floor="$FLOOR_MS" -v buyer="$BUYER_P99" -v echo_p99="$ECHO_P99" -v rate="$RATE" 'BEGIN {
    above = lr - lat
    printf "SUMMARY rate %s/s: leadrouter p99 %.3f ms - %s ms buyer latency = %.3f ms above (floor <= %s ms: %s); buyer floor p99 %.3f ms (leadrouter p99 - buyer p99 = %.3f ms), echo p99 %.3f ms\n",
        rate, lr, lat, above, floor, (above <= floor ? "met" : "MISSED"), buyer, lr - buyer, echo_p99
}'
awk -v lr="$LR_P99" -v lat="$LATENCY_MS" -v fanout="$FANOUT_P99" -v rate="$RATE" 'BEGIN {
    printf "SUMMARY rate %s/s: leadrouter p99 - fan-out floor p99 = %.3f ms (leadrouter p99 - %s ms = %.3f ms)\n",
        rate, lr - fanout, lat, lr - lat
}'
awk -v p50="$FANOUT_P50" -v p99="$FANOUT_P99" -v call="$CALL_P99" -v errors="$FANOUT_ERRORS" -v lat="$LATENCY_MS" -v rate="$RATE" 'BEGIN {
    printf "SUMMARY fan-out floor rate %s/s: ten %s ms buyers called directly, waiting for all: p50 %.3f ms, p99 %.3f ms (each call p99 %.3f ms), %s errors\n",
        rate, lat, p50, p99, call, errors
}'
[ "$OUT" != "$WORK" ] && echo "(JSON reports and SVG plots in $OUT)"

STATUS=0
if [ "$FIVE_XX" != "0" ]; then
    echo "FAIL: leadrouter answered $FIVE_XX 5xx" >&2
    STATUS=1
fi
if [ "$BIDS" = "0" ]; then
    echo "FAIL: no ping got a bid" >&2
    STATUS=1
fi
[ "$STATUS" = 0 ] && echo "OK: no 5xx, $BIDS pings bid, $NO_BIDS no_bid"
exit "$STATUS"
