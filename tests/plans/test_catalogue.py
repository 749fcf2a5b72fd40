"""The GLM Coding Plan's catalogue (issue 22, first step): prices and limits as reference 001
gives them, effective-dated rows that staff add (never change), and the models each plan
covers, matched whatever their case."""

import importlib
import math
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction
from django.forms.models import model_to_dict
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from console.models import AuditEvent
from console.money import NANO_PER_UNIT
from plans.models import CodingModel, Period, Plan, PlanLimits, PlanPrice
from plans.selectors import coding_model, plan_covers, plan_limits, plan_offers, plan_price
from tests.factories import login_verified, make_user

pytestmark = pytest.mark.django_db

STAFF_GROUPS = importlib.import_module("console.migrations.0008_staff_groups")

# The table (reference 001 after 12 February 2026): month, quarter, year.
PRICES = {
    "USD": {"lite": (10, 27, 84), "pro": (30, 81, 252), "max": (80, 216, 672)},
    "CNY": {"lite": (49, 132, 411), "pro": (149, 402, 1251), "max": (469, 1266, 3939)},
}


def admin_url(model, view, *args):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def superuser_client():
    client = Client()
    login_verified(client, make_user(is_staff=True, is_superuser=True))
    return client


def plan(code) -> Plan:
    return Plan.objects.get(code=code)


@pytest.mark.parametrize("currency", ["USD", "CNY"])
def test_every_plan_and_period_costs_what_reference_001_says(currency):
    offers = plan_offers(currency=currency)
    assert [offer.plan.code for offer in offers] == ["lite", "pro", "max"]
    for offer in offers:
        amounts = tuple(period.amount_nano for period in offer.periods)
        assert [period.period for period in offer.periods] == ["month", "quarter", "year"]
        assert amounts == tuple(
            units * NANO_PER_UNIT for units in PRICES[currency][offer.plan.code]
        )


def test_the_longer_periods_show_their_saving_against_paying_monthly():
    lite = plan_offers(currency="USD")[0]
    # 27 for 3 months instead of 30 (10%), 84 for 12 instead of 120 (30%).
    assert [(p.period, p.saving_percent) for p in lite.periods] == [
        ("month", 0),
        ("quarter", 10),
        ("year", 30),
    ]


def test_a_new_price_applies_from_its_date_and_earlier_buyers_keep_theirs():
    lite = plan("lite")
    bought_at = timezone.now()
    later = bought_at + timedelta(days=30)
    PlanPrice.objects.create(
        plan=lite,
        period=Period.MONTH,
        currency="USD",
        amount_nano=12 * NANO_PER_UNIT,
        effective_from=later,
    )
    assert plan_price(plan=lite, period="month", currency="USD").amount_nano == 10 * NANO_PER_UNIT
    after = later + timedelta(seconds=1)
    assert (
        plan_price(plan=lite, period="month", currency="USD", at=after).amount_nano
        == 12 * NANO_PER_UNIT
    )
    # A renewal reads the price at the subscriber's purchase: grandfathered.
    assert (
        plan_price(plan=lite, period="month", currency="USD", at=bought_at).amount_nano
        == 10 * NANO_PER_UNIT
    )


def test_a_plan_is_not_sold_before_its_first_price_or_in_a_currency_without_one():
    before = timezone.now().replace(year=2020)
    assert plan_price(plan=plan("pro"), period="year", currency="USD", at=before) is None
    assert all(offer.periods == [] for offer in plan_offers(currency="EUR"))


def test_the_limits_are_reference_001s_with_the_documented_concurrency():
    rows = {code: plan_limits(plan=plan(code)) for code in ("lite", "pro", "max")}
    assert {
        code: (
            row.prompts_5h,
            row.prompts_week,
            row.prompts_month,
            row.mcp_calls_month,
            row.concurrency,
        )
        for code, row in rows.items()
    } == {
        "lite": (120, 9_000, 18_000, 100, 3),
        "pro": (600, 45_000, 90_000, 1_000, 5),
        "max": (2_400, 180_000, 360_000, 4_000, 10),
    }
    assert all(
        row.continuation_divisor == 15 and row.daily_new_subscriptions is None
        for row in rows.values()
    )


def test_at_the_default_limits_the_week_and_the_month_can_never_bind():
    # The most prompts a rolling window can hold is a full 5-hour quota at the start of each
    # 5 hours it spans: 34 in a week (168 h), 149 in a 31-day month (744 h).
    for limits in PlanLimits.objects.all():
        assert limits.prompts_5h * math.ceil(168 / 5) < limits.prompts_week
        assert limits.prompts_5h * math.ceil(31 * 24 / 5) < limits.prompts_month


