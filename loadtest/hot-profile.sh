#!/usr/bin/env bash
# Where a direct post's time goes (issue 17; BENCHMARKS.md, "Hot path (issue 17)"): one
# leadrouter (LEADROUTER, default the release build) on direct-post.sh's market (FORMAT:
# native = sync webhook to `loadtest mock-buyer --latency-ms 0`, or pull), loaded closed
# loop (CONCURRENCY 32) from WARMUP (3 s) on, and during SPAN (8 s) one of (WHAT): `perf`
# (perf record -F $FREQ (499) -g, CALLGRAPH=dwarf for whole stacks, on the router, then the
# top symbols of
# `perf report --no-children`, and folded stacks when inferno is installed), `strace`
# (strace -c -f: syscalls by name, divided by the requests made meanwhile), `allocs` (the
# counter of a `--features count-allocs` build on /metrics, per direct post), `cpu` (the
# router's CPU time per sale), `allocsites` (uprobes on mimalloc's entry points, recorded with
# DWARF stacks; one second of them sorted by where they were made, by loadtest/allocsites.py,
# which needs python3; ALLOCS_PER_REQUEST, from a `WHAT=allocs` run, turns shares into
# counts), `locks` (uprobes where the slow paths of std's, parking_lot's and dashmap's locks
# enter and return, entered only under contention: how many per request and the time
# between; LOCK_STACKS=1 records stacks too, to name the function of ours each was taken
# under, which slows every hit and so stretches the waits).
# MIX=ping measures pings instead (ping-fanout.sh's market is
# not needed: the pings go to the same fixed-price market and are answered from its
# standing bids). ROUTER_ARGS are more arguments for the router, e.g.
# "--redis redis://127.0.0.1:6379/" to measure it on Redis. Results go to OUT_DIR (default
# /tmp/hot-profile).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
LEADROUTER="${LEADROUTER:-$TARGET_DIR/release/leadrouter}"
LOADTEST="${LOADTEST:-$TARGET_DIR/release/loadtest}"
WHAT="${WHAT:-perf}"
FORMAT="${FORMAT:-native}"
MIX="${MIX:-direct}"
CONCURRENCY="${CONCURRENCY:-32}"
WARMUP="${WARMUP:-3}"
SPAN="${SPAN:-8}"
OUT="${OUT_DIR:-/tmp/hot-profile}"
read -r -a ROUTER_EXTRA <<<"${ROUTER_ARGS:-}"
BUYER_ADDR=127.0.0.1:19200
ADDR=127.0.0.1:18080
OPS=127.0.0.1:19090
SUPPLIER_KEY=loadtest-supplier-key-0001
BUYERS=10
mkdir -p "$OUT"
WORK="$(mktemp -d -t hot-profile.XXXXXX)"
PIDS=()
# shellcheck source=loadtest/lib.sh
source "$ROOT/loadtest/lib.sh"
trap 'stop_all; rm -rf "$WORK"' EXIT INT TERM

# Uprobes on the router's binary, named $1, at the first symbol matching $2 (nm); their events
# go to PROBES. Removed again on exit.
PROBES=""
probe() {
    local symbol
    symbol="$(nm "$LEADROUTER" | awk -v pattern="$2" '!found && $3 ~ pattern { print $3; found = 1 }')"
    [ -n "$symbol" ] || { echo "no symbol like $2 in $LEADROUTER" >&2; return; }
    perf probe -q -x "$LEADROUTER" --add "$1=$symbol" 2>/dev/null || true
    PROBES="${PROBES:+$PROBES,}probe_leadrouter:$1"
    if [ "${3:-}" = timed ]; then
        # And where it returns (perf names it $1__return): the time between is the wait.
        perf probe -q -x "$LEADROUTER" --no-demangle --add "$1=$symbol%return" 2>/dev/null || true
        PROBES="$PROBES,probe_leadrouter:$1__return"
    fi
}
case "$WHAT" in
    allocsites)
        # mimalloc's entry points: every Rust allocation goes through one of them.
        for fn in mi_malloc_aligned mi_zalloc_aligned mi_realloc_aligned; do probe "$fn" "^$fn\$"; done ;;
    locks)
        # The slow paths of the locks in the binary, where they enter and return: entered
        # only when a lock was taken (parking_lot and dashmap then spin, then park).
        probe std_mutex '5Mutex14lock_contended' timed
        probe std_rwlock_read '6RwLock14read_contended' timed
        probe std_rwlock_write '6RwLock15write_contended' timed
        probe parking_lot_mutex '9raw_mutex8RawMutex9lock_slow' timed
        probe parking_lot_read '11parking_lot10raw_rwlock9RawRwLock16lock_shared_slow' timed
        probe parking_lot_write '11parking_lot10raw_rwlock9RawRwLock19lock_exclusive_slow' timed
        probe dashmap_read '7dashmap4lock9RawRwLock16lock_shared_slow' timed
        probe dashmap_write '7dashmap4lock9RawRwLock19lock_exclusive_slow' timed ;;
