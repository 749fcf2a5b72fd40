"""The month a charge belongs to, when the account's time zone changes (docs/decisions.md,
"Issue 20: the month of a charge"): months not yet stated follow the new zone and their
counters are rebuilt with the change; a stated month keeps its bounds; counters, caps, the
budget, statements and billing_audit agree. Every instant is fixed (charges at `at`, the
change and the statements at `now`), on both sides of a month's first midnight, in a zone
east of UTC and one west of it, so nothing here depends on today's date."""

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse

from billing.models import AccountMonthSpend, LedgerEntry, ProjectMonthSpend
from billing.reconciliation import audit_account
from billing.selectors import account_month_spend, current_month, project_month_spend
from billing.statements import statement_data, statement_generate
from console.models import Account, AuditEvent
from console.services import ServiceError
from gateway.settlement import charge_usage
from portal.services import account_update
from projects.services import project_create
from tests.billing.factories import funded_account
from tests.conftest import requires_postgres
from tests.factories import login_verified, make_user
from tests.threads import run_together

pytestmark = pytest.mark.django_db

SHANGHAI, LOS_ANGELES = "Asia/Shanghai", "America/Los_Angeles"
NOV, DEC = date(2026, 11, 1), date(2026, 12, 1)
# 1 December begins at 16:00 UTC on 30 November in Shanghai (UTC+8) and at 08:00 UTC on
# 1 December in Los Angeles (UTC-8): between the two it is December in one, November in the
# other.
BETWEEN_THE_FIRSTS = datetime(2026, 11, 30, 20, 0, tzinfo=UTC)
MID_NOVEMBER = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
MID_DECEMBER = datetime(2026, 12, 15, 12, 0, tzinfo=UTC)


def at_local(zone: str, *args) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone))


def charge(account, request_id, at, project, tokens=1_000_000) -> int:
    return charge_usage(
        account=account,
        model="glm-4.7",
        input_tokens=tokens,
        output_tokens=0,
        request_id=request_id,
        project=project,
        at=at,
    ).fee_nano


def change_zone(account, time_zone, now) -> Account:
    return account_update(
        account=account,
        actor=None,
        name=account.name,
        time_zone=time_zone,
        currency=account.currency,
        now=now,
    )


def counters(account) -> dict:
    return dict(
        AccountMonthSpend.objects.filter(account=account).values_list("month", "spent_nano")
    )


def project_counters(account, project) -> dict:
    return dict(
        ProjectMonthSpend.objects.filter(account=account, project=project).values_list(
            "month", "spent_nano"
        )
    )


def stated_total(account, month) -> int:
    return statement_data(account=account, month=month)["totals"]["fee_nano"]


@pytest.fixture
def books():
    """An account with a second project and charges in the middle of November, between the
    two zones' firsts of December, and in the middle of December."""

    def make(time_zone):
        account = funded_account(recharge_units=1_000, time_zone=time_zone)
        bot = project_create(account=account, name="bot", actor=None)
        fees = {
            "mid-nov": charge(account, "mid-nov", MID_NOVEMBER, bot),
            "between": charge(account, "between", BETWEEN_THE_FIRSTS, bot, tokens=3_000_000),
            "mid-dec": charge(account, "mid-dec", MID_DECEMBER, bot, tokens=2_000_000),
        }
        return account, bot, fees

    return make


@pytest.mark.parametrize(
    ("time_zone", "moment", "month"),
    [
        (SHANGHAI, at_local(SHANGHAI, 2026, 11, 30, 23, 59, 59), NOV),
        (SHANGHAI, at_local(SHANGHAI, 2026, 12, 1, 0, 0), DEC),
        (LOS_ANGELES, at_local(LOS_ANGELES, 2026, 11, 30, 23, 59, 59), NOV),
        (LOS_ANGELES, at_local(LOS_ANGELES, 2026, 12, 1, 0, 0), DEC),
    ],
)
def test_a_charge_counts_in_the_calendar_month_of_the_accounts_zone(time_zone, moment, month):
    account = funded_account(recharge_units=100, time_zone=time_zone)
    project = account.projects.get()
    fee = charge(account, "edge", moment, project)
    assert counters(account) == {month: fee}
    assert project_month_spend(account=account, month=month) == {project.pk: fee}
    assert stated_total(account, month) == fee


