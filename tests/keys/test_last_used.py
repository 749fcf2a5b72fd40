from datetime import timedelta

import pytest
from django.utils import timezone

from console.shared_state import LocalState
from keys import services
from keys.models import ApiKey
from keys.services import api_key_create, api_key_mark_used, api_keys_flush_last_used
from keys.tasks import flush_last_used
from tests.factories import make_account, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def key():
    owner = make_user()
    account = make_account(owner)
    project = account.projects.get()
    return api_key_create(account=account, project=project, label="k", actor=owner).key


def test_embedded_default_writes_at_most_once_a_minute_per_key(key, settings, monkeypatch):
    settings.SHARED_STATE_BACKEND = "local"
    monkeypatch.setattr(services, "_local_last_written", {})
    first = timezone.now() - timedelta(seconds=5)
    api_key_mark_used(key=key, at=first)
    api_key_mark_used(key=key, at=timezone.now())  # within the minute: not written
    assert ApiKey.objects.get(pk=key.pk).last_used_at == first


def test_buffered_times_are_flushed_by_the_task_and_never_go_backwards(key, settings, monkeypatch):
    settings.SHARED_STATE_BACKEND = "redis"  # the buffering path, here on the local stand-in
    state = LocalState()
    monkeypatch.setattr(services, "shared_state", lambda: state)
    newer = timezone.now()
    older = newer - timedelta(minutes=5)
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=newer)
    api_key_mark_used(key=key, at=older)
    assert ApiKey.objects.get(pk=key.pk).last_used_at == newer  # nothing written yet
    assert flush_last_used() == 1
    assert ApiKey.objects.get(pk=key.pk).last_used_at == newer  # older time did not win
    later = newer + timedelta(minutes=1)
    api_key_mark_used(key=key, at=later)
    api_keys_flush_last_used()
    assert ApiKey.objects.get(pk=key.pk).last_used_at == later
    assert api_keys_flush_last_used() == 0  # drained


def test_flush_through_real_redis(key, settings, redis_client, monkeypatch):
    import uuid

    from console.shared_state import RedisState

    kwargs = redis_client.connection_pool.connection_kwargs
    state = RedisState(
        f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}",
        prefix=f"test:{uuid.uuid4().hex}:",
    )
    settings.SHARED_STATE_BACKEND = "redis"
    monkeypatch.setattr(services, "shared_state", lambda: state)
    at = timezone.now().replace(microsecond=0)
    api_key_mark_used(key=key, at=at)
    assert api_keys_flush_last_used() == 1
    assert ApiKey.objects.get(pk=key.pk).last_used_at == at


def test_a_failed_flush_puts_the_batch_back_for_the_retry(key, settings, monkeypatch):
    from django.db import OperationalError

    settings.SHARED_STATE_BACKEND = "redis"
    state = LocalState()
    monkeypatch.setattr(services, "shared_state", lambda: state)
    at = timezone.now()
    api_key_mark_used(key=key, at=at)

    def fail(times):
        raise OperationalError("database restarting")

    monkeypatch.setattr(services, "_write_last_used", fail)
    with pytest.raises(OperationalError):
        api_keys_flush_last_used()
    monkeypatch.undo()
    monkeypatch.setattr(services, "shared_state", lambda: state)
    settings.SHARED_STATE_BACKEND = "redis"
    assert api_keys_flush_last_used() == 1
    assert ApiKey.objects.get(pk=key.pk).last_used_at == at
