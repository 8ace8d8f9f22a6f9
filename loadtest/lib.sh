# Shell functions the load-test scripts share (sourced, not run). They expect
# TARGET_DIR to be set and a PIDS array of the processes to stop on exit.

# Builds (or, with NO_BUILD=1, only checks) the release binaries; sets LEADROUTER and
# LOADTEST to their paths.
build_release() {
    LEADROUTER="$TARGET_DIR/release/leadrouter"
    LOADTEST="$TARGET_DIR/release/loadtest"
    if [ "${NO_BUILD:-0}" = 1 ]; then
        echo "== NO_BUILD=1: using $LEADROUTER and $LOADTEST as built"
        [ -x "$LEADROUTER" ] && [ -x "$LOADTEST" ] || { echo "no release binaries in $TARGET_DIR/release" >&2; exit 2; }
    else
        echo "== building release binaries (CARGO_TARGET_DIR=$TARGET_DIR)"
        cargo build --release --bin leadrouter
        cargo build --release -p leadrouter-loadtest
    fi
}

# Stops every process in PIDS (and any further arrays named as arguments), then waits.
stop_all() {
    local pid
    local -a all=("${PIDS[@]}")
    local name
    for name in "$@"; do
        local -n extra="$name"
        all+=("${extra[@]}")
    done
    for pid in "${all[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${all[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
}

# Fails when something already listens on host:port: a stray server there would be
# measured instead of ours.
port_free() {
    local host="${1%:*}" port="${1##*:}"
    if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
        echo "something already listens on $1; stop it or change the ports in $0" >&2
        return 1
    fi
}

# Waits until something accepts TCP connections on host:port (at most ~10 s).
wait_for_port() {
    local host="${1%:*}" port="${1##*:}" i
    for i in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "nothing listens on $1 after 10 s" >&2
    return 1
}

# Prints a command line, shell-quoted, indented.
show() {
    printf '  '
    printf ' %q' "$@"
    echo
}

# One line naming the machine: cores and CPU model.
machine() {
    echo "== machine: nproc $(nproc), $(grep -m1 'model name' /proc/cpuinfo | sed 's/[[:space:]]*:[[:space:]]*/: /')"
}