@pytest.mark.parametrize(
    ("old_zone", "new_zone", "before", "after"),
    [
        # Moving west: the charge between the firsts was December's, now it is November's.
        (
            SHANGHAI,
            LOS_ANGELES,
            {NOV: ["mid-nov"], DEC: ["between", "mid-dec"]},
            {NOV: ["mid-nov", "between"], DEC: ["mid-dec"]},
        ),
        # Moving east: the other way round.
        (
            LOS_ANGELES,
            SHANGHAI,
            {NOV: ["mid-nov", "between"], DEC: ["mid-dec"]},
            {NOV: ["mid-nov"], DEC: ["between", "mid-dec"]},
        ),
    ],
)
def test_a_time_zone_change_moves_the_charges_of_months_not_yet_stated(
    books, old_zone, new_zone, before, after
):
    account, bot, fees = books(old_zone)

    def spent(months):
        return {month: sum(fees[name] for name in names) for month, names in months.items()}

    assert counters(account) == spent(before)
    account = change_zone(account, new_zone, now=MID_DECEMBER)
    assert counters(account) == spent(after)
    assert project_counters(account, bot) == spent(after)
    # The cap and the budget read the same counters (admission_facts reads these rows): this
    # month's, in the new zone.
    this_month = current_month(account=account, now=MID_DECEMBER)
    assert this_month == DEC
    assert project_month_spend(account=account, month=this_month) == {bot.pk: spent(after)[DEC]}
    assert account_month_spend(account=account, month=this_month) == spent(after)[DEC]
    # The statements, in the new zone, say the same.
    assert stated_total(account, NOV) == spent(after)[NOV]
    assert stated_total(account, DEC) == spent(after)[DEC]
    assert audit_account(account) == []


def test_a_stated_month_keeps_its_bounds_when_the_zone_moves_west(books):
    """November was stated in Shanghai (it ended at 16:00 UTC on 30 November). In Los
    Angeles the charge between the firsts would be November's, but November is closed: it
    stays December's, in the counters and in December's statement."""
    account, bot, fees = books(SHANGHAI)
    november, _created = statement_generate(
        account=account, month=NOV, now=at_local(SHANGHAI, 2026, 12, 1, 0, 5)
    )
    account = change_zone(account, LOS_ANGELES, now=MID_DECEMBER)
    assert counters(account) == {NOV: fees["mid-nov"], DEC: fees["between"] + fees["mid-dec"]}
    assert project_counters(account, bot) == counters(account)
    assert november.data["totals"]["fee_nano"] == fees["mid-nov"]
    december, _created = statement_generate(
        account=account, month=DEC, now=at_local(LOS_ANGELES, 2027, 1, 1, 0, 5)
    )
    assert december.data["starts_at"] == november.data["ends_at"]
    assert december.data["totals"]["fee_nano"] == fees["between"] + fees["mid-dec"]
    assert audit_account(account) == []


def test_a_stated_month_keeps_its_bounds_when_the_zone_moves_east(books):
    """November was stated in Los Angeles (it ended at 08:00 UTC on 1 December). In Shanghai
    the charge between the firsts would be December's, but November's statement has it: it
    stays November's, and December's statement does not count it again."""
    account, bot, fees = books(LOS_ANGELES)
    november, _created = statement_generate(
        account=account, month=NOV, now=at_local(LOS_ANGELES, 2026, 12, 1, 0, 5)
    )
    account = change_zone(account, SHANGHAI, now=MID_DECEMBER)
    assert counters(account) == {NOV: fees["mid-nov"] + fees["between"], DEC: fees["mid-dec"]}
    assert project_counters(account, bot) == counters(account)
    december, _created = statement_generate(
        account=account, month=DEC, now=at_local(SHANGHAI, 2027, 1, 1, 0, 5)
    )
    assert december.data["starts_at"] == november.data["ends_at"]
    assert november.data["totals"]["fee_nano"] + december.data["totals"]["fee_nano"] == sum(
        fees.values()
    )
    assert audit_account(account) == []


def test_moving_west_is_refused_while_the_stated_month_is_not_over_there():
    account = funded_account(recharge_units=100, time_zone=SHANGHAI)
    statement_generate(account=account, month=NOV, now=at_local(SHANGHAI, 2026, 12, 1, 0, 5))
    with pytest.raises(ServiceError) as refused:
        # 04:00 on 1 December in Shanghai is 12:00 on 30 November in Los Angeles.
        change_zone(account, LOS_ANGELES, now=BETWEEN_THE_FIRSTS)
    assert str(refused.value) == (
        "The statement for 2026-11 has been issued, and in America/Los_Angeles that month has "
        "not ended yet: you can switch to this time zone from 2026-12-01 00:00 "
        "(America/Los_Angeles)."
    )
    account.refresh_from_db()
    assert account.time_zone == SHANGHAI
    # Once December has begun in Los Angeles too, the change goes through.
    change_zone(account, LOS_ANGELES, now=at_local(LOS_ANGELES, 2026, 12, 1, 0, 0))
    account.refresh_from_db()
    assert account.time_zone == LOS_ANGELES


