"""Text search narrowed by the account's character pairs (PostgreSQL) finds exactly what a
plain case-insensitive substring match finds, for every query length and character; the
embedded default (SQLite) answers the same without the index."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from history.models import PromptLog
from history.selectors import Filters, history_queryset, history_search
from tests.history.test_search import log

pytestmark = pytest.mark.django_db

TEXTS = [
    "欢迎使用智谱AI开放平台",
    "智能客服",
    "How do I rotate an API KEY?",
    "discount 100% off_today",
    "a back\\slash and a_b and 50%",
    "GLM-4.7 的价格，密钥",
    "谱",
    "x",
    "",
    "Straße ÄÖÜ äöü",
    "emoji 🙂🙂 and 智谱🙂",
]
QUERIES = [
    # 1 character: no pair, the time index alone
    "智",
    "谱",
    "x",
    "%",
    "_",
    "\\",
    "🙂",
    # 2 characters: one pair
    "智谱",
    "密钥",
    "AI",
    "ai",
    "Ai",
    "0%",
    "f_",
    "\\s",
    "%%",
    "__",
    "谱A",
    "🙂🙂",
    "ok",
    "äö",
    # across the 2/3 boundary and longer
    "智谱A",
    "智谱ai开放",
    "rotate an api key?",
    "100% off_",
    "a_b",
    "k\\sl",
    "，密钥",
    "GLM-4.7 ",
    "ßE",
    "STRASSE",
    "智谱🙂",
    "平台 支持",
    "not there at all",
]


@pytest.fixture
def corpus(world):
    now = timezone.now()
    rows = [
        log(world.account_a, text, at=now - timedelta(hours=index))
        for index, text in enumerate(TEXTS)
    ]
    rows.append(log(world.account_a, "old 智谱", at=now - timedelta(days=40)))
    # The same texts under another account: its pairs are its own keys, never a's.
    for text in TEXTS:
        log(world.account_b, text)
    return rows


def window(text=""):
    now = timezone.now()
    return Filters(since=now - timedelta(days=30), until=now + timedelta(minutes=1), text=text)


@pytest.mark.parametrize("query", QUERIES)
def test_search_finds_exactly_what_a_substring_match_finds(world, corpus, query):
    expected = list(
        PromptLog.objects.filter(
            account=world.account_a,
            created_at__gte=window().since,
            search_text__icontains=query,
        )
        .order_by("-created_at", "-id")
        .values_list("pk", flat=True)
    )
    rows, _cursor, count = history_search(account=world.account_a, filters=window(query))
    assert [row.pk for row in rows] == expected
    assert count == len(expected)


def test_a_two_character_chinese_word_is_found_in_prompt_and_answer(world):
    prompt = log(world.account_a, "请帮我总结智谱的公告")
    answer = log(world.account_a, "你好", answer="这是智谱的回答")
    log(world.account_a, "智 谱 are apart here")
    rows, _cursor, count = history_search(account=world.account_a, filters=window("智谱"))
    assert [row.pk for row in rows] == [answer.pk, prompt.pk] and count == 2


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the key index is PostgreSQL's")
def test_the_keys_are_the_accounts_upper_case_character_pairs(world):
    with connection.cursor() as cursor:
        cursor.execute("SELECT history_search_keys(7, %s)", ["Ab智谱c"])
        assert cursor.fetchone()[0] == ["7:AB", "7:B智", "7:智谱", "7:谱C"]
        cursor.execute("SELECT history_search_keys(7, 'a'), history_search_keys(7, '')")
        assert cursor.fetchone() == ([], [])


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the key index is PostgreSQL's")
@pytest.mark.parametrize(("query", "narrowed"), [("智", False), ("智谱", True), ("智谱AI", True)])
def test_queries_of_two_characters_or_more_are_narrowed_by_the_keys(world, query, narrowed):
    sql = str(history_queryset(account=world.account_a, filters=window(query)).query)
    assert ("history_search_keys" in sql) is narrowed


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the key index is PostgreSQL's")
def test_the_index_is_on_the_expression_the_search_filters_by(world):
    """The planner uses an expression index only for the same expression (the bench's
    EXPLAIN at 1M rows shows the plan); and the trigram index, all accounts at once, is gone."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'history_promptlog'"
        )
        indexes = dict(cursor.fetchall())
    assert "gin (history_search_keys(account_id, search_text))" in indexes["prompt_search_keys_idx"]
    assert "prompt_search_trgm_idx" not in indexes
    sql = str(history_queryset(account=world.account_a, filters=window("ok")).query)
    assert (
        'history_search_keys("history_promptlog"."account_id", "history_promptlog"."search_text")'
        in sql
    )


@pytest.mark.embedded
def test_search_on_the_embedded_default_matches_too(world):
    row = log(world.account_a, "欢迎使用智谱AI开放平台")
    log(world.account_b, "智谱 of another account")
    for query in ["智", "智谱", "智谱ai", "開"]:
        rows, _cursor, count = history_search(account=world.account_a, filters=window(query))
        assert [found.pk for found in rows] == ([row.pk] if query != "開" else [])
        assert count == (1 if query != "開" else 0)


@pytest.mark.parametrize("page_size", [2, 3])
@pytest.mark.parametrize(
    ("probe_rows", "count_probe_rows", "count_cap"), [(4, 6, 3), (4, 6, 10), (50, 50, 5)]
)
def test_the_probe_and_the_key_index_agree_with_a_plain_match(
    world, monkeypatch, page_size, probe_rows, count_probe_rows, count_cap
):
    """Small limits so that every way through history_search is taken: a page found among
    the newest rows or not, a count decided by the probe or by the key index, a window
    shorter than the probe; and each keyset page after the first."""
    from history import selectors

    monkeypatch.setattr(selectors, "PAGE_SIZE", page_size)
    monkeypatch.setattr(selectors, "PROBE_ROWS", probe_rows)
    monkeypatch.setattr(selectors, "COUNT_PROBE_ROWS", count_probe_rows)
    monkeypatch.setattr(selectors, "COUNT_CAP", count_cap)
    now = timezone.now()
    texts = ["common 智谱 word"] * 6 + ["rare 密钥"] + ["common 智谱"] * 5 + ["filler"] * 8
    texts += ["old 密钥 and 智谱"] * 3
    for index, text in enumerate(texts):
        # Two rows share each time, so ties on created_at are ordered by id.
        log(world.account_a, text, at=now - timedelta(minutes=index // 2))
    for query in ["智谱", "密钥", "COMMON", "mmon 智", "filler", "on", "zz", "智"]:
        reference = (
            PromptLog.objects.filter(
                account=world.account_a,
                created_at__gte=window().since,
                search_text__icontains=query,
            )
            .order_by("-created_at", "-id")
            .values_list("pk", flat=True)
        )
        expected = list(reference)
        found, before = [], None
        while True:
            rows, before, count = history_search(
                account=world.account_a, filters=window(query), before=before
            )
            if not found:
                assert count == min(len(expected), count_cap + 1), query
            found += [row.pk for row in rows]
            if before is None:
                break
        assert found == expected, query