def test_new_limits_take_over_from_their_date():
    pro = plan("pro")
    start = timezone.now() + timedelta(hours=1)
    PlanLimits.objects.create(
        plan=pro,
        prompts_5h=10,
        prompts_week=20,
        prompts_month=30,
        mcp_calls_month=1,
        concurrency=2,
        effective_from=start,
    )
    assert plan_limits(plan=pro).prompts_5h == 600
    assert plan_limits(plan=pro, at=start).prompts_5h == 10


def test_each_plan_covers_its_models_and_names_match_in_any_case():
    lite, pro, max_ = plan("lite"), plan("pro"), plan("max")
    for name in ("glm-4.7", "GLM-4.7", " Glm-4.6 ", "glm-4.5", "GLM-4.5-Air"):
        assert plan_covers(plan=lite, model=name), name
    for name in ("glm-5", "GLM-5", "glm-5-code"):
        assert not plan_covers(plan=lite, model=name), name
        assert plan_covers(plan=pro, model=name) and plan_covers(plan=max_, model=name), name
    assert not plan_covers(plan=max_, model="glm-4.7-flash")  # pay-as-you-go only
    assert not plan_covers(plan=max_, model="")


def test_glm_5_counts_three_prompts_a_request_and_the_others_one():
    assert coding_model("GLM-5").weight_milli == 3000
    assert coding_model("glm-5-code").weight_milli == 3000
    assert coding_model("glm-4.7").weight_milli == 1000
    assert coding_model("no-such-model") is None


def test_a_coding_model_is_stored_lower_case_and_the_database_refuses_otherwise():
    made = CodingModel.objects.create(model="  GLM-6-Preview ")
    assert made.model == "glm-6-preview"
    with transaction.atomic(), pytest.raises(IntegrityError):
        CodingModel.objects.filter(pk=made.pk).update(model="GLM-6-Preview")


@pytest.mark.parametrize(
    "fields",
    [{"amount_nano": 0}, {"amount_nano": -1}],
    ids=["free", "negative"],
)
def test_the_database_refuses_a_price_that_is_not_positive(fields):
    with transaction.atomic(), pytest.raises(IntegrityError):
        PlanPrice.objects.create(
            plan=plan("lite"),
            period="month",
            currency="USD",
            effective_from=timezone.now(),
            **fields,
        )


# --- The back-office ------------------------------------------------------------------------


def price_form(**overrides):
    start = timezone.localtime() + timedelta(days=1)
    return {
        "plan": plan("pro").pk,
        "period": "quarter",
        "currency": "USD",
        "amount_nano": 99 * NANO_PER_UNIT,
        "effective_from_0": start.date().isoformat(),
        "effective_from_1": start.strftime("%H:%M:%S"),
    } | overrides


def limits_form(**overrides):
    start = timezone.localtime() + timedelta(days=1)
    return {
        "plan": plan("lite").pk,
        "prompts_5h": 200,
        "prompts_week": 9_000,
        "prompts_month": 18_000,
        "mcp_calls_month": 100,
        "concurrency": 3,
        "continuation_divisor": 15,
        "daily_new_subscriptions": 500,
        "effective_from_0": start.date().isoformat(),
        "effective_from_1": start.strftime("%H:%M:%S"),
    } | overrides


def test_staff_add_a_price_as_a_new_row_audited_and_cannot_change_or_delete_one(superuser_client):
    old = PlanPrice.objects.get(plan__code="pro", period="quarter", currency="USD")
    old_values = model_to_dict(old)
    response = superuser_client.post(admin_url(PlanPrice, "add"), price_form())
    assert response.status_code == 302, response.context["adminform"].form.errors
    new = PlanPrice.objects.filter(plan__code="pro", period="quarter", currency="USD").latest(
        "effective_from"
    )
    assert new.pk != old.pk and new.amount_nano == 99 * NANO_PER_UNIT
    event = AuditEvent.objects.get(action="catalogue.planprice_add")
    assert event.target_type == "plans.planprice" and event.target_id == str(new.pk)
    assert (
        superuser_client.post(admin_url(PlanPrice, "change", old.pk), price_form()).status_code
        == 403
    )
    assert (
        superuser_client.post(admin_url(PlanPrice, "delete", old.pk), {"post": "yes"}).status_code
        == 403
    )
    old.refresh_from_db()
    assert model_to_dict(old) == old_values


