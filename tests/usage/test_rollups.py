"""Usage roll-ups: written with each usage record, equal to the records' sums, rebuildable,
reconciled, exact beside concurrent writers."""

import zoneinfo
from collections import Counter, defaultdict
from datetime import UTC, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db.models import F
from django.utils import timezone

from console import api_errors as errors
from keys.services import api_key_create
from portal.services import account_update
from projects.services import project_create
from tests.billing.factories import funded_account
from tests.billing.traffic import endpoint_one, endpoint_traffic, mixed_traffic, settle_one
from tests.conftest import requires_postgres
from tests.threads import run_together
from usage.models import UsageDaily, UsageHourly, UsageRecord
from usage.rollups import (
    GROUP,
    METRICS,
    UPSTREAM_ERROR_CODES,
    rollup_writes,
    rollups_disagreeing,
    rollups_rebuild,
    rollups_reconcile,
)
from usage.tasks import rebuild_rollups

pytestmark = pytest.mark.django_db


def expected_from_records(account, bucket):
    """The records of `account` summed per group and bucket, in Python."""
    sums = defaultdict(Counter)
    for record in UsageRecord.objects.filter(account=account):
        key = (
            bucket(record.created_at),
            record.project_id or 0,
            record.api_key_id or 0,
            record.model,
            record.source,
            record.endpoint,
        )
        failed = record.status != 200 and record.code in UPSTREAM_ERROR_CODES
        sums[key].update(
            {
                "requests": 1,
                "refused": int(record.status != 200 and not failed),
                "upstream_errors": int(failed),
                **{name: getattr(record, name) for name in METRICS[3:]},
            }
        )
    return {key: tuple(counter[name] for name in METRICS) for key, counter in sums.items()}


def stored(model, account, bucket_field):
    return {
        (
            getattr(row, bucket_field),
            row.project_id,
            row.api_key_id,
            row.model,
            row.source,
            row.endpoint,
        ): tuple(getattr(row, name) for name in METRICS)
        for row in model.objects.filter(account=account)
    }


def hour_bucket(moment):
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def day_bucket(zone):
    return lambda moment: timezone.localtime(moment, zone).date()


@pytest.fixture
def busy_account():
    account = funded_account(recharge_units=500, bonus_units=50, time_zone="Asia/Kolkata")
    other_project = project_create(account=account, name="Search", actor=None)
    keys = [
        api_key_create(account=account, project=project, label=f"k{index}", actor=None).key
        for index, project in enumerate(
            [
                account.projects.get(is_default=True),
                account.projects.get(is_default=True),
                other_project,
            ]
        )
    ]
    made = mixed_traffic(keys, days=12)
    made += endpoint_traffic(keys, days=12)
    return account, keys, made


def test_it_keeps_hourly_and_daily_rows_equal_to_the_records(busy_account):
    account, _keys, made = busy_account
    assert UsageRecord.objects.filter(account=account).count() == made
    zone = zoneinfo.ZoneInfo(account.time_zone)
    assert stored(UsageHourly, account, "hour") == expected_from_records(account, hour_bucket)
    assert stored(UsageDaily, account, "day") == expected_from_records(account, day_bucket(zone))
    totals = UsageDaily.objects.filter(account=account)
    assert sum(row.requests for row in totals) == made
    assert (
        sum(row.refused for row in totals)
        == UsageRecord.objects.filter(account=account)
        .exclude(status=200)
        .exclude(code__in=UPSTREAM_ERROR_CODES)
        .count()
    )
    assert sum(row.fee_nano for row in totals) == sum(
        r.fee_nano for r in UsageRecord.objects.filter(account=account)
    )


def test_it_rebuilds_the_same_rows_and_a_second_rebuild_changes_nothing(busy_account):
    account, _keys, _made = busy_account
    before_hourly = stored(UsageHourly, account, "hour")
    before_daily = stored(UsageDaily, account, "day")
    UsageHourly.objects.filter(account=account).update(requests=F("requests") + 5)
    UsageDaily.objects.filter(account=account)[:1].get().delete()
    rollups_rebuild(account=account)
    assert stored(UsageHourly, account, "hour") == before_hourly
    assert stored(UsageDaily, account, "day") == before_daily
    rollups_rebuild(account=account)
    assert stored(UsageHourly, account, "hour") == before_hourly
    assert stored(UsageDaily, account, "day") == before_daily


