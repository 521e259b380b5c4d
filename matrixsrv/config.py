"""Every setting of matrixsrv, read from the environment: the one documented place.

Each entry below is an environment variable, its default and what it does. The defaults make the
embedded mode (SQLite, in-process channel layer, one process) work with nothing set. The README's
configuration table is this list; ``python manage.py show_config`` prints the values in force.

This module is pure (no Django import) so settings.py, the run script and tests can all use it.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Setting:
    env: str
    default: str
    help: str

    def raw(self) -> str:
        return os.environ.get(self.env, self.default)


SETTINGS: dict[str, Setting] = {
    s.env: s
    for s in [
        Setting("MATRIX_SERVER_NAME", "localhost", "The server name in user IDs, room IDs and aliases."),
        Setting("MATRIX_DATA_DIR", str(BASE_DIR / "data"),
                "Where the embedded SQLite database and the generated secret key live."),
        Setting("DATABASE_URL", "",
                "Database URL (dj-database-url syntax). Empty: SQLite file <data dir>/matrixsrv.sqlite3. "
                "Example: postgres://user@127.0.0.1:5432/matrix"),
        Setting("REDIS_URL", "",
                "Redis URL. Empty: in-process channel layer and cache (one process only). Set it to "
                "run several workers: /sync wake-ups, rate-limit counters and caches then go through Redis."),
        Setting("MATRIX_SECRET_KEY", "",
                "Django secret key. Empty: generated once and kept in <data dir>/secret_key."),
        Setting("MATRIX_BIND", "127.0.0.1", "Address the run script binds daphne to."),
        Setting("MATRIX_PORT", "8008", "Port the run script binds daphne to."),
        Setting("MATRIX_PUBLIC_BASEURL", "",
                "Public base URL clients reach the server at (behind a reverse proxy). "
                "Empty: http://<MATRIX_SERVER_NAME>:<MATRIX_PORT>/"),
        Setting("MATRIX_REGISTRATION", "open",
                "open: anyone may register; token: a registration token is required "
                "(m.login.registration_token; tokens are made in the admin); closed: nobody may register."),
        Setting("MATRIX_RESERVED_USERNAMES", r"^_",
                "Regular expression of localparts reserved for the server (M_EXCLUSIVE on register)."),
        Setting("MATRIX_RATE_LIMIT", "on", "on/off: rate limiting of register and login."),
        Setting("MATRIX_RATE_LOGIN", "20/min", "Login attempts allowed per client IP."),
        Setting("MATRIX_RATE_REGISTER", "10/min", "Registrations allowed per client IP."),
        Setting("MATRIX_RATE_REPORT", "10/min",
                "Content reports (POST /rooms/{roomId}/report..., /users/{userId}/report) allowed per user."),
        Setting("MATRIX_MODERATOR_LOCALPART", "moderator",
                "Localpart of the server's moderator account, created on first use (unusable password). "
                "Moderation actions (admin, reports) are sent as this user, which joins rooms and is "
                "given the power it needs by their most powerful local member. An account someone "
                "registered under this name is never adopted (moderation then refuses to act): reserve "
                "the name with MATRIX_RESERVED_USERNAMES or pick one starting with _."),
        Setting("MATRIX_TRUSTED_PROXY_COUNT", "0",
                "How many reverse proxies in front add X-Forwarded-For; 0 means use the peer address."),
        Setting("MATRIX_MAX_BODY_BYTES", str(1024 * 1024),
                "Largest request body accepted under /_matrix (413 M_TOO_LARGE beyond)."),
        Setting("MATRIX_SYNC_TIMEOUT_CAP_MS", "30000", "Upper bound for the /sync long-poll timeout."),
        Setting("MATRIX_DB_PREPARE", "on",
                "on/off: PostgreSQL runs the hot path's hand-written statements as prepared statements "
                "(per connection). Off behind a connection pooler in transaction mode."),
        Setting("MATRIX_SERVE_STATIC", "on",
                "on/off: daphne serves the admin's static files itself (embedded mode). "
                "Turn off when nginx serves collectstatic's output."),
        Setting("MATRIX_STATIC_ROOT", str(BASE_DIR / "staticfiles"), "Where collectstatic writes."),
        Setting("MATRIX_DEBUG", "off", "on/off: Django debug mode. Never on in production."),
        Setting("MATRIX_ALLOWED_HOSTS", "*", "Comma-separated Host header values accepted."),
        Setting("MATRIX_LOG_LEVEL", "INFO", "Log level of the matrixsrv loggers."),
        Setting("MATRIX_WORKER_NAME", "",
                "This worker's name, e.g. worker1: sent as the X-Matrixsrv-Worker response header and "
                "in the matrixsrv_worker_info metric, to tell workers apart behind a proxy. {hostname} and "
                "{pid} are replaced by the machine's (container's) name and the process ID. Empty: no header."),
        Setting("MATRIX_METRICS", "on",
                "on/off: GET /metrics (Prometheus text format, this worker's own counters)."),
        Setting("MATRIX_METRICS_SECRET", "",
                "Empty: /metrics answers only requests from a loopback peer that did not come through "
                "a proxy (no X-Forwarded-For). Set: it answers any request with "
                "'Authorization: Bearer <secret>', and only those."),
        Setting("MATRIX_TURN_URIS", "",
                "Comma-separated TURN URIs (turn:... or turns:...) handed to clients for VoIP calls by "
                "GET /voip/turnServer. Empty: no TURN server (the endpoint answers {})."),
        Setting("MATRIX_TURN_SHARED_SECRET", "",
                "Secret shared with the TURN server (coturn use-auth-secret / static-auth-secret): each "
                "user gets time-limited credentials, username <expiry>:<user ID>, password "
                "base64(HMAC-SHA1(secret, username)). Takes precedence over the static username/password."),
        Setting("MATRIX_TURN_USERNAME", "", "Static TURN username, used when no shared secret is set."),
        Setting("MATRIX_TURN_PASSWORD", "", "Static TURN password, used when no shared secret is set."),
        Setting("MATRIX_TURN_USER_LIFETIME_S", "86400",
                "How long TURN credentials are valid, in seconds (the ttl clients are told)."),
    ]
}


def get(name: str) -> str:
    return SETTINGS[name].raw()


def get_bool(name: str) -> bool:
    return get(name).strip().lower() in {"1", "on", "true", "yes"}


def get_int(name: str) -> int:
    return int(get(name))


def data_dir() -> Path:
    path = Path(get("MATRIX_DATA_DIR"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def secret_key() -> str:
    """The configured key, else one generated on first start and persisted in the data dir."""
    if key := get("MATRIX_SECRET_KEY"):
        return key
    path = data_dir() / "secret_key"
    if not path.exists():
        # Write aside, then link into place: atomic, and a worker starting at the same moment
        # either wins or reads the winner's key, never a half-written file.
        tmp = path.with_name(f"secret_key.{os.getpid()}.tmp")
        tmp.write_text(secrets.token_urlsafe(50))
        tmp.chmod(0o600)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


def worker_name() -> str:
    """MATRIX_WORKER_NAME with {hostname} and {pid} filled in: one setting names every replica apart."""
    import socket

    return get("MATRIX_WORKER_NAME").replace("{hostname}", socket.gethostname()).replace("{pid}", str(os.getpid()))


def public_baseurl() -> str:
    url = get("MATRIX_PUBLIC_BASEURL") or f"http://{get('MATRIX_SERVER_NAME')}:{get('MATRIX_PORT')}/"
    return url if url.endswith("/") else url + "/"


TURN_URI_SCHEMES = ("turn:", "turns:")


@dataclass(frozen=True)
class TurnConfig:
    """The TURN server clients are told about (GET /voip/turnServer). ``shared_secret`` set: time-limited
    credentials per user; else the static ``username``/``password``."""

    uris: tuple[str, ...]
    shared_secret: str
    username: str
    password: str
    lifetime_s: int


def turn() -> TurnConfig | None:
    """The TURN configuration, or None when no TURN URI is set. A half-done configuration is an error
    at start-up (ValueError), not a silently broken call later: URIs without a secret or a static
    username and password, a URI that is not ``turn:``/``turns:``, a lifetime that is not positive."""
    uris = tuple(u.strip() for u in get("MATRIX_TURN_URIS").split(",") if u.strip())
    if not uris:
        return None
    if bad := [u for u in uris if not u.startswith(TURN_URI_SCHEMES)]:
        raise ValueError(f"MATRIX_TURN_URIS: not a turn: or turns: URI: {', '.join(bad)}")
    secret, username, password = (
        get("MATRIX_TURN_SHARED_SECRET"),
        get("MATRIX_TURN_USERNAME"),
        get("MATRIX_TURN_PASSWORD"),
    )
    if not secret and not (username and password):
        raise ValueError(
            "MATRIX_TURN_URIS is set: set MATRIX_TURN_SHARED_SECRET, or MATRIX_TURN_USERNAME and "
            "MATRIX_TURN_PASSWORD"
        )
    try:
        lifetime = get_int("MATRIX_TURN_USER_LIFETIME_S")
    except ValueError:
        raise ValueError("MATRIX_TURN_USER_LIFETIME_S must be a whole number of seconds") from None
    if lifetime <= 0:
        raise ValueError("MATRIX_TURN_USER_LIFETIME_S must be positive")
    return TurnConfig(
        uris=uris, shared_secret=secret, username=username, password=password, lifetime_s=lifetime
    )
