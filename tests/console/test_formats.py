"""Dates, numbers and money per interface language (console/formats over Django's own)."""

import datetime

import pytest
from django.template import Context, Template
from django.utils import timezone, translation

pytestmark = pytest.mark.embedded

SAMPLE = Template(
    "{% load humanize money %}{{ tokens|intcomma }} | {{ when|date:'DATETIME_FORMAT' }} | "
    "{{ when|date:'DATE_FORMAT' }} | {{ when|date:'YEAR_MONTH_FORMAT' }} | {{ fee|money:'CNY' }} "
    "| {{ fee|money_exact:'USD' }}"
)
CONTEXT = {
    "tokens": 12_345_678,
    "when": datetime.datetime(2026, 11, 23, 14, 5, tzinfo=datetime.UTC),
    "fee": 1_234_567_890_000_000,  # ¥1,234,567.89 in nano
}


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        (
            "en",
            "12,345,678 | Nov 23, 2026 14:05 | Nov 23, 2026 | November 2026 | ¥1,234,567.89 "
            "| $1,234,567.89",
        ),
        (
            "zh-hans",
            "12,345,678 | 2026年11月23日 14:05 | 2026年11月23日 | 2026年11月 | ¥1,234,567.89 "
            "| $1,234,567.89",
        ),
    ],
)
def test_each_language_formats_dates_and_groups_numbers(language, expected):
    with translation.override(language), timezone.override(datetime.UTC):
        assert SAMPLE.render(Context(CONTEXT)) == expected


def test_chinese_numbers_are_grouped_not_run_together():
    # Django's own zh_Hans formats group by four with no separator: 12345678 read as one run.
    with translation.override("zh-hans"):
        assert Template("{% load humanize %}{{ n|intcomma }}").render(Context({"n": 10**9})) == (
            "1,000,000,000"
        )


@pytest.mark.django_db
def test_seeded_tier_names_are_translated_and_staff_names_shown_as_typed():
    from console.models import Tier

    standard = Tier.objects.get(slug="standard")
    with translation.override("zh-hans"):
        assert standard.display_name == "标准版"
        standard.name = "Gold partners"
        assert standard.display_name == "Gold partners"
    with translation.override("en"):
        assert Tier.objects.get(slug="standard").display_name == "Standard"
