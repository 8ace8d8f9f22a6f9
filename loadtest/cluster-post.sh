#!/usr/bin/env bash
# Same-run comparison on this machine of direct posts (POST /v1/leads), closed loop,
# concurrency 32, on two markets and up to four configurations each (issue 15's figures):
#
#   markets (MARKETS, default "hot spread"):
#     hot:    direct-post.sh's market: 10 prepaid buyers, 10 fixed-price campaigns within
#             50 km of Munich; every lead goes to one buyer (lt-buyer-09, the highest price),
#             so on Redis every sale changes that one buyer's budget book;
#     spread: 50 prepaid buyers, each with one fixed-price campaign (35.00) on its own
#             Munich postal code; the load generator rotates over the 50 postal codes
#             (`loadtest run --zip a,b,...`), so each lead has exactly one eligible buyer
#             and the leads spread evenly over the 50.
#   configurations:
#     a. embedded:   one node on its own (no --redis): the same market's baseline;
#     b. redis x1:   one node with --redis redis://... (budget, dedup, ledger, claims);
#     c. redis x3:   three nodes on the same Redis, one `loadtest run` spreading the load
#                    over them round-robin per request (`--target` three times);
#     d. cluster x3: three nodes on a three-shard Redis Cluster
#                    (--redis redis+cluster://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3).
#
# Every lead is delivered by sync webhook to one `loadtest mock-buyer` (latency 0). Every
# node gets its market's --config and its own --data-dir and ports, and is loaded only once
# its /readyz answers 200.
#
# Each Redis configuration gets fresh redis-servers on free loopback ports (16380 and up,
# each with its cluster bus port +10000 free too) in their own temp dirs, with the durable
# setting `--appendonly yes --appendfsync always --save ""` (every write in the append-only
# file and fsynced before Redis answers; no RDB snapshots). The cluster is three such
# servers with `--cluster-enabled yes`, joined by `redis-cli --cluster create ...
# --cluster-replicas 0 --cluster-yes`, and used once every shard reports
# `cluster_state:ok`. If the nodes refuse the cluster URL (or do not get ready on it),
# configuration d is reported as refused, not measured, and the run goes on; it then fails
# the run only with CLUSTER_REQUIRED=1. SKIP_CLUSTER=1 leaves d out.
#
# Redis cost per sale: `INFO` (`total_commands_processed`; `used_cpu_sys` + `used_cpu_user`)
# is read from every Redis/shard right before each `loadtest run` starts and right after it
# ends, and the sales over the same span are the nodes' own count (leadrouter_sales_total
# from /metrics, summed over the nodes). Both therefore cover the whole run, warm-up and
# drain included (the report's sales and sales/s cover the measured window only): commands
# per sale and CPU µs per sale are the two deltas divided by the sales delta, summed over
# the shards, and split per shard for the cluster. Redis's idle rate with the nodes up and
# no load is printed first (1 s), to show what of it is background. The projected ceiling
# is 1e6 / (Redis CPU µs per sale): the sales per second one Redis core could serve at that
# cost, printed with its arithmetic under the table (and, for the cluster, the same for
# its busiest shard). The cost per sale falls as the load rises: with `appendfsync always`
# Redis fsyncs once per event-loop round, shared by every write of that round, so an
# open-loop run at a low RATE pays more CPU per sale than the closed loop; the closed-loop
# figure is the one to project from.
#
# After each configuration the buyers' balances (GET /v1/buyer/balance) tell how many sales
# each buyer was charged ((10,000,000.00 - balance) / its campaign's price from the admin
# API): the spread over buyers is printed, and a total that differs from the nodes' count
# fails the run (a sale not charged, or charged twice).
#
# With RATE set (e.g. RATE=500) each configuration also gets an open-loop run at that
# fixed arrival rate after the closed loop, so latencies compare at equal load.
#
# The output ends with one markdown table: configuration, market, sales, sales/s, ratio to
# the same market's embedded sales/s, p50/p99 ms, 5xx, Redis commands and CPU µs per sale,
# and the ceiling. Exits non-zero when a configuration answered any 5xx, sold nothing or
# charged its buyers for a different number of sales (a refused cluster aside, as above).
# Everything it starts is stopped on exit.
#
# Environment: CONCURRENCY (32), DURATION (15s), WARMUP (2s), MARKETS ("hot spread"),
# SKIP_CLUSTER=1 (no configuration d), CLUSTER_REQUIRED=1 (a refused cluster fails the run),
# RATE (unset: no open-loop run), OUT_DIR (keep the JSON reports, Redis samples, per-buyer
# counts and node logs there; default: a temp dir removed on exit), NO_BUILD=1 (use the
# release binaries as built), CARGO_TARGET_DIR (target).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
CONCURRENCY="${CONCURRENCY:-32}"
DURATION="${DURATION:-15s}"
WARMUP="${WARMUP:-2s}"
RATE="${RATE:-}"
MARKETS="${MARKETS:-hot spread}"
SKIP_CLUSTER="${SKIP_CLUSTER:-0}"
CLUSTER_REQUIRED="${CLUSTER_REQUIRED:-0}"

