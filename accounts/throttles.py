"""Rate limits for register and login, counted in Django's cache (Redis when REDIS_URL is set, so
every worker shares the counters). Rates and the on/off switch are read at request time."""

from __future__ import annotations

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle

from matrixsrv.http import client_ip


class MatrixRateThrottle(SimpleRateThrottle):
    scope: str

    def __init__(self) -> None:  # rates come from settings.MATRIX at request time, not import time
        pass

    def allow_request(self, request, view):  # type: ignore[no-untyped-def]
        if not settings.MATRIX["RATE_LIMIT"] or request.method in ("GET", "HEAD", "OPTIONS"):
            return True
        self.rate = settings.MATRIX["RATES"][self.scope]
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_cache_key(self, request, view):  # type: ignore[no-untyped-def]
        return f"throttle_{self.scope}_{client_ip(request)}"


class LoginThrottle(MatrixRateThrottle):
    scope = "login"


class RegisterThrottle(MatrixRateThrottle):
    scope = "register"
