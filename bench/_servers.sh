# shellcheck shell=bash
# Sourced by compare.sh and through_nginx.sh: the processes a bench script starts (PIDS) are stopped
# by their pid when it exits (SIGTERM, then SIGKILL after 15 s), assert_free checks that nothing
# answers on a port before a server is started there, and wait_ready polls a server.

PIDS=()
stop_all() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 75); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$pid" 2>/dev/null || true
    done
    PIDS=()
}
trap stop_all EXIT

assert_free() {  # url: nothing answers there yet (else wait_ready would bench a stale server)
    if curl -s -o /dev/null --max-time 2 "$1/_matrix/client/versions"; then
        echo "$1 already answers: another server holds the port; stop it first" >&2
        exit 1
    fi
}

wait_ready() {  # url
    for _ in $(seq 1 300); do
        curl -sf "$1/_matrix/client/versions" >/dev/null && return 0
        sleep 0.2
    done
    echo "$1 did not come up" >&2
    return 1
}