BUYER_ADDR=127.0.0.1:19250
# Node n (1..3): public 1828n, ops 1928n, gRPC 2028n. All below 32768, Linux's ephemeral
# range (32768-60999): a port in that range can be taken at any moment by an outgoing
# connection's local end (gRPC on 5025n once failed with "Address already in use").
NODE_PUBLIC=(127.0.0.1:18281 127.0.0.1:18282 127.0.0.1:18283)
NODE_OPS=(127.0.0.1:19281 127.0.0.1:19282 127.0.0.1:19283)
NODE_GRPC=(127.0.0.1:20281 127.0.0.1:20282 127.0.0.1:20283)
SUPPLIER_KEY=loadtest-supplier-key-0001
ADMIN_TOKEN=loadtest-admin-token-0001
# Every node of one Redis makes dedup keys under the same secret.
export LEADROUTER_DEDUP_SECRET=10ad7e5710ad7e5710ad7e5710ad7e5710ad7e5710ad7e5710ad7e5710ad7e57
# The hot market's buyers (write_direct_market).
BUYERS=10
# The spread market: one buyer per postal code, all in Munich and all in the bundled
# postal table (assets/geo/postal-centroids.csv).
SPREAD_ZIPS=(80331 80333 80335 80336 80337 80339 80469 80538 80539 80634
    80636 80637 80638 80639 80686 80687 80689 80796 80797 80798
    80799 80801 80802 80803 80804 80805 80807 80809 80933 80935
    80937 80939 80992 80993 80995 80997 80999 81241 81243 81245
    81247 81249 81369 81371 81373 81375 81377 81379 81475 81476)
# Every buyer's opening balance (the markets' topups), in cents.
OPENING_CENTS=1000000000
# Open-loop leads are numbered from here, so they never repeat a closed-loop lead (the
# nodes remember leads for deduplication).
OPEN_FIRST_ID=100000000

read -r -a MARKET_LIST <<<"$MARKETS"
[ "${#MARKET_LIST[@]}" -gt 0 ] || { echo "MARKETS is empty" >&2; exit 2; }
for market in "${MARKET_LIST[@]}"; do
    case "$market" in
        hot | spread) ;;
        *) echo "unknown market '$market' in MARKETS (hot, spread)" >&2; exit 2 ;;
    esac
done
[ "$(printf '%s\n' "${MARKET_LIST[@]}" | sort | uniq -d)" = "" ] || { echo "MARKETS names a market twice: $MARKETS" >&2; exit 2; }

WORK="$(mktemp -d -t leadrouter-cluster.XXXXXX)"
OUT_DIR="${OUT_DIR:-$WORK/out}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
PIDS=()        # for the whole run: the mock buyer
RUN_PIDS=()    # for one configuration: redis-servers and the nodes
NODE_LOGS=()   # for one configuration: the nodes' logs, copied to OUT_DIR after the run
REDIS_PORTS=() # for one configuration: its Redis (one) or its shards (three)
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

