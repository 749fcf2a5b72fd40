"""Load the GLM Coding Plan's catalogue as reference 001 gives it after the price change of
12 February 2026 (Beijing time): the three plans, their prices in both currencies, their
limits and the models each covers. Only missing rows are created, so staff edits survive.

The prices before that change are not loaded: the references say only that they were lower
(30%+), not what they were, and a subscriber from before then would be on a price this
console never sold. Staff add earlier or later rows in the back-office (docs/decisions.md)."""

from datetime import datetime, timedelta, timezone

from django.db import migrations

NANO = 10**9
BEIJING = timezone(timedelta(hours=8))
EFFECTIVE = datetime(2026, 2, 12, tzinfo=BEIJING)

# code, name, rank, {currency: (month, quarter, year)} in whole units.
PLANS = [
    ("lite", "Lite", 1, {"USD": (10, 27, 84), "CNY": (49, 132, 411)}),
    ("pro", "Pro", 2, {"USD": (30, 81, 252), "CNY": (149, 402, 1251)}),
    ("max", "Max", 3, {"USD": (80, 216, 672), "CNY": (469, 1266, 3939)}),
]

# code -> prompts per 5 h, per week, per month; MCP calls per month; concurrency. The week
# and month are 001's estimates: at these 5-hour limits they can never bind (docs/decisions.md).
LIMITS = {
    "lite": (120, 9_000, 18_000, 100, 3),
    "pro": (600, 45_000, 90_000, 1_000, 5),
    "max": (2_400, 180_000, 360_000, 4_000, 10),
}

# model -> (weight in thousandths of a prompt, the plans that cover it).
MODELS = {
    "glm-4.7": (1000, ("lite", "pro", "max")),
    "glm-4.6": (1000, ("lite", "pro", "max")),
    "glm-4.5": (1000, ("lite", "pro", "max")),
    "glm-4.5-air": (1000, ("lite", "pro", "max")),
    # The vendor's FAQ: GLM-5 uses quota at 3x; GLM-5-Code is the same model tuned for code.
    "glm-5": (3000, ("pro", "max")),
    "glm-5-code": (3000, ("pro", "max")),
}


def load(apps, schema_editor):
    Plan = apps.get_model("plans", "Plan")
    PlanPrice = apps.get_model("plans", "PlanPrice")
    PlanLimits = apps.get_model("plans", "PlanLimits")
    CodingModel = apps.get_model("plans", "CodingModel")
    plans = {}
    for code, name, rank, prices in PLANS:
        plan, _created = Plan.objects.get_or_create(
            code=code, defaults={"name": name, "rank": rank}
        )
        plans[code] = plan
        for currency, amounts in prices.items():
            for period, amount in zip(("month", "quarter", "year"), amounts, strict=True):
                PlanPrice.objects.get_or_create(
                    plan=plan,
                    period=period,
                    currency=currency,
                    effective_from=EFFECTIVE,
                    defaults={"amount_nano": amount * NANO},
                )
        five_hours, week, month, mcp, concurrency = LIMITS[code]
        PlanLimits.objects.get_or_create(
            plan=plan,
            effective_from=EFFECTIVE,
            defaults={
                "prompts_5h": five_hours,
                "prompts_week": week,
                "prompts_month": month,
                "mcp_calls_month": mcp,
                "concurrency": concurrency,
            },
        )
    for model, (weight, codes) in MODELS.items():
        coding_model, created = CodingModel.objects.get_or_create(
            model=model, defaults={"weight_milli": weight}
        )
        if created:
            for code in codes:
                plans[code].coding_models.add(coding_model)


class Migration(migrations.Migration):
    dependencies = [("plans", "0001_initial")]

    operations = [migrations.RunPython(load, migrations.RunPython.noop)]
