"""Rate limits for register and login, counted in Django's cache (Redis when REDIS_URL is set, so
every worker shares the counters). Rates and the on/off switch are read at request time.

Each throttle counts only the methods that do the guarded work (``methods``): reading the login
flows is free, while the guess-able GET endpoints (username availability, registration token
validity; the spec asks for the latter to be rate limited) are counted in buckets of their own so
checking a name while typing does not use up the registration budget.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle

from matrixsrv.errors import LimitExceeded
from matrixsrv.http import client_ip


class MatrixRateThrottle(SimpleRateThrottle):
    scope: str  # the cache bucket
    rate_setting: str  # the key of settings.MATRIX["RATES"]
    methods: tuple[str, ...] = ("POST",)

    def __init__(self) -> None:  # rates come from settings.MATRIX at request time, not import time
        pass

    def allow_request(self, request, view):  # type: ignore[no-untyped-def]
        if not settings.MATRIX["RATE_LIMIT"] or request.method not in self.methods:
            return True
        self.rate = settings.MATRIX["RATES"][self.rate_setting]
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_cache_key(self, request, view):  # type: ignore[no-untyped-def]
        return f"throttle_{self.scope}_{client_ip(request)}"


class LoginThrottle(MatrixRateThrottle):
    scope = rate_setting = "login"


class RegisterThrottle(MatrixRateThrottle):
    scope = rate_setting = "register"


class RegisterAvailableThrottle(MatrixRateThrottle):
    scope, rate_setting, methods = "register_available", "register", ("GET",)


class RegistrationTokenValidityThrottle(MatrixRateThrottle):
    scope, rate_setting, methods = "registration_token_validity", "register", ("GET",)


def check_rate_limit(throttle_class: type[MatrixRateThrottle], request: Any) -> None:
    """For plain Django views (the login fallback): raise LimitExceeded as the DRF views would."""
    throttle = throttle_class()
    if not throttle.allow_request(request, None):
        wait = throttle.wait() or 1
        raise LimitExceeded(retry_after_ms=int(wait * 1000))
