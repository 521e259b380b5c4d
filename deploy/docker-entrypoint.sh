#!/bin/sh
# Entry point of the matrixsrv image (Dockerfile). Configuration is environment variables only
# (matrixsrv/config.py).
#
#   serve    (default) apply migrations under the lock, then run one daphne worker on 0.0.0.0:8008.
#            Replicas starting together don't race (manage.py migrate_safely): one migrates, the
#            others wait and find the schema current. A failure stops the container here, and a
#            worker whose schema is still behind answers 503 rather than run on it (matrixsrv/health.py).
#   migrate  the one-shot service of docker-compose.yml: migrate_safely, then collectstatic into
#            MATRIX_STATIC_ROOT (the volume nginx serves /static/ from).
#   anything else is run as a command, e.g. `docker compose run --rm homeserver python manage.py make_admin alice`.
set -eu

case "${1:-serve}" in
    serve)
        python manage.py migrate_safely
        exec daphne -b 0.0.0.0 -p 8008 matrixsrv.asgi:application
        ;;
    migrate)
        python manage.py migrate_safely
        exec python manage.py collectstatic --noinput --verbosity 1
        ;;
    *)
        exec "$@"
        ;;
esac