declare -A MARKET_CONFIG MARKET_ZIPS MARKET_BUYERS
MARKET_CONFIG[hot]="$WORK/leadrouter-hot.toml"
write_direct_market "${MARKET_CONFIG[hot]}" "loadtest/cluster-post.sh (market hot: the market of direct-post.sh)"
MARKET_ZIPS[hot]=80331
MARKET_BUYERS[hot]="$BUYERS"
MARKET_CONFIG[spread]="$WORK/leadrouter-spread.toml"
write_spread_market "${MARKET_CONFIG[spread]}" "loadtest/cluster-post.sh (market spread)" "${SPREAD_ZIPS[@]}"
MARKET_ZIPS[spread]="$(IFS=,; echo "${SPREAD_ZIPS[*]}")"
MARKET_BUYERS[spread]="${#SPREAD_ZIPS[@]}"

# A free loopback port for redis-server, from 16380 up, whose cluster bus port (+10000) is
# free too.
free_port() {
    local port
    for port in $(seq 16380 16479); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null &&
            ! (exec 3<>"/dev/tcp/127.0.0.1/$((port + 10000))") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    echo "no free port in 16380-16479 (with its +10000 free)" >&2
    return 1
}

# Starts a fresh durable redis-server in $1 (a new dir), more arguments added to its
# command line; appends its port to REDIS_PORTS and sets REDIS_PORT.
start_redis() {
    local dir="$1"
    shift
    mkdir -p "$dir"
    REDIS_PORT="$(free_port)"
    local -a cmd=(redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$dir"
        --appendonly yes --appendfsync always --save "" "$@")
    "${cmd[@]}" >"$dir/redis.log" 2>&1 &
    RUN_PIDS+=($!)
    wait_for_port "127.0.0.1:$REDIS_PORT" || { cat "$dir/redis.log" >&2; exit 1; }
    REDIS_PORTS+=("$REDIS_PORT")
    show "${cmd[@]}"
    redis-cli -p "$REDIS_PORT" config get appendfsync | paste -sd' ' | sed 's/^/   redis: /'
}

# Starts a three-shard Redis Cluster under $1 (three durable servers with
# --cluster-enabled, no replicas) and waits until every shard reports cluster_state:ok
# (at most ~20 s); sets REDIS_URL to the redis+cluster:// URL of the three.
start_cluster() {
    local dir="$1" n port i ok
    local -a addrs=()
    for n in 1 2 3; do
        start_redis "$dir/shard$n" --cluster-enabled yes --cluster-config-file "$dir/shard$n/nodes.conf"
        addrs+=("127.0.0.1:$REDIS_PORT")
    done
    local -a create=(redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes)
    show "${create[@]}"
    "${create[@]}" >"$dir/cluster-create.log" 2>&1 || {
        echo "redis-cli --cluster create failed:" >&2
        cat "$dir/cluster-create.log" >&2
        exit 1
    }
    for i in $(seq 1 200); do
        ok=0
        for port in "${REDIS_PORTS[@]}"; do
            if redis-cli -p "$port" cluster info | tr -d '\r' | grep -qx 'cluster_state:ok'; then
                ok=$((ok + 1))
            fi
        done
        [ "$ok" = "${#REDIS_PORTS[@]}" ] && break
        if [ "$i" = 200 ]; then
            echo "the cluster is not ok after 20 s:" >&2
            redis-cli -p "${REDIS_PORTS[0]}" cluster info >&2
            exit 1
        fi
        sleep 0.1
    done
    n=0
    for port in "${REDIS_PORTS[@]}"; do
        n=$((n + 1))
        echo "   redis: shard $n 127.0.0.1:$port cluster_state:ok, slots" \
            "$(redis-cli -p "$port" cluster nodes | awk '/myself/ { for (i = 9; i <= NF; i++) printf "%s ", $i }')"
    done
    REDIS_URL="redis+cluster://$(IFS=,; echo "${addrs[*]}")"
}