def test_a_rebuild_from_a_date_leaves_earlier_rows_alone(busy_account):
    account, _keys, _made = busy_account
    since = timezone.now() - timedelta(days=3)
    early = UsageDaily.objects.filter(account=account).order_by("day").first()
    UsageDaily.objects.filter(pk=early.pk).update(requests=999)
    rollups_rebuild(account=account, since=since)
    assert UsageDaily.objects.get(pk=early.pk).requests == 999
    recent = stored(UsageDaily, account, "day")
    rollups_rebuild(account=account)
    assert {k: v for k, v in recent.items() if k[0] >= since.date()} == {
        k: v for k, v in stored(UsageDaily, account, "day").items() if k[0] >= since.date()
    }


def test_reconciliation_finds_and_repairs_only_the_account_that_differs(busy_account):
    account, _keys, _made = busy_account
    calm = funded_account(recharge_units=10)
    settle_one(
        api_key_create(
            account=calm, project=calm.projects.get(is_default=True), label="c", actor=None
        ).key
    )
    since = timezone.now() - timedelta(days=2)
    assert rollups_disagreeing(since=since) == []
    assert rollups_reconcile(since=since) == []
    row = UsageHourly.objects.filter(account=account).order_by("-hour").first()
    UsageHourly.objects.filter(pk=row.pk).update(fee_nano=F("fee_nano") + 1)
    assert rollups_disagreeing(since=since) == [account.pk]
    assert rollups_reconcile(since=since) == [account.pk]
    assert rollups_disagreeing(since=since) == []


def test_changing_the_time_zone_moves_the_days(busy_account, django_capture_on_commit_callbacks):
    account, _keys, _made = busy_account
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        account_update(
            account=account,
            actor=None,
            name=account.name,
            time_zone="America/Los_Angeles",
            currency=account.currency,
        )
    assert len(callbacks) == 1  # the rebuild is queued once the change is committed
    account.refresh_from_db()
    rebuild_rollups.apply(args=[account.pk]).get()
    zone = zoneinfo.ZoneInfo("America/Los_Angeles")
    assert stored(UsageDaily, account, "day") == expected_from_records(account, day_bucket(zone))


def test_the_upstream_failure_codes_are_the_gateways():
    assert set(UPSTREAM_ERROR_CODES) == {errors.UPSTREAM_ERROR.code, errors.UPSTREAM_TIMEOUT.code}


@requires_postgres  # SQLite's in-memory test database cannot take 17 writers at once
@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_of_a_new_group_and_a_rebuild_count_each_record_once():
    account = funded_account(recharge_units=100)
    key = api_key_create(
        account=account, project=account.projects.get(is_default=True), label="x", actor=None
    ).key
    settle_one(key, model="glm-4.5-air")  # an existing group; the writers below add new ones

    def work(index):
        if index == 0:
            rollups_rebuild(account=account)
        else:
            settle_one(key, model=["glm-4.7", "glm-4.7-flash"][index % 2], input_tokens=index)

    assert run_together(work, 17) == []
    records = UsageRecord.objects.filter(account=account)
    assert sum(r.requests for r in UsageHourly.objects.filter(account=account)) == records.count()
    assert stored(UsageHourly, account, "hour") == expected_from_records(account, hour_bucket)
    assert stored(UsageDaily, account, "day") == expected_from_records(
        account, day_bucket(zoneinfo.ZoneInfo(account.time_zone))
    )