esac
if [ -n "$PROBES" ]; then
    trap 'stop_all; rm -rf "$WORK"; perf probe -q -d "probe_leadrouter:*" 2>/dev/null || true' EXIT INT TERM
fi
write_direct_market "$WORK/market.toml" "loadtest/hot-profile.sh" "$FORMAT"
"$LOADTEST" mock-buyer --listen "$BUYER_ADDR" --latency-ms 0 2>"$WORK/mock.log" &
MOCK=$!
PIDS+=($!)
"$LEADROUTER" --config "$WORK/market.toml" --listen "$ADDR" --ops-listen "$OPS" --data-dir "$WORK/data" \
    --admin-token loadtest-admin-token-0001 "${ROUTER_EXTRA[@]}" >"$WORK/leadrouter.log" 2>&1 &
ROUTER=$!
PIDS+=($!)
wait_for_port "$BUYER_ADDR"
wait_for_port "$ADDR" || { cat "$WORK/leadrouter.log" >&2; exit 1; }

counter() { # the sum of metric $1 on /metrics
    curl -sf "http://$OPS/metrics" | awk -v name="$1" '$1 ~ "^"name"([{]|$)" { s += $NF } END { printf "%d\n", s }'
}
requests() {
    if [ "$MIX" = ping ]; then counter leadrouter_pings_total; else counter leadrouter_leads_total; fi
}
run_args=(run --target "http://$ADDR" --key "$SUPPLIER_KEY" --vertical solar --zip 80331 --country DE
    --mode closed --concurrency "$CONCURRENCY" --duration "$((SPAN + 30))s" --warmup "${WARMUP}s"
    --json "$OUT/run-$WHAT.json")
if [ "$MIX" = ping ]; then run_args+=(--mix ping); else run_args+=(--mix direct); fi
echo "== $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg); $LEADROUTER, format $FORMAT, mix $MIX, $WHAT"
"$LOADTEST" "${run_args[@]}" 2>/dev/null >"$OUT/run-$WHAT.txt" &
CLIENT=$!
sleep "$WARMUP"
before="$(requests)"
sales_before="$(counter leadrouter_sales_total)"
allocs_before="$(counter leadrouter_allocations_total)"
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
others_before="$(($(cpu_ticks "$MOCK") + $(cpu_ticks "$CLIENT")))"
user_before="$(awk '{ print $14 }' "/proc/$ROUTER/stat")"
ticks_before="$(awk '{ print $14 + $15 }' "/proc/$ROUTER/stat")"
case "$WHAT" in
    perf)
        perf record -F "${FREQ:-499}" --call-graph "${CALLGRAPH:-fp}" -p "$ROUTER" -o "$OUT/perf.data" -- sleep "$SPAN" 2>"$OUT/perf-record.log" ;;
    allocsites)
        perf record -e "$PROBES" --call-graph dwarf,16384 -p "$ROUTER" -o "$OUT/allocsites.data" -- sleep "$SPAN" 2>"$OUT/perf-record.log" ;;
    locks)
        # Stacks name the functions but slow every probe hit, which stretches the waits.
        stacks=()
        [ "${LOCK_STACKS:-0}" = 1 ] && stacks=(--call-graph dwarf,16384)
        perf record -e "$PROBES" "${stacks[@]}" -p "$ROUTER" -o "$OUT/locks.data" -- sleep "$SPAN" 2>"$OUT/perf-record.log" ;;
    strace)
        timeout -s INT "$SPAN" strace -c -f -p "$ROUTER" -o "$OUT/strace.txt" || true ;;
    *)
        sleep "$SPAN" ;;
esac
after="$(requests)"
sales="$(($(counter leadrouter_sales_total) - sales_before))"
allocs="$(($(counter leadrouter_allocations_total) - allocs_before))"
others="$(($(cpu_ticks "$MOCK") + $(cpu_ticks "$CLIENT") - others_before))"
user="$(($(awk '{ print $14 }' "/proc/$ROUTER/stat") - user_before))"
ticks="$(($(awk '{ print $14 + $15 }' "/proc/$ROUTER/stat") - ticks_before))"
kill -INT "$CLIENT" 2>/dev/null || true; wait "$CLIENT" || true
n=$((after - before))
echo "requests in the span: $n ($MIX), sales: $sales, load after: $(cut -d' ' -f1-3 /proc/loadavg)"
awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" -v n="$n" -v u="$user" \
    'BEGIN { if (n > 0) printf "router CPU: %.1f µs per request (user %.1f, system %.1f)\n", t * 1e6 / hz / n, u * 1e6 / hz / n, (t - u) * 1e6 / hz / n }'