@pytest.mark.parametrize(
    "overrides",
    [
        {"effective_from_0": "2020-01-01"},
        {"amount_nano": 0},
        {"amount_nano": -5},
        {"amount_nano": "ten"},
        {"amount_nano": "9" * 30},
        {"currency": "EUR"},
        {"period": "week"},
        {"plan": 999_999},
        {"plan": ""},
    ],
    ids=[
        "in-the-past",
        "zero",
        "negative",
        "text",
        "huge",
        "currency",
        "period",
        "no-plan",
        "missing",
    ],
)
def test_an_invalid_price_is_refused_and_nothing_is_added(superuser_client, overrides):
    count = PlanPrice.objects.count()
    response = superuser_client.post(admin_url(PlanPrice, "add"), price_form(**overrides))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert PlanPrice.objects.count() == count


def test_staff_add_limits_as_a_new_row(superuser_client):
    response = superuser_client.post(admin_url(PlanLimits, "add"), limits_form())
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert PlanLimits.objects.filter(plan__code="lite").count() == 2
    assert AuditEvent.objects.filter(action="catalogue.planlimits_add").count() == 1
    row = PlanLimits.objects.filter(plan__code="lite").latest("effective_from")
    assert (
        superuser_client.post(admin_url(PlanLimits, "change", row.pk), limits_form()).status_code
        == 403
    )


@pytest.mark.parametrize(
    "overrides",
    [
        {"prompts_5h": 0},
        {"concurrency": 0},
        {"continuation_divisor": 0},
        {"prompts_week": -1},
        {"prompts_month": "lots"},
        {"effective_from_0": "2020-01-01"},
    ],
    ids=["no-prompts", "no-concurrency", "divisor", "negative", "text", "in-the-past"],
)
def test_invalid_limits_are_refused_and_nothing_is_added(superuser_client, overrides):
    count = PlanLimits.objects.count()
    response = superuser_client.post(admin_url(PlanLimits, "add"), limits_form(**overrides))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert PlanLimits.objects.count() == count


def test_staff_change_a_models_weight_and_a_plans_models_but_never_a_plans_code(superuser_client):
    glm5 = coding_model("glm-5")
    response = superuser_client.post(
        admin_url(CodingModel, "change", glm5.pk), {"model": "ignored", "weight_milli": 2500}
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    glm5.refresh_from_db()
    assert (glm5.model, glm5.weight_milli) == ("glm-5", 2500)
    assert AuditEvent.objects.filter(action="catalogue.codingmodel_change").count() == 1

    lite = plan("lite")
    models = [coding_model(name).pk for name in ("glm-4.7", "glm-5")]
    response = superuser_client.post(
        admin_url(Plan, "change", lite.pk),
        {"name": "Lite", "code": "hacked", "rank": 9, "coding_models": models},
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    lite.refresh_from_db()
    assert (lite.code, lite.rank) == ("lite", 1)
    assert plan_covers(plan=lite, model="glm-5") and not plan_covers(plan=lite, model="glm-4.6")
    assert (
        superuser_client.post(admin_url(Plan, "delete", lite.pk), {"post": "yes"}).status_code
        == 403
    )


def test_a_zero_weight_is_refused(superuser_client):
    glm5 = coding_model("glm-5")
    response = superuser_client.post(
        admin_url(CodingModel, "change", glm5.pk), {"model": "glm-5", "weight_milli": 0}
    )
    assert response.status_code == 200 and response.context["adminform"].form.errors
    glm5.refresh_from_db()
    assert glm5.weight_milli == 3000


def test_support_and_finance_staff_see_the_catalogue_read_only():
    for name in (STAFF_GROUPS.SUPPORT, STAFF_GROUPS.FINANCE_STAFF):
        codenames = set(
            Group.objects.get(name=name)
            .permissions.filter(content_type__app_label="plans")
            .values_list("codename", flat=True)
        )
        assert codenames == {
            "view_plan",
            "view_planprice",
            "view_planlimits",
            "view_codingmodel",
            "view_subscription",
            "view_planterm",
            "view_mcpcall",
        }


@pytest.mark.parametrize(
    "model", [Plan, PlanPrice, PlanLimits, CodingModel], ids=lambda m: m.__name__
)
def test_each_catalogue_list_shows_its_rows(superuser_client, model):
    page = superuser_client.get(admin_url(model, "changelist"))
    assert page.status_code == 200
    assert page.context["cl"].result_count == model.objects.count() > 0
    row = model.objects.order_by("pk").first()
    assert superuser_client.get(admin_url(model, "change", row.pk)).status_code == 200
    assert superuser_client.get(admin_url(model, "add")).status_code == 200