def test_a_request_settled_across_a_time_zone_change_is_found_and_repaired():
    """A stream that began before the owner changed the time zone settles with the account
    as it was loaded: its day is the old zone's. The reconciliation compares every day."""
    account = funded_account(recharge_units=100, time_zone="Asia/Shanghai")
    key = api_key_create(
        account=account, project=account.projects.get(is_default=True), label="k", actor=None
    ).key
    # 20:30 UTC: already tomorrow in Shanghai, still today in Los Angeles.
    moment = timezone.now().replace(hour=20, minute=30) - timedelta(days=1)
    account_update(
        account=account,
        actor=None,
        name=account.name,
        time_zone="America/Los_Angeles",
        currency=account.currency,
    )
    rebuild_rollups.apply(args=[account.pk]).get()
    settle_one(key, at=moment)  # key.account still says Asia/Shanghai
    since = moment - timedelta(days=1)
    assert rollups_disagreeing(since=since) == [account.pk]
    assert rollups_reconcile(since=since) == [account.pk]
    account.refresh_from_db()
    zone = zoneinfo.ZoneInfo(account.time_zone)
    assert stored(UsageDaily, account, "day") == expected_from_records(account, day_bucket(zone))


def test_any_metric_that_differs_is_found(busy_account):
    account, _keys, _made = busy_account
    since = timezone.now() - timedelta(days=2)
    row = UsageDaily.objects.filter(account=account).order_by("-day").first()
    UsageDaily.objects.filter(pk=row.pk).update(bonus_nano=F("bonus_nano") + 1)
    assert rollups_disagreeing(since=since) == [account.pk]


def test_the_upgrade_backfills_roll_ups_for_records_written_before_them(busy_account):
    import importlib

    from django.db import connection
    from django.db.migrations.loader import MigrationLoader

    account, _keys, _made = busy_account
    # Records of that time were all on the OpenAI-compatible endpoint (the others came later).
    UsageRecord.objects.filter(account=account).exclude(endpoint="openai").delete()
    rollups_rebuild(account=account)
    hourly = stored(UsageHourly, account, "hour")
    daily = stored(UsageDaily, account, "day")
    # Hourly rows all missing (records from before roll-ups); daily ones partly there
    # (written since migration 0008): both come out exactly as the records say.
    UsageHourly.objects.all().delete()
    first_days = list(UsageDaily.objects.filter(account=account).order_by("day")[:3])
    UsageDaily.objects.filter(pk__in=[row.pk for row in first_days]).delete()
    migration = importlib.import_module("billing.migrations.0009_backfill_usage_rollups")
    # The models as the migration knew them (in billing then; in usage since issue 21).
    apps = (
        MigrationLoader(connection).project_state(("billing", "0009_backfill_usage_rollups")).apps
    )
    migration.backfill(apps, connection.schema_editor())
    assert stored(UsageHourly, account, "hour") == hourly
    assert stored(UsageDaily, account, "day") == daily
    migration.backfill(apps, connection.schema_editor())  # a second run changes nothing
    assert stored(UsageHourly, account, "hour") == hourly
    assert stored(UsageDaily, account, "day") == daily


def test_each_endpoint_has_rows_of_its_own(busy_account):
    """Coding and Anthropic requests share keys, models and hours with OpenAI ones: without
    the endpoint as a group they would be added to the same rows."""
    account, _keys, _made = busy_account
    for model in (UsageHourly, UsageDaily):
        by_endpoint = Counter()
        for row in model.objects.filter(account=account):
            by_endpoint[row.endpoint] += row.requests
        records = Counter(
            UsageRecord.objects.filter(account=account).values_list("endpoint", flat=True)
        )
        assert by_endpoint == records
        assert set(by_endpoint) == {"openai", "coding", "anthropic"}


def test_the_upsert_conflict_target_is_the_unique_constraint(busy_account):
    """The live upsert's ON CONFLICT names exactly the columns of each table's unique
    constraint, and it writes the record's endpoint: a group column added to one and not
    the other fails every write."""
    account, keys, _made = busy_account
    record = UsageRecord(
        account=account,
        api_key=keys[0],
        endpoint="anthropic",
        status=200,
        created_at=timezone.now(),
    )
    hourly, daily = rollup_writes(record=record, time_zone=account.time_zone)
    for model, bucket, write in ((UsageHourly, "hour", hourly), (UsageDaily, "day", daily)):
        (constraint,) = model._meta.constraints
        columns = {model._meta.get_field(name).column for name in constraint.fields}
        assert columns == {"account_id", bucket, *GROUP[1:]}
        target = write.sql.split("ON CONFLICT (")[1].split(")")[0]
        assert {name.strip('" ') for name in target.split(",")} == columns
        assert "anthropic" in write.params


