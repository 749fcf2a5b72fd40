"""`/healthz`: the process answers. `/readyz`: database, cache and broker, each reported.

Only a database failure makes the node unready (503): every node shares the same Redis, so
taking nodes out of a load balancer because Redis is down would not help anyone; the
gateway answers its own clear errors for that case.
"""

import logging
import time

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from config.celery import app

logger = logging.getLogger(__name__)


@never_cache
@require_GET
def healthz(request):
    return JsonResponse({"status": "ok"})


def _timed(check) -> dict:
    started = time.perf_counter()
    try:
        detail = check()
    except Exception as error:
        # Any failure is the answer being reported. The probe is public: the class name
        # only; hosts and users go to the log.
        logger.warning("readiness check %s failed: %s", getattr(check, "__name__", check), error)
        return {"ok": False, "error": type(error).__name__}
    result = {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1)}
    if detail:
        result["backend"] = detail
    return result


def _check_database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return connection.vendor


def _check_cache():
    cache.set("readyz-probe", "1", timeout=10)
    if cache.get("readyz-probe") != "1":
        raise RuntimeError("cache did not return what was written")
    return settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]


def _check_broker():
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
        return conn.transport_cls if isinstance(conn.transport_cls, str) else "broker"


@never_cache
@require_GET
def readyz(request):
    checks = {
        "database": _timed(_check_database),
        "cache": _timed(_check_cache),
        "broker": _timed(_check_broker),
    }
    ready = checks["database"]["ok"]
    status = "ok" if all(check["ok"] for check in checks.values()) else "degraded"
    return JsonResponse(
        {"status": status if ready else "unavailable", "checks": checks},
        status=200 if ready else 503,
    )