# Starts node $1 (0-based) of market $2 with a fresh data dir under $3; more arguments go
# to the node (--redis URL). Waits until its /readyz answers 200 (at most ~20 s). Returns
# 1, with NODE_FAILURE set and the node's log on stderr, when the node exits before it is
# ready or is not ready in time.
start_node() {
    local n="$1" market="$2" dir="$3"
    shift 3
    mkdir -p "$dir"
    local -a cmd=("$LEADROUTER" --config "${MARKET_CONFIG[$market]}" --listen "${NODE_PUBLIC[$n]}"
        --ops-listen "${NODE_OPS[$n]}" --grpc-listen "${NODE_GRPC[$n]}" --data-dir "$dir/data"
        --admin-token "$ADMIN_TOKEN" "$@")
    "${cmd[@]}" >"$dir/leadrouter.log" 2>&1 &
    local pid=$!
    RUN_PIDS+=("$pid")
    NODE_LOGS+=("$dir/leadrouter.log")
    show "${cmd[@]}"
    local i
    for i in $(seq 1 200); do
        if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://${NODE_OPS[$n]}/readyz")" = 200 ]; then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid" 2>/dev/null
            NODE_FAILURE="node $((n + 1)) exited (status $?) before it was ready: $(grep -v '^[[:space:]]*$' "$dir/leadrouter.log" | tail -n 1)"
            echo "$NODE_FAILURE; its log:" >&2
            tail -n 20 "$dir/leadrouter.log" | sed 's/^/     | /' >&2
            return 1
        fi
        sleep 0.1
    done
    NODE_FAILURE="node $((n + 1)) not ready after 20 s: $(grep -v '^[[:space:]]*$' "$dir/leadrouter.log" | tail -n 1)"
    echo "$NODE_FAILURE; its log:" >&2
    tail -n 20 "$dir/leadrouter.log" | sed 's/^/     | /' >&2
    return 1
}

# Sales counted by one node (leadrouter_sales_total, all labels summed).
node_sales() {
    curl -s "http://${NODE_OPS[$1]}/metrics" | awk '/^leadrouter_sales_total/ { s += $NF } END { printf "%d", s }'
}

# Sales counted by the first $1 nodes together.
nodes_sales() {
    local n total=0
    for n in $(seq 0 $(($1 - 1))); do
        total=$((total + $(node_sales "$n")))
    done
    echo "$total"
}

# One line per Redis/shard of this configuration: port, total_commands_processed and
# used_cpu_sys + used_cpu_user (seconds), from one INFO each.
redis_sample() {
    local port
    for port in "${REDIS_PORTS[@]}"; do
        redis-cli -p "$port" info | tr -d '\r' | awk -F: -v port="$port" '
            $1 == "total_commands_processed" { c = $2 }
            $1 == "used_cpu_sys" || $1 == "used_cpu_user" { cpu += $2 }
            END { printf "%s %d %.6f\n", port, c, cpu }'
    done
}

# The JSON of Redis's cost over a span: $1 and $2 the redis_sample lines before and after,
# $3 the sales the nodes counted over the span.
redis_cost() {
    jq -n --arg before "$1" --arg after "$2" --argjson sales "$3" '
        def lines($s): $s | split("\n") | map(select(length > 0) | split(" ")
            | {port: .[0], commands: (.[1] | tonumber), cpu_s: (.[2] | tonumber)});
        [lines($before), lines($after)] | transpose | map({port: .[1].port,
            commands: (.[1].commands - .[0].commands), cpu_s: (.[1].cpu_s - .[0].cpu_s)})
        | map(. + (if $sales > 0 then {commands_per_sale: (.commands / $sales), cpu_us_per_sale: (.cpu_s * 1e6 / $sales)} else {} end))
        | {sales: $sales, commands: (map(.commands) | add), cpu_s: (map(.cpu_s) | add), shards: .}
        | . + (if $sales > 0 then {commands_per_sale: (.commands / $sales), cpu_us_per_sale: (.cpu_s * 1e6 / $sales)} else {} end)'
}

# jq definitions: f1 and f3 print a number with one and three decimals.
# shellcheck disable=SC2016 # $t is jq's
JQ_FORMAT='def f1: (. * 10 | round) as $t | "\(($t - $t % 10) / 10).\($t % 10)";
    def f3: (. * 1000 | round) as $t | "\(($t - $t % 1000) / 1000).\("00\($t % 1000)" | .[-3:])";'

# Prints the Redis cost in file $1 (redis_cost's JSON) as lines prefixed by $2.
show_redis_cost() {
    jq -r --arg p "$2" "$JQ_FORMAT"'
        "\($p)\(.sales) sales (nodes), \(.commands) commands = \(.commands_per_sale // 0 | f1) per sale, CPU \(.cpu_s | f3) s = \(.cpu_us_per_sale // 0 | f1) µs per sale",
        (if (.shards | length) > 1 then .shards[] | "\($p)  shard 127.0.0.1:\(.port): \(.commands) commands = \(.commands_per_sale // 0 | f1) per sale, CPU \(.cpu_s | f3) s = \(.cpu_us_per_sale // 0 | f1) µs per sale" else empty end)' "$1"
}

