# matrixsrv homeserver image: migrate, then daphne on 0.0.0.0:8008.
# Configuration is environment variables only (matrixsrv/config.py); docker-compose.yml sets
# DATABASE_URL and REDIS_URL.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app \
    MATRIX_DATA_DIR=/data \
    MATRIX_STATIC_ROOT=/app/staticfiles

WORKDIR /app
COPY . /app
RUN pip install --no-cache-dir . \
    && useradd --system --home-dir /app --no-create-home matrix \
    && mkdir -p /data \
    && chown matrix /data
USER matrix

VOLUME ["/data"]
EXPOSE 8008
CMD ["sh", "-c", "python manage.py migrate --noinput && exec daphne -b 0.0.0.0 -p 8008 matrixsrv.asgi:application"]