# What the load generator and the mock buyer spend on the same two cores bounds what any
# router could reach (issue 17's ratio to the echo server).
awk -v o="$others" -v hz="$(getconf CLK_TCK)" -v n="$n" 'BEGIN { if (n > 0) printf "generator and mock buyer CPU: %.1f µs per request\n", o * 1e6 / hz / n }'
case "$WHAT" in
    perf)
        perf report -i "$OUT/perf.data" --no-children --sort symbol --percent-limit 0.7 --stdio 2>/dev/null \
            | grep -E '^ +[0-9]' | head -n 40 | tee "$OUT/perf-top.txt"
        if command -v inferno-collapse-perf >/dev/null; then
            perf script -i "$OUT/perf.data" 2>/dev/null | inferno-collapse-perf >"$OUT/perf.folded"
            inferno-flamegraph <"$OUT/perf.folded" >"$OUT/flame.svg"
            echo "flame graph: $OUT/flame.svg"
        fi ;;
    strace)
        echo "syscalls per request (strace -c -f over the span; strace itself slows the router):"
        awk -v n="$n" '$1 ~ /^[0-9.]+$/ && NF >= 5 { calls = $4; name = $NF; if (calls ~ /^[0-9]+$/) printf "  %-16s %10d %8.2f\n", name, calls, calls / n }' "$OUT/strace.txt" | sort -k2 -n -r | head -n 16 ;;
    allocsites)
        # One second from the middle of the span is plenty of samples and keeps perf script quick.
        first="$(perf report -i "$OUT/allocsites.data" --header-only 2>/dev/null | awk '/time of first sample/ { print $NF }')"
        slice="$(awk -v t="$first" 'BEGIN { printf "%.6f,%.6f", t + 0.5, t + 1.5 }')"
        perf script -i "$OUT/allocsites.data" -F comm,event,ip,sym --no-inline --time "$slice" 2>/dev/null >"$OUT/allocsites.txt"
        python3 "$ROOT/loadtest/allocsites.py" "$OUT/allocsites.txt" ${ALLOCS_PER_REQUEST:+"$ALLOCS_PER_REQUEST"} | tee "$OUT/allocsites.md" ;;
    locks)
        echo "time in the locks' slow paths (entry to return, per thread), per request:"
        perf script -i "$OUT/locks.data" -F tid,time,event 2>/dev/null | awk -v n="$n" '
            { kind = $3; sub(/^probe_leadrouter:/, "", kind); sub(/:$/, "", kind); at = $2 + 0 }
            kind ~ /__return$/ { sub(/__return$/, "", kind); if (($1, kind) in entered) {
                waited[kind] += at - entered[$1, kind]; delete entered[$1, kind] } ; next }
            { entered[$1, kind] = at; count[kind]++ }
            END { for (k in count) printf "  %-20s %8d entries, %8.3f µs per request, %8.2f µs each\n",
                      k, count[k], waited[k] * 1e6 / n, waited[k] * 1e6 / count[k] }' | sort -k4 -n -r | tee "$OUT/locks-time.txt"
        [ "${LOCK_STACKS:-0}" = 1 ] || { echo "(LOCK_STACKS=1 names the functions each was taken under)"; exit 0; }
        perf script -i "$OUT/locks.data" -F comm,event,ip,sym --no-inline 2>/dev/null | awk '
            !/^\t/ && NF { skip = ($2 ~ /__return:?$/) } !skip' >"$OUT/locks.txt"
        echo "contended lock acquisitions per request, by lock kind and by the first frame of ours above it:"
        awk -v n="$n" '
            !/^\t/ && NF { if (kind != "") { count[kind]++; by[kind " <- " (ours == "" ? "(not ours)" : ours)]++ }
                            kind = $2; sub(/^probe_leadrouter:/, "", kind); sub(/:$/, "", kind); ours = "" }
            /^\t/ && ours == "" && /leadrouter::/ { $1 = ""; ours = substr($0, 2, 110) }
            END { if (kind != "") { count[kind]++; by[kind " <- " (ours == "" ? "(not ours)" : ours)]++ }
                  for (k in count) printf "  %-20s %8d %8.4f\n", k, count[k], count[k] / n
                  for (k in by) printf "    %8d %8.4f  %s\n", by[k], by[k] / n, k }' "$OUT/locks.txt" | sort -k2 -n -r | tee "$OUT/locks-top.txt" ;;
    allocs)
        awk -v a="$allocs" -v n="$n" 'BEGIN { if (n > 0) printf "allocations: %d for %d requests: %.1f per request\n", a, n, a / n }' ;;
esac
