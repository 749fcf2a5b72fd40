from unittest import mock

import pytest
from django.db import OperationalError
from django.urls import reverse

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def test_healthz_answers_without_touching_anything(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get(reverse("healthz"))
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_reports_database_cache_and_broker(client):
    response = client.get(reverse("readyz"))
    assert response.status_code == 200
    body = response.json()
    assert set(body["checks"]) == {"database", "cache", "broker"}
    assert all(check["ok"] for check in body["checks"].values()), body
    assert body["status"] == "ok"


def test_readyz_is_503_when_the_database_is_down(client):
    # A fault a real database cannot produce on demand inside a test transaction.
    with mock.patch("portal.health._check_database", side_effect=OperationalError("down")):
        response = client.get(reverse("readyz"))
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == {"ok": False, "error": "OperationalError"}


def test_readyz_stays_ready_but_degraded_when_the_cache_is_down(client):
    with mock.patch("portal.health._check_cache", side_effect=ConnectionError("refused")):
        response = client.get(reverse("readyz"))
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["checks"]["cache"]["ok"] is False
