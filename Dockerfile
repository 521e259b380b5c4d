# matrixsrv homeserver image: one daphne worker per container (deploy/docker-entrypoint.sh).
# Configuration is environment variables only (matrixsrv/config.py); docker-compose.yml runs N of
# these behind nginx (deploy/nginx.conf) with PostgreSQL and Redis.
#
#   docker build -t matrixsrv .
#   docker run --rm -p 8008:8008 matrixsrv            # embedded mode: SQLite in the /data volume
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app \
    MATRIX_DATA_DIR=/data \
    MATRIX_STATIC_ROOT=/app/staticfiles

WORKDIR /app
COPY . /app
# collectstatic at build time too, so the image alone serves the admin's files (embedded mode) and
# an empty static volume mounted at /app/staticfiles starts with them. The build-time secret key is
# used for nothing and kept nowhere (no /data write in the image).
RUN pip install --no-cache-dir . \
    && MATRIX_SECRET_KEY=build-time-only python manage.py collectstatic --noinput --verbosity 0 \
    && useradd --system --home-dir /app --no-create-home matrix \
    && mkdir -p /data \
    && chown -R matrix /data /app/staticfiles \
    && chmod +x /app/deploy/docker-entrypoint.sh
USER matrix

VOLUME ["/data"]
EXPOSE 8008
# Readiness: database, migrations, Redis and the channel layer (matrixsrv/health.py).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8008/ready', timeout=4)"]
ENTRYPOINT ["/app/deploy/docker-entrypoint.sh"]
CMD ["serve"]
