#!/usr/bin/env bash
# Alternate matrix_bench.py runs: matrixsrv with 1 worker, matrixsrv with 2 workers, Synapse; ROUNDS times.
#
#   bench/compare.sh runs.jsonl            # then: .venv/bin/python bench/summarize.py runs.jsonl --baseline synapse-pg
#
# Every server is started fresh before its run and stopped by its pid after it (SIGTERM, then
# SIGKILL). Only loopback addresses. Settings through the environment (defaults in brackets):
#   ROUNDS [3]  SCENARIOS [all]  BENCH_ARGS [""] (extra matrix_bench.py options)
#   MATRIXSRV_DB [postgres://root@127.0.0.1:5432/bench_matrixsrv] (must exist; migrated here)
#   MATRIXSRV_REDIS_1 [redis://127.0.0.1:6379/5]  MATRIXSRV_REDIS_2 [redis://127.0.0.1:6379/6]
#       (one Redis database per configuration, FLUSHDB'd before each start: use databases nobody else uses)
#   PORT_1W [8031]  PORTS_2W ["8041 8042"]
#   SYNAPSE_PY [/work/synapse-venv/bin/python]  SYNAPSE_DIR [/work/synapse-data] (homeserver.yaml, port 8018)
#   SKIP_SYNAPSE [""] (non-empty: matrixsrv only)   SKIP_2W [""] (non-empty: no two-worker run)
#   BASELINE_DIR [""] a snapshot of an older commit to bench as well, with one worker, label
#       baseline-pg-1w (same rounds, alternating), on BASELINE_DB [postgres://root@127.0.0.1:5432/bench_baseline]
#       (must exist; migrated here): "did this change slow anything down?"
#   SERVER_DIR [this repository] the matrixsrv code to run, e.g. a snapshot of one commit:
#       mkdir /tmp/snap && git archive HEAD | tar -x -C /tmp/snap   (it runs with this repository's .venv)
set -euo pipefail

OUT=${1:?usage: bench/compare.sh runs.jsonl}
REPO=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-3}
SCENARIOS=${SCENARIOS:-all}
BENCH_ARGS=${BENCH_ARGS:-}
MATRIXSRV_DB=${MATRIXSRV_DB:-postgres://root@127.0.0.1:5432/bench_matrixsrv}
MATRIXSRV_REDIS_1=${MATRIXSRV_REDIS_1:-redis://127.0.0.1:6379/5}
MATRIXSRV_REDIS_2=${MATRIXSRV_REDIS_2:-redis://127.0.0.1:6379/6}
PORT_1W=${PORT_1W:-8031}
PORTS_2W=${PORTS_2W:-"8041 8042"}
SYNAPSE_PY=${SYNAPSE_PY:-/work/synapse-venv/bin/python}
SYNAPSE_DIR=${SYNAPSE_DIR:-/work/synapse-data}
SYNAPSE_URL=http://127.0.0.1:8018
LOGDIR=${LOGDIR:-$(mktemp -d /tmp/matrix-bench-XXXXXX)}
PY="$REPO/.venv/bin/python"
SERVER_DIR=${SERVER_DIR:-$REPO}
BASELINE_DIR=${BASELINE_DIR:-}
BASELINE_DB=${BASELINE_DB:-postgres://root@127.0.0.1:5432/bench_baseline}

# shellcheck source=bench/_servers.sh
source "$(dirname "$0")/_servers.sh"  # PIDS, stop_all (on EXIT), assert_free, wait_ready

start_matrixsrv() {  # redis_url port...  (code from $SERVER_DIR on $MATRIXSRV_DB unless overridden)
    local redis=$1; shift
    local dir=${RUN_DIR:-$SERVER_DIR} db=${RUN_DB:-$MATRIXSRV_DB}
    redis-cli -u "$redis" flushdb >/dev/null
    for port in "$@"; do assert_free "http://127.0.0.1:$port"; done
    for port in "$@"; do
        (cd "$dir" && DATABASE_URL=$db REDIS_URL=$redis MATRIX_RATE_LIMIT=off MATRIX_SERVER_NAME=localhost \
            MATRIX_SERVE_STATIC=off MATRIX_DATA_DIR="$LOGDIR/data" \
            exec "$REPO/.venv/bin/daphne" -b 127.0.0.1 -p "$port" matrixsrv.asgi:application \
            >"$LOGDIR/daphne-$port.log" 2>&1 </dev/null) &
        PIDS+=($!)
    done
    for port in "$@"; do wait_ready "http://127.0.0.1:$port"; done
}

start_synapse() {
    assert_free "$SYNAPSE_URL"
    (cd "$SYNAPSE_DIR" && exec "$SYNAPSE_PY" -m synapse.app.homeserver -c homeserver.yaml \
        >"$LOGDIR/synapse.stdout" 2>&1 </dev/null) &
    PIDS+=($!)
    wait_ready "$SYNAPSE_URL"
}

bench() {  # label base_urls
    local pid_args=()
    for pid in "${PIDS[@]}"; do pid_args+=(--server-pid "$pid"); done
    echo "=== $(date -u +%H:%M:%S) $1 ($2) pids ${PIDS[*]}"
    # shellcheck disable=SC2086
    timeout 1800 "$PY" "$REPO/bench/matrix_bench.py" --base-url "$2" $SCENARIOS --label "$1" --json-out "$OUT" \
        "${pid_args[@]}" $BENCH_ARGS | grep -v '^{' || true
}

mkdir -p "$LOGDIR/data"
(cd "$SERVER_DIR" && DATABASE_URL=$MATRIXSRV_DB MATRIX_DATA_DIR="$LOGDIR/data" "$PY" manage.py migrate --noinput >/dev/null)
if [ -n "$BASELINE_DIR" ]; then
    (cd "$BASELINE_DIR" && DATABASE_URL=$BASELINE_DB MATRIX_DATA_DIR="$LOGDIR/data" "$PY" manage.py migrate --noinput >/dev/null)
fi
if git -C "$SERVER_DIR" rev-parse --git-dir >/dev/null 2>&1; then
    code="commit $(git -C "$SERVER_DIR" rev-parse --short HEAD)$(
        git -C "$SERVER_DIR" diff --quiet HEAD -- . ':!bench' ':!tests' || echo ' + uncommitted changes')"
else
    code="the snapshot in $SERVER_DIR"
fi
echo "logs in $LOGDIR; results appended to $OUT; matrixsrv code: $code"

for round in $(seq 1 "$ROUNDS"); do
    echo "##### round $round of $ROUNDS"
    start_matrixsrv "$MATRIXSRV_REDIS_1" "$PORT_1W"
    bench matrixsrv-pg-1w "http://127.0.0.1:$PORT_1W"
    stop_all

    if [ -n "$BASELINE_DIR" ]; then
        RUN_DIR=$BASELINE_DIR RUN_DB=$BASELINE_DB start_matrixsrv "$MATRIXSRV_REDIS_1" "$PORT_1W"
        bench baseline-pg-1w "http://127.0.0.1:$PORT_1W"
        stop_all
    fi

    if [ -z "${SKIP_2W:-}" ]; then
        read -r -a ports <<<"$PORTS_2W"
        start_matrixsrv "$MATRIXSRV_REDIS_2" "${ports[@]}"
        urls=$(printf 'http://127.0.0.1:%s,' "${ports[@]}")
        bench matrixsrv-pg-2w "${urls%,}"
        stop_all
    fi

    if [ -z "${SKIP_SYNAPSE:-}" ]; then
        start_synapse
        bench synapse-pg "$SYNAPSE_URL"
        stop_all
    fi
done