# Stops this configuration's processes (nodes and redis-servers).
stop_run() {
    stop_pids RUN_PIDS
    RUN_PIDS=()
    NODE_LOGS=()
    REDIS_PORTS=()
}

STATUS=0
# The table's rows, one per run (or refused configuration): the report's path without
# .json (the Redis cost is beside it as .redis.json), the configuration's label, the
# market, the mode (closed, or open at RATE), and `refused: <reason>` or empty.
ROW_FILES=()
ROW_LABELS=()
ROW_MARKETS=()
ROW_MODES=()
ROW_REFUSED=()

# One `loadtest run` ($3... the command, writing $1.json) of configuration label $2 on
# market and mode $MARKET/$MODE against the first $NODES nodes, with Redis sampled right
# before and after it; writes $1.redis.json when there is a Redis.
run_measured() {
    local file="$1" label="$2"
    shift 2
    local sales_before sales_after before="" after=""
    show "$@"
    echo "   ($(uptime | sed 's/.*load average/load average/'))"
    sales_before="$(nodes_sales "$NODES")"
    if [ "${#REDIS_PORTS[@]}" -gt 0 ]; then
        before="$(redis_sample)"
    fi
    "$@" 2>"$file.stderr" || {
        echo "loadtest run failed:" >&2
        cat "$file.stderr" >&2
        exit 1
    }
    if [ "${#REDIS_PORTS[@]}" -gt 0 ]; then
        after="$(redis_sample)"
    fi
    sales_after="$(nodes_sales "$NODES")"
    rm -f "$file.stderr"
    if [ "${#REDIS_PORTS[@]}" -gt 0 ]; then
        redis_cost "$before" "$after" "$((sales_after - sales_before))" >"$file.redis.json"
        echo "   redis over this run (warm-up and drain included):"
        show_redis_cost "$file.redis.json" "     "
    fi
    local five_xx sold
    read -r five_xx sold < <(jq -r '[(.phases | map(.statuses["5xx"]) | add), (.phases | map(.outcomes.sold) | add)] | @tsv' "$file.json")
    if [ "$five_xx" != "0" ]; then
        echo "FAIL: $MARKET $label ($MODE) answered $five_xx 5xx" >&2
        STATUS=1
    fi
    if [ "$sold" = "0" ]; then
        echo "FAIL: $MARKET $label ($MODE) sold nothing" >&2
        STATUS=1
    fi
    ROW_FILES+=("$file")
    ROW_LABELS+=("$label")
    ROW_MARKETS+=("$MARKET")
    ROW_MODES+=("$MODE")
    ROW_REFUSED+=("")
}

