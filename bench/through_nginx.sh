#!/usr/bin/env bash
# matrix_bench.py's scenarios through nginx (deploy/nginx.conf) in front of 1, 2 and 3 workers.
#
#   bench/through_nginx.sh runs.jsonl     # then: .venv/bin/python bench/summarize.py runs.jsonl
#
# For each worker count: the workers (daphne, PostgreSQL + Redis, MATRIX_TRUSTED_PROXY_COUNT=1) are
# started fresh, nginx is started in front of them with the repository's configuration rendered by
# deploy/render_nginx_conf.py, every scenario runs against nginx's URL only, then nginx and the
# workers are stopped by their pids (SIGTERM, then SIGKILL). Only loopback addresses.
# Settings through the environment (defaults in brackets):
#   ROUNDS [1]  SCENARIOS ["send sync_fanout"]  WORKER_COUNTS ["1 2 3"]  BENCH_ARGS [""]
#   NGINX_BENCH_DB [postgres://root@127.0.0.1:5432/bench_nginx] (created if missing; migrated here)
#   NGINX_BENCH_REDIS [redis://127.0.0.1:6379/4] (FLUSHDB'd before each start: a database nobody else uses)
#   NGINX_PORT [8050]  WORKER_PORTS ["8051 8052 8053"]
set -euo pipefail

OUT=${1:?usage: bench/through_nginx.sh runs.jsonl}
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY="$REPO/.venv/bin/python"
ROUNDS=${ROUNDS:-1}
SCENARIOS=${SCENARIOS:-"send sync_fanout"}
WORKER_COUNTS=${WORKER_COUNTS:-"1 2 3"}
BENCH_ARGS=${BENCH_ARGS:-}
DB=${NGINX_BENCH_DB:-postgres://root@127.0.0.1:5432/bench_nginx}
REDIS=${NGINX_BENCH_REDIS:-redis://127.0.0.1:6379/4}
NGINX_PORT=${NGINX_PORT:-8050}
read -r -a ALL_PORTS <<<"${WORKER_PORTS:-8051 8052 8053}"
NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)
LOGDIR=${LOGDIR:-$(mktemp -d /tmp/matrix-bench-nginx-XXXXXX)}
chmod 755 "$LOGDIR"  # nginx's unprivileged worker processes read the static files here

# shellcheck source=bench/_servers.sh
source "$(dirname "$0")/_servers.sh"  # PIDS, stop_all (on EXIT), wait_ready

SERVER_ENV=(DATABASE_URL="$DB" REDIS_URL="$REDIS" MATRIX_RATE_LIMIT=off MATRIX_SERVER_NAME=localhost
            MATRIX_SERVE_STATIC=off MATRIX_TRUSTED_PROXY_COUNT=1 MATRIX_DATA_DIR="$LOGDIR/data"
            MATRIX_STATIC_ROOT="$LOGDIR/static" MATRIX_WORKER_NAME="worker-{pid}")

mkdir -p "$LOGDIR/data"
"$PY" - "$DB" <<'PY'
import sys, dj_database_url, psycopg
from psycopg import sql
p = dj_database_url.parse(sys.argv[1])
kw = {k: p.get(K) or None for k, K in (("host", "HOST"), ("port", "PORT"), ("user", "USER"), ("password", "PASSWORD"))}
with psycopg.connect(dbname="postgres", autocommit=True, **kw) as conn:
    if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (p["NAME"],)).fetchone():
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(p["NAME"])))
PY
(cd "$REPO" && env "${SERVER_ENV[@]}" "$PY" manage.py migrate_safely >/dev/null &&
    env "${SERVER_ENV[@]}" "$PY" manage.py collectstatic --noinput -v 0)
echo "logs in $LOGDIR; results appended to $OUT"

start() {  # workers
    local n=$1 upstreams=() port
    redis-cli -u "$REDIS" flushdb >/dev/null
    for port in "${ALL_PORTS[@]:0:$n}"; do
        (cd "$REPO" && exec env "${SERVER_ENV[@]}" "$REPO/.venv/bin/daphne" -b 127.0.0.1 -p "$port" \
            matrixsrv.asgi:application >"$LOGDIR/daphne-$port.log" 2>&1 </dev/null) &
        PIDS+=($!)
        upstreams+=(--upstream "127.0.0.1:$port")
    done
    for port in "${ALL_PORTS[@]:0:$n}"; do wait_ready "http://127.0.0.1:$port"; done
    WORKER_PIDS=("${PIDS[@]}")
    "$PY" "$REPO/deploy/render_nginx_conf.py" "${upstreams[@]}" --listen "127.0.0.1:$NGINX_PORT" \
        --static-root "$LOGDIR/static" --runtime-dir "$LOGDIR" >"$LOGDIR/nginx.conf"
    "$NGINX_BIN" -p "$LOGDIR" -c "$LOGDIR/nginx.conf" -e stderr -g "daemon off;" \
        >"$LOGDIR/nginx-$n.log" 2>&1 </dev/null &
    PIDS+=($!)
    wait_ready "http://127.0.0.1:$NGINX_PORT"
}

bench() {  # label
    local pid_args=() scenario
    for pid in "${WORKER_PIDS[@]}"; do pid_args+=(--server-pid "$pid"); done
    for scenario in $SCENARIOS; do
        echo "=== $(date -u +%H:%M:%S) $1 $scenario (workers ${WORKER_PIDS[*]})"
        # shellcheck disable=SC2086
        timeout 1800 "$PY" "$REPO/bench/matrix_bench.py" --base-url "http://127.0.0.1:$NGINX_PORT" "$scenario" \
            --label "$1" --json-out "$OUT" "${pid_args[@]}" $BENCH_ARGS | grep -v '^{' || true
    done
}

for round in $(seq 1 "$ROUNDS"); do
    echo "##### round $round of $ROUNDS"
    for n in $WORKER_COUNTS; do
        start "$n"
        bench "matrixsrv-nginx-${n}w"
        stop_all
    done
done
