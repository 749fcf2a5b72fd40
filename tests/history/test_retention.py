"""Retention walks each account's rows oldest first in keyset batches: every expired row goes,
nothing younger, no other account's, and a batch boundary inside a run of equal times loses
nothing."""

from datetime import timedelta

import pytest
from django.utils import timezone

from console.models import Account, Tier
from history.models import PromptLog
from history.services import history_purge_expired
from tests.history.test_search import log

pytestmark = pytest.mark.django_db


def test_batches_delete_every_expired_row_of_each_account_and_nothing_else(world):
    pro = Tier.objects.get(slug="pro")  # 90 days; account_a stays free (7 days)
    Account.objects.filter(pk=world.account_b.pk).update(tier=pro)
    now = timezone.now()
    tied = now - timedelta(days=10)
    expired = [log(world.account_a, f"tied {index}", at=tied) for index in range(5)]
    expired += [
        log(world.account_a, f"older {index}", at=now - timedelta(days=30 + index))
        for index in range(4)
    ]
    kept = [
        log(world.account_a, f"recent {index}", at=now - timedelta(days=6)) for index in range(3)
    ]
    kept += [log(world.account_b, f"pro {index}", at=tied) for index in range(3)]
    b_expired = log(world.account_b, "pro expired", at=now - timedelta(days=91))

    # Batches of 2 put boundaries inside the five rows of equal time.
    assert history_purge_expired(batch_size=2, now=now) == len(expired) + 1
    assert not PromptLog.objects.filter(pk__in=[row.pk for row in [*expired, b_expired]]).exists()
    assert PromptLog.objects.filter(pk__in=[row.pk for row in kept]).count() == len(kept)
    assert history_purge_expired(batch_size=2, now=now) == 0
