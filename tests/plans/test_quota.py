"""The coding plan's quotas at request time (issue 22): what a request counts, the windows
rolling under a clock the test moves, the refusals with their codes and reset times, atomic
admission under concurrency, and windows rebuilt from the records when Redis lost them."""

from datetime import UTC, datetime, timedelta

import pytest

from console import api_errors
from console.shared_state import quota_keys, shared_state
from plans.models import Plan, PlanLimits, PlanTerm
from plans.quota import (
    QuotaHold,
    QuotaRefused,
    continues_a_turn,
    prompt_milli,
    quota_admit,
    quota_settle,
    subscription_month,
)
from plans.selectors import plan_admission
from plans.services import plan_subscribe
from tests.billing.factories import funded_account
from tests.threads import run_together

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ASK = [{"role": "user", "content": "Refactor the parser"}]


@pytest.fixture(autouse=True)
def fresh_state(fresh_shared_state):
    return fresh_shared_state


def subscribed(code="lite", *, at=T0, **limits):
    """An account on `code` bought at `at`; with `limits`, staff-set limits from before `at`
    (low enough to bind in a test)."""
    account = funded_account(recharge_units=10_000)
    plan = Plan.objects.get(code=code)
    if limits:
        current = PlanLimits.objects.filter(plan=plan).order_by("-effective_from").first()
        fields = {
            "prompts_5h": current.prompts_5h,
            "prompts_week": current.prompts_week,
            "prompts_month": current.prompts_month,
            "mcp_calls_month": current.mcp_calls_month,
            "concurrency": current.concurrency,
            **limits,
        }
        PlanLimits.objects.create(plan=plan, effective_from=at - timedelta(days=1), **fields)
    subscription = plan_subscribe(account=account, plan=plan, period="month", actor=None, now=at)
    return account, subscription


def admit(account, at, *, model="glm-4.7", messages=ASK, token=None):
    return quota_admit(
        account=account, model=model, messages=messages, token=token or at.isoformat(), now=at
    )


def counted(account, at, *, token=None, **kwargs):
    """Admit and settle as an answered request (counted, slot freed)."""
    token = token or at.isoformat()
    held = admit(account, at, token=token, **kwargs)
    assert isinstance(held, QuotaHold), held
    quota_settle(held, token=token, counts=True)
    return held


# --- What a request counts -------------------------------------------------------------------


def test_a_new_user_turn_counts_one_prompt_times_the_model_weight():
    assert prompt_milli(messages=ASK, weight_milli=1000, continuation_divisor=15) == 1000
    assert prompt_milli(messages=ASK, weight_milli=3000, continuation_divisor=15) == 3000


def test_a_request_continuing_a_turn_counts_its_share_rounded_up():
    tool = [*ASK, {"role": "assistant", "tool_calls": []}, {"role": "tool", "content": "ok"}]
    assert prompt_milli(messages=tool, weight_milli=1000, continuation_divisor=15) == 67
    assert prompt_milli(messages=tool, weight_milli=3000, continuation_divisor=15) == 200
    assert prompt_milli(messages=tool, weight_milli=1000, continuation_divisor=4) == 250


def test_tool_results_in_blocks_with_reminder_text_beside_them_still_continue_a_turn():
    blocks = {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": "42 passed"},
            {"type": "text", "text": "<system-reminder>Keep going</system-reminder>"},
        ],
    }
    assert continues_a_turn([*ASK, blocks])
    assert not continues_a_turn([*ASK, {"role": "user", "content": [{"type": "text"}]}])
    assert not continues_a_turn([])
    assert not continues_a_turn("not a list")


def test_a_recorded_agent_loop_counts_its_questions_and_a_share_of_each_tool_round():
    """Two questions, the first taking five tool rounds, the second two: 2 prompts + 7/15."""
    loop, history = [], list(ASK)
    loop.append(list(history))
    for round_ in range(5):
        history += [
            {"role": "assistant", "content": None, "tool_calls": [{"id": f"c{round_}"}]},
            {"role": "tool", "tool_call_id": f"c{round_}", "content": "file contents"},
        ]
        loop.append(list(history))
    history += [{"role": "assistant", "content": "Done."}, {"role": "user", "content": "Now tests"}]
    loop.append(list(history))
    for round_ in range(2):
        history += [
            {"role": "assistant", "content": None, "tool_calls": [{"id": f"d{round_}"}]},
            {"role": "tool", "tool_call_id": f"d{round_}", "content": "ok"},
        ]
        loop.append(list(history))
    total = sum(prompt_milli(messages=m, weight_milli=1000, continuation_divisor=15) for m in loop)
    assert total == 2 * 1000 + 7 * 67


# --- Admission and the windows -----------------------------------------------------------------