def test_a_request_added_to_the_wrong_endpoint_is_found_and_repaired(busy_account):
    account, keys, _made = busy_account
    since = timezone.now() - timedelta(days=2)
    assert rollups_disagreeing(since=since) == []
    record = endpoint_one(keys[0], endpoint="anthropic")
    # Its rows moved to the coding endpoint: the sums per hour and day are unchanged.
    for model in (UsageHourly, UsageDaily):
        row = model.objects.filter(account=account, endpoint="anthropic").latest("pk")
        row.endpoint = "coding"
        model.objects.filter(
            account=account,
            endpoint="coding",
            project_id=row.project_id,
            api_key_id=row.api_key_id,
            model=row.model,
            source=row.source,
            **({"hour": row.hour} if model is UsageHourly else {"day": row.day}),
        ).delete()
        row.save()
    assert rollups_disagreeing(since=since) == [account.pk]
    assert rollups_reconcile(since=since) == [account.pk]
    zone = zoneinfo.ZoneInfo(account.time_zone)
    assert stored(UsageHourly, account, "hour") == expected_from_records(account, hour_bucket)
    assert stored(UsageDaily, account, "day") == expected_from_records(account, day_bucket(zone))
    assert record.endpoint == "anthropic"


def test_the_upgrade_splits_the_roll_ups_of_accounts_with_other_endpoints(busy_account):
    """Migration usage 0004: roll-ups from before it are one row per group whatever the
    endpoint (all "openai"); it rebuilds those of accounts with records of other endpoints
    from the records, the same as live writes made them. Backwards it merges them again."""
    import importlib

    from django.db import connection
    from django.db.migrations.loader import MigrationLoader

    account, _keys, _made = busy_account
    calm = funded_account(recharge_units=10)
    calm_key = api_key_create(
        account=calm, project=calm.projects.get(is_default=True), label="c", actor=None
    ).key
    mixed_traffic([calm_key], days=3)
    live = {
        (model, each.pk): stored(model, each, bucket)
        for model, bucket in ((UsageHourly, "hour"), (UsageDaily, "day"))
        for each in (account, calm)
    }
    migration = importlib.import_module("usage.migrations.0004_rollup_endpoint")
    apps = MigrationLoader(connection).project_state(("usage", "0004_rollup_endpoint")).apps
    migration.merge_endpoints(apps, connection.schema_editor())
    assert set(UsageDaily.objects.filter(account=account).values_list("endpoint", flat=True)) == {
        "openai"
    }
    assert sum(UsageDaily.objects.filter(account=account).values_list("requests", flat=True)) == (
        UsageRecord.objects.filter(account=account).count()
    )
    migration.split_by_endpoint(apps, connection.schema_editor())
    for model, bucket in ((UsageHourly, "hour"), (UsageDaily, "day")):
        for each in (account, calm):
            assert stored(model, each, bucket) == live[(model, each.pk)]


def test_the_rebuild_command_gives_the_rows_live_writes_gave(busy_account):
    """`manage.py rebuild_rollups` from nothing: every group of every endpoint comes back
    exactly as the live upserts wrote it."""
    account, _keys, _made = busy_account
    live_hourly = stored(UsageHourly, account, "hour")
    live_daily = stored(UsageDaily, account, "day")
    UsageHourly.objects.filter(account=account).delete()
    UsageDaily.objects.filter(account=account).delete()
    out = StringIO()
    call_command("rebuild_rollups", account=account.pk, stdout=out)
    assert f"Rebuilt {len(live_hourly)} hourly and {len(live_daily)} daily rows" in out.getvalue()
    assert stored(UsageHourly, account, "hour") == live_hourly
    assert stored(UsageDaily, account, "day") == live_daily
    assert {key[-1] for key in live_daily} == {"openai", "coding", "anthropic"}