# How many sales each buyer of market $1 was charged, from its balance on node 1 and its
# campaign's price (admin API), written to $2 (buyer, sales, held); prints the spread and
# fails the run when the total is not $3 (the nodes' count).
check_buyers() {
    local market="$1" file="$2" counted="$3" i id balance held price
    : >"$file"
    for i in $(seq 1 "${MARKET_BUYERS[$market]}"); do
        id="$(printf '%02d' "$i")"
        # `held` counts what nodes leased in advance (DESIGN §9; returned once quiet): what
        # is still held is the rest.
        read -r balance held < <(curl -sf -H "Authorization: Bearer loadtest-buyer-key-00$id" \
            "http://${NODE_PUBLIC[0]}/v1/buyer/balance" |
            jq -r '[.balance, (((.held | tonumber) - ((.leased // "0") | tonumber)) * 100 | round / 100)] | @tsv')
        price="$(curl -sf -H "Authorization: Bearer $ADMIN_TOKEN" \
            "http://${NODE_OPS[0]}/admin/v1/campaigns/lt-campaign-$id" | jq -r '.pricing.price')"
        awk -v id="lt-buyer-$id" -v b="$balance" -v h="$held" -v p="$price" -v open="$OPENING_CENTS" 'BEGIN {
            spent = open - int(b * 100 + 0.5); price = int(p * 100 + 0.5)
            if (spent % price != 0) { printf "%s %.2f/%s %s\n", id, spent / price, p, h } else { printf "%s %d %s\n", id, spent / price, h }
        }' >>"$file"
    done
    local total
    total="$(awk '{ s += $2 } END { printf "%d", s }' "$file")"
    awk -v counted="$counted" '
        { n++; s += $2; if ($2 > 0) sold++; if (n == 1 || $2 < min) { min = $2; minid = $1 } if (n == 1 || $2 > max) { max = $2; maxid = $1 }
          if ($3 + 0 != 0) held = held " " $1 ":" $3 }
        END {
            printf "   sales per buyer (charged: (opening balance - balance) / price): %d of %d buyers sold to, ", sold, n
            if (sold == 1) printf "all to %s (%d)", maxid, max
            else printf "min %d (%s), max %d (%s), max/min %.3f, mean %.1f", min, minid, max, maxid, (min > 0 ? max / min : 0), s / n
            printf "; %d charged, %d counted by the nodes%s\n", s, counted, (held != "" ? "; still held:" held : "")
        }' "$file"
    if [ "$total" != "$counted" ]; then
        echo "FAIL: $market: the buyers were charged for $total sales, the nodes counted $counted (see $file)" >&2
        STATUS=1
    fi
}

# Runs configuration $2 (a slug: embedded, redis-x1, redis-x3, cluster-x3) of market $1.
run_config() {
    MARKET="$1"
    local slug="$2" label nodes kind n name="$1-$2" dir="$WORK/$1-$2"
    case "$slug" in
        embedded) label="a. embedded" nodes=1 kind=none ;;
        redis-x1) label="b. redis x1" nodes=1 kind=redis ;;
        redis-x3) label="c. redis x3" nodes=3 kind=redis ;;
        cluster-x3) label="d. cluster x3" nodes=3 kind=cluster ;;
    esac
    NODES="$nodes"
    echo
    echo "== $MARKET market, $label"
    local -a redis_args=()
    case "$kind" in
        redis)
            start_redis "$dir/redis"
            redis_args=(--redis "redis://127.0.0.1:$REDIS_PORT/")
            ;;
        cluster)
            start_cluster "$dir/redis"
            redis_args=(--redis "$REDIS_URL")
            ;;
    esac
    for n in $(seq 0 $((nodes - 1))); do
        NODE_FAILURE=
        if ! start_node "$n" "$MARKET" "$dir/node$((n + 1))" "${redis_args[@]}"; then
            [ "$kind" = cluster ] || exit 1
            echo "   REFUSED: the nodes do not run on the Redis Cluster (${redis_args[1]}); configuration d is not measured"
            if [ "$CLUSTER_REQUIRED" = 1 ]; then
                STATUS=1
            fi
            local mode
            for mode in closed ${RATE:+open}; do
                ROW_FILES+=("$OUT_DIR/$name")
                ROW_LABELS+=("$label")
                ROW_MARKETS+=("$MARKET")
                ROW_MODES+=("$mode")
                ROW_REFUSED+=("refused: ${NODE_FAILURE:0:200}")
            done
            cp "${NODE_LOGS[$n]}" "$OUT_DIR/$name-node$((n + 1)).log"
            stop_run
            return 0
        fi
    done
    if [ "${#REDIS_PORTS[@]}" -gt 0 ]; then
        local idle_before idle_after
        idle_before="$(redis_sample)"
        sleep 1
        idle_after="$(redis_sample)"
        redis_cost "$idle_before" "$idle_after" 0 |
            jq -r '"   redis idle (nodes up, no load, 1 s): \(.commands) commands, CPU \(.cpu_s * 1000 | round) ms"'
    fi

    local -a targets=()
    for n in $(seq 0 $((nodes - 1))); do
        targets+=(--target "http://${NODE_PUBLIC[$n]}")
    done
    local -a common=("$LOADTEST" run "${targets[@]}" --key "$SUPPLIER_KEY" --mix direct
        --vertical solar --zip "${MARKET_ZIPS[$MARKET]}" --country DE --duration "$DURATION" --warmup "$WARMUP")
    MODE=closed
    run_measured "$OUT_DIR/$name" "$label" "${common[@]}" --mode closed --concurrency "$CONCURRENCY" --json "$OUT_DIR/$name.json"
    if [ -n "$RATE" ]; then
        MODE=open
        run_measured "$OUT_DIR/$name-open" "$label" "${common[@]}" --mode open --rate "$RATE" --first-id "$OPEN_FIRST_ID" \
            --json "$OUT_DIR/$name-open.json"
    fi

    local -a per_node=()
    for n in $(seq 0 $((nodes - 1))); do
        per_node+=("node$((n + 1)) $(node_sales "$n")")
    done
    echo "   sales counted by the nodes (/metrics, warm-up included): ${per_node[*]}"
    check_buyers "$MARKET" "$OUT_DIR/$name-buyers.txt" "$(nodes_sales "$nodes")"
    # The nodes' ERROR lines, grouped (timestamps and sale ids cut), and the logs kept.
    for n in $(seq 0 $((nodes - 1))); do
        local log="${NODE_LOGS[$n]}" errors
        errors="$(grep -c ' ERROR ' "$log" || true)"
        echo "   node$((n + 1)) log: $errors ERROR lines (kept as $OUT_DIR/$name-node$((n + 1)).log)"
        { grep ' ERROR ' "$log" || true; } | sed -E 's/^[^ ]+ +ERROR +//; s/ sale_id=[^ ]+//' | sort | uniq -c | sort -rn |
            head -n 3 | sed 's/^/     /'
        cp "$log" "$OUT_DIR/$name-node$((n + 1)).log"
    done
    local port
    for port in "${REDIS_PORTS[@]}"; do
        redis-cli -p "$port" info persistence | tr -d '\r' | grep -E '^aof_(enabled|last_write_status):' | paste -sd' ' |
            sed "s/^/   redis 127.0.0.1:$port: /"
        # Which commands the run cost (counted since the server started: this run's only).
        redis-cli -p "$port" info commandstats | tr -d '\r' | grep '^cmdstat_' >"$OUT_DIR/$name-$port.commandstats.txt"
    done
    stop_run
}