def test_the_five_hour_window_refuses_with_1308_and_frees_exactly_five_hours_later():
    account, _ = subscribed(prompts_5h=2)
    counted(account, T0)
    counted(account, T0 + timedelta(hours=1))
    refused = admit(account, T0 + timedelta(hours=2))
    assert isinstance(refused, QuotaRefused)
    assert refused.refusal == api_errors.PLAN_FIVE_HOURS and refused.refusal.status == 429
    # The account's zone is Asia/Shanghai: 09:00 UTC + 5 h = 22:00 there.
    assert refused.message == (
        "Usage limit reached for 5 hour. Your limit will reset at 2026-12-01 22:00:00"
    )
    assert refused.retry_after == 3 * 3600
    assert isinstance(admit(account, T0 + timedelta(hours=5) - timedelta(seconds=1)), QuotaRefused)
    assert isinstance(admit(account, T0 + timedelta(hours=5)), QuotaHold)


def test_the_week_binds_with_staff_set_limits_and_frees_a_week_later():
    account, _ = subscribed(prompts_5h=10, prompts_week=3)
    for hours in (0, 6, 12):
        counted(account, T0 + timedelta(hours=hours))
    refused = admit(account, T0 + timedelta(days=2))
    assert refused.refusal == api_errors.PLAN_WEEK_OR_MONTH and refused.refusal.code == "1310"
    assert "2026-12-08 17:00:00" in refused.message
    assert isinstance(admit(account, T0 + timedelta(days=7)), QuotaHold)


def test_the_month_is_the_subscription_month_and_refuses_until_it_turns():
    account, subscription = subscribed(prompts_5h=10, prompts_week=100, prompts_month=2)
    counted(account, T0)
    counted(account, T0 + timedelta(days=10))
    refused = admit(account, T0 + timedelta(days=20))
    assert refused.refusal.code == "1310"
    month = subscription_month(subscription, T0 + timedelta(days=20))
    assert (month.index, month.end) == (0, datetime(2027, 1, 1, 9, 0, tzinfo=UTC))
    assert "2027-01-01 17:00:00" in refused.message
    # The renewal job would renew the plan; the month turns with it.
    subscription.period_end = datetime(2027, 2, 1, 9, 0, tzinfo=UTC)
    subscription.save()
    assert isinstance(admit(account, datetime(2027, 1, 1, 9, 0, tzinfo=UTC)), QuotaHold)


def test_a_heavier_model_uses_its_weight_and_a_continuation_its_share():
    account, subscription = subscribed("pro", prompts_5h=4)
    held = counted(account, T0, model="GLM-5")  # any case: the same model
    assert held.amount == 3000
    tool = [*ASK, {"role": "tool", "content": "ok"}]
    assert counted(account, T0, model="glm-5", messages=tool, token="c").amount == 200
    used = shared_state().quota_use(held.windows, now_ms=int(T0.timestamp() * 1000))
    assert [use.used for use in used] == [3200, 3200, 3200]
    assert isinstance(admit(account, T0, model="glm-5", token="d"), QuotaRefused)
    # 800 left: a GLM-4.7 continuation (67) fits where a GLM-5 question (3,000) did not.
    assert isinstance(admit(account, T0, model="glm-4.7", messages=tool, token="e"), QuotaHold)


def test_a_refusal_or_failure_gives_back_what_admission_counted():
    account, _ = subscribed(prompts_5h=1)
    held = admit(account, T0)
    assert isinstance(admit(account, T0, token="second"), QuotaRefused)
    quota_settle(held, token=T0.isoformat(), counts=False)
    assert isinstance(admit(account, T0, token="third"), QuotaHold)


def test_without_a_plan_after_it_lapsed_and_outside_it_requests_are_refused():
    account = funded_account(recharge_units=100)
    assert admit(account, T0).refusal == api_errors.PLAN_REQUIRED
    lite, subscription = subscribed("lite")
    assert admit(lite, T0, model="glm-5").refusal == api_errors.PLAN_MODEL
    assert admit(lite, T0, model="no-such-model").refusal == api_errors.UNKNOWN_MODEL
    # Past the period's end with auto-renew off: lapsed, whatever the renewal job did not do.
    subscription.auto_renew = False
    subscription.save()
    assert admit(lite, subscription.period_end).refusal == api_errors.PLAN_EXPIRED
    assert isinstance(admit(lite, subscription.period_end - timedelta(seconds=1)), QuotaHold)


def test_auto_renewal_gets_a_short_grace_while_the_job_runs():
    account, subscription = subscribed("lite")
    assert isinstance(admit(account, subscription.period_end + timedelta(minutes=5)), QuotaHold)
    late = subscription.period_end + timedelta(minutes=20)
    assert admit(account, late, token="late").refusal == api_errors.PLAN_EXPIRED


def test_the_plans_concurrency_is_its_own_not_the_tiers():
    account, _ = subscribed(concurrency=2)
    first, second = admit(account, T0, token="a"), admit(account, T0, token="b")
    assert isinstance(first, QuotaHold) and isinstance(second, QuotaHold)
    assert admit(account, T0, token="c").refusal == api_errors.PLAN_CONCURRENCY
    quota_settle(first, token="a", counts=True)
    assert isinstance(admit(account, T0, token="d"), QuotaHold)