@pytest.mark.parametrize(
    ("old_zone", "new_zone"), [(SHANGHAI, LOS_ANGELES), (LOS_ANGELES, SHANGHAI)]
)
def test_a_charge_settled_across_a_time_zone_change_counts_in_the_new_zones_month(
    old_zone, new_zone
):
    """A request that loaded its account before the owner changed the zone settles after
    the change: its month is the new zone's, as the rebuilt counters are."""
    account = funded_account(recharge_units=100, time_zone=old_zone)
    project = account.projects.get()
    loaded_before = Account.objects.get(pk=account.pk)
    account = change_zone(account, new_zone, now=MID_DECEMBER)
    fee = charge(loaded_before, "late", BETWEEN_THE_FIRSTS, project)
    month = NOV if new_zone == LOS_ANGELES else DEC
    assert counters(account) == {month: fee}
    assert project_month_spend(account=account, month=month) == {project.pk: fee}
    assert audit_account(account) == []


@requires_postgres  # SQLite's in-memory test database cannot take 13 writers at once
@pytest.mark.django_db(transaction=True)
def test_charges_racing_a_time_zone_change_are_each_counted_once_in_the_new_zones_month():
    account = funded_account(recharge_units=1_000, time_zone=SHANGHAI)
    project = account.projects.get()
    loaded = [Account.objects.get(pk=account.pk) for _ in range(12)]  # before the change

    def work(index):
        if index == 12:
            change_zone(Account.objects.get(pk=account.pk), LOS_ANGELES, now=MID_DECEMBER)
        else:
            charge(loaded[index], f"race-{index}", BETWEEN_THE_FIRSTS, project)

    assert run_together(work, 13) == []
    fees = sum(LedgerEntry.objects.filter(account=account).values_list("fee_nano", flat=True))
    assert counters(account) == {NOV: fees}
    assert project_counters(account, project) == {NOV: fees}


def test_staff_changing_the_time_zone_in_the_admin_rebuilds_the_months(
    client, django_capture_on_commit_callbacks
):
    """The admin's account form goes through the same service as the owner's settings."""
    account = funded_account(recharge_units=100, time_zone=SHANGHAI)
    fee = charge(account, "between", BETWEEN_THE_FIRSTS, account.projects.get())
    assert counters(account) == {DEC: fee}
    login_verified(client, make_user(is_staff=True, is_superuser=True))
    url = reverse("admin:console_account_change", args=[account.pk])
    page = client.get(url)
    data = {"name": account.name, "time_zone": LOS_ANGELES}
    for formset in page.context["inline_admin_formsets"]:
        management = formset.formset.management_form
        data.update(
            {management.add_prefix(name): value for name, value in management.initial.items()}
        )
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(url, data)
    assert response.status_code == 302
    assert len(callbacks) == 1  # the daily roll-ups' rebuild, as for the owner
    account.refresh_from_db()
    assert account.time_zone == LOS_ANGELES
    assert counters(account) == {NOV: fee}
    event = AuditEvent.objects.get(action="account.update", account=account)
    assert event.actor_kind == AuditEvent.ActorKind.STAFF


def test_a_statement_job_holding_a_stale_account_states_the_month_in_the_current_zone(books):
    """The statement job loaded the account in Shanghai, then the owner moved it to Los
    Angeles before November's statement was stored: the statement takes the zone in force
    when it is stored (read under the wallet lock a zone change also takes), so its bounds
    agree with the counters the change rebuilt."""
    account, _bot, fees = books(SHANGHAI)
    stale = Account.objects.get(pk=account.pk)
    change_zone(account, LOS_ANGELES, now=MID_DECEMBER)
    november, _created = statement_generate(account=stale, month=NOV, now=MID_DECEMBER)
    assert november.data["time_zone"] == LOS_ANGELES
    assert november.data["totals"]["fee_nano"] == fees["mid-nov"] + fees["between"]
    assert counters(account)[NOV] == november.data["totals"]["fee_nano"]
    assert audit_account(account) == []


def test_a_charge_settled_across_a_change_counts_in_the_stated_month_that_holds_it():
    """November was stated in Los Angeles (it ended at 08:00 UTC on 1 December), then the
    owner moved east to Shanghai. A request that loaded the account before the change and
    started between the two firsts settles after it: its moment is inside November's stated
    bounds, so it counts in November, as billing_audit reckons it, not in the Shanghai
    calendar's December."""
    account = funded_account(recharge_units=100, time_zone=LOS_ANGELES)
    project = account.projects.get()
    statement_generate(account=account, month=NOV, now=at_local(LOS_ANGELES, 2026, 12, 1, 0, 5))
    loaded_before = Account.objects.get(pk=account.pk)
    account = change_zone(account, SHANGHAI, now=MID_DECEMBER)
    fee = charge(loaded_before, "late", BETWEEN_THE_FIRSTS, project)
    assert counters(account) == {NOV: fee}
    assert project_counters(account, project) == {NOV: fee}
    assert audit_account(account) == []