echo
machine
echo "== $(date -u '+%Y-%m-%d %H:%M UTC'), $(uptime | sed 's/.*load average/load average/')"
echo "   (markets: $MARKETS; configs: ${MARKET_CONFIG[*]}; JSON reports in $OUT_DIR)"
MOCK_CMD=("$LOADTEST" mock-buyer --listen "$BUYER_ADDR" --latency-ms 0)
show "${MOCK_CMD[@]}"
"${MOCK_CMD[@]}" 2>"$WORK/mock-buyer.log" &
PIDS+=($!)
wait_for_port "$BUYER_ADDR"

CONFIGS=(embedded redis-x1 redis-x3)
[ "$SKIP_CLUSTER" = 1 ] || CONFIGS+=(cluster-x3)
for market in "${MARKET_LIST[@]}"; do
    for slug in "${CONFIGS[@]}"; do
        run_config "$market" "$slug"
    done
done

echo
echo "== mock buyer"
kill -TERM "${PIDS[0]}" 2>/dev/null || true
wait "${PIDS[0]}" 2>/dev/null || true
tail -n 1 "$WORK/mock-buyer.log"

# The table. Sales and sales/s are the report's (the measured window); the Redis columns
# are over the whole run (redis_cost).
declare -A EMBEDDED_RATE
ROWS=()
for i in "${!ROW_FILES[@]}"; do
    mode="${ROW_MODES[$i]}"
    if [ "$mode" = open ]; then
        how="open $RATE/s"
    else
        how="closed $CONCURRENCY"
    fi
    if [ -n "${ROW_REFUSED[$i]}" ]; then
        ROWS+=("| ${ROW_LABELS[$i]}, $how | ${ROW_MARKETS[$i]} | ${ROW_REFUSED[$i]//|/\\|} |$(printf ' |%.0s' {1..8})")
        continue
    fi
    read -r sold rate p50 p99 five_xx < <(jq -r '.phases[0] as $p | [$p.outcomes.sold, ($p.outcomes.sold / .run.duration_s),
        $p.latency.p50_ms, $p.latency.p99_ms, $p.statuses["5xx"]] | @tsv' "${ROW_FILES[$i]}.json")
    key="${ROW_MARKETS[$i]}-$mode"
    if [ "${ROW_LABELS[$i]}" = "a. embedded" ]; then
        EMBEDDED_RATE[$key]="$rate"
    fi
    ratio=-
    [ -z "${EMBEDDED_RATE[$key]:-}" ] || ratio="$(awk -v r="$rate" -v e="${EMBEDDED_RATE[$key]}" 'BEGIN { printf "%.3f", (e > 0 ? r / e : 0) }')"
    cmds=- cpu=- ceiling=-
    redis="${ROW_FILES[$i]}.redis.json"
    if [ -f "$redis" ] && [ "$(jq -r '.sales' "$redis")" != 0 ]; then
        read -r cmds cpu ceiling < <(jq -r "$JQ_FORMAT"'[(.commands_per_sale | f1), (.cpu_us_per_sale | f1),
            (1e6 / .cpu_us_per_sale | round)] | @tsv' "$redis")
    fi
    ROWS+=("$(printf '| %s, %s | %s | %d | %.0f | %s | %.3f | %.3f | %d | %s | %s | %s |' "${ROW_LABELS[$i]}" "$how" \
        "${ROW_MARKETS[$i]}" "$sold" "$rate" "$ratio" "$p50" "$p99" "$five_xx" "$cmds" "$cpu" "$ceiling")")