@pytest.mark.django_db(transaction=True)
def test_30_concurrent_requests_with_10_prompts_left_admit_exactly_10():
    account, _ = subscribed(prompts_5h=12, concurrency=40)
    counted(account, T0, token="x")
    counted(account, T0, token="y")

    results = []

    def one(index):
        results.append(admit(account, T0, token=f"r{index}"))

    assert run_together(one, 30) == []
    assert sum(isinstance(result, QuotaHold) for result in results) == 10
    refused = [result for result in results if isinstance(result, QuotaRefused)]
    assert {result.refusal.code for result in refused} == {"1308"}


def test_a_lost_window_is_rebuilt_from_the_usage_records():
    from usage.models import UsageRecord  # the records settlement writes: built here by hand

    account, subscription = subscribed(prompts_5h=3)
    term = subscription.terms.get()
    for minutes, milli in ((0, 1000), (30, 1000), (400, 1000)):
        UsageRecord.objects.create(
            account=account,
            request_id=f"r{minutes}",
            model="glm-4.7",
            status=200,
            plan_term_id=term.pk,
            quota_milli=milli,
            created_at=T0 + timedelta(minutes=minutes),
        )
    at = T0 + timedelta(minutes=401)
    # Redis knows nothing of this subscription: the first admission rebuilds every window.
    held = admit(account, at)
    assert isinstance(held, QuotaHold)
    keys = quota_keys(subscription.pk, 0)
    assert [window.key for window in held.windows] == list(keys)
    uses = shared_state().quota_use(held.windows, now_ms=int(at.timestamp() * 1000))
    # The 5 hours hold the record of 400 minutes and this request; the week and month all four.
    assert [use.used for use in uses] == [2000, 4000, 4000]


def test_admission_reads_the_plan_in_one_query(django_assert_num_queries):
    """It runs on every coding request: the subscription, its term, the limits in force and
    the model's weight come in one query (the windows, once built, live in Redis)."""
    account, _ = subscribed("pro")
    counted(account, T0, token="warm")  # builds the windows from the (no) records
    with django_assert_num_queries(1):
        held = admit(account, T0, model="GLM-5", token="measured")
    assert isinstance(held, QuotaHold) and held.amount == 3000
    with django_assert_num_queries(1):
        assert admit(account, T0, model="glm-5-code", token="x").amount == 3000
    lite, _ = subscribed("lite")
    counted(lite, T0, token="warm-lite")
    with django_assert_num_queries(1):
        assert admit(lite, T0, model="glm-5", token="y").refusal == api_errors.PLAN_MODEL


def test_admission_reads_the_limits_and_the_term_in_force_at_its_moment():
    """Admission's one statement is written by hand (it runs on every plan request): the
    limits row in force and the latest term are those of `at`, never a later row's, and the
    subscription and its plan come back as the ORM would load them, on either database."""
    account, subscription = subscribed("lite")
    first_term = PlanTerm.objects.get(subscription=subscription)
    bought = PlanLimits.objects.filter(plan=subscription.plan, effective_from__lte=T0).latest(
        "effective_from"
    )
    changed = T0 + timedelta(days=1)
    PlanLimits.objects.create(
        plan=subscription.plan,
        prompts_5h=7,
        prompts_week=70,
        prompts_month=700,
        mcp_calls_month=5,
        concurrency=2,
        continuation_divisor=10,
        effective_from=changed,
    )
    renewed = PlanTerm.objects.create(
        subscription=subscription,
        plan=subscription.plan,
        kind=PlanTerm.Kind.RENEWAL,
        starts_at=T0 + timedelta(days=2),
        ends_at=T0 + timedelta(days=30),
        amount_nano=0,
        created_at=T0,
    )

    before = plan_admission(account=account, model=" GLM-4.7 ", at=changed - timedelta(seconds=1))
    assert (before.limit_prompts_5h, before.limit_concurrency) == (
        bought.prompts_5h,
        bought.concurrency,
    )
    assert before.continuation_divisor == bought.continuation_divisor
    assert before.term_id == first_term.pk
    assert before.model_known is True and before.model_weight == 1000

    after = plan_admission(account=account, model="glm-5", at=changed)
    assert (after.limit_prompts_5h, after.limit_prompts_week, after.limit_prompts_month) == (
        7,
        70,
        700,
    )
    assert (after.limit_concurrency, after.continuation_divisor) == (2, 10)
    assert after.term_id == first_term.pk  # the renewal has not started yet
    # Lite does not cover GLM-5: a model that exists, outside the plan.
    assert after.model_known is True and after.model_weight is None

    later = plan_admission(account=account, model="no-such-model", at=renewed.starts_at)
    assert later.term_id == renewed.pk
    assert later.model_known is False and later.model_weight is None
    # Every field as the ORM loads it: aware datetimes and booleans on SQLite too.
    assert later == subscription and later.plan == subscription.plan
    for model_field in type(subscription)._meta.concrete_fields:
        name = model_field.attname
        assert getattr(later, name) == getattr(subscription, name), name
    assert later.plan.code == "lite" and later.plan.name == subscription.plan.name
    assert later.auto_renew is True and later.period_end.tzinfo is not None

    without_a_plan = funded_account(recharge_units=1)
    assert plan_admission(account=without_a_plan, model="glm-4.7", at=T0) is None