done

echo
echo "== summary: direct posts, ${DURATION} measured after ${WARMUP} warm-up, latencies in ms"
echo
echo "| configuration | market | sales | sales/s | × embedded | p50 ms | p99 ms | 5xx | Redis commands/sale | Redis CPU µs/sale | ceiling: sales/s per Redis core |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
printf '%s\n' "${ROWS[@]}"
echo
echo "Sales and sales/s: the measured window (the report). Redis columns: INFO before and after the"
echo "whole loadtest run (warm-up and drain included) over the sales the nodes counted in that span,"
echo "summed over the shards. The ceiling is 1e6 µs / (Redis CPU µs per sale):"
for i in "${!ROW_FILES[@]}"; do
    redis="${ROW_FILES[$i]}.redis.json"
    if [ -n "${ROW_REFUSED[$i]}" ] || [ ! -f "$redis" ] || [ "$(jq -r '.sales' "$redis")" = 0 ]; then
        continue
    fi
    jq -r --arg name "${ROW_MARKETS[$i]} ${ROW_LABELS[$i]} (${ROW_MODES[$i]})" "$JQ_FORMAT"'
        "- \($name): \(.cpu_s * 1e6 | round) µs Redis CPU / \(.sales) sales = \(.cpu_us_per_sale | f1) µs per sale; 1e6 / \(.cpu_us_per_sale | f1) = \(1e6 / .cpu_us_per_sale | round) sales/s per Redis core",
        (if (.shards | length) > 1 then
            (.shards | max_by(.cpu_s)) as $b
            | "  per shard: " + (.shards | map("127.0.0.1:\(.port) \(.commands_per_sale | f1) commands, \(.cpu_us_per_sale | f1) µs") | join("; ")) + " per sale",
              "  busiest shard 127.0.0.1:\($b.port): 1e6 / \($b.cpu_us_per_sale | f1) = \(1e6 / $b.cpu_us_per_sale | round) sales/s before its core is full"
         else empty end)' "$redis"
done

REFUSED=0
for refused in "${ROW_REFUSED[@]}"; do
    [ -z "$refused" ] || REFUSED=$((REFUSED + 1))
done
echo
if [ "$REFUSED" != 0 ] && [ "$CLUSTER_REQUIRED" = 1 ]; then
    echo "FAIL: $REFUSED run(s) not measured: the nodes refused the Redis Cluster (see above), and CLUSTER_REQUIRED=1" >&2
elif [ "$REFUSED" != 0 ]; then
    echo "NOTE: $REFUSED run(s) not measured: the nodes refused the Redis Cluster (see above; SKIP_CLUSTER=1 leaves it out, CLUSTER_REQUIRED=1 fails on it)"
fi
if [ "$STATUS" = 0 ]; then
    echo "OK: no 5xx, every measured configuration sold, every sale charged once"
fi
exit "$STATUS"
