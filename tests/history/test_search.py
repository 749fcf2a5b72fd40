from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from console.models import Account, Tier
from history.models import PromptLog
from history.services import history_purge_expired, prompt_log_write
from keys.services import api_key_create

pytestmark = pytest.mark.django_db


def log(account, text, *, answer="", at=None, key=None, project=None, model="glm-4.7", status=200):
    return prompt_log_write(
        account=account,
        project=project,
        api_key=key,
        request_id=f"r{PromptLog.objects.count()}-{text[:8]}",
        model=model,
        messages=[
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": text},
        ],
        parameters={"max_tokens": 10},
        response_text=answer,
        status=status,
        input_tokens=3,
        output_tokens=4,
        latency_ms=12,
        first_token_ms=None,
        created_at=at or timezone.now(),
    )


@pytest.fixture
def corpus(world):
    account = world.account_a
    rows = {
        "zh": log(account, "欢迎使用智谱AI开放平台"),
        "zh2": log(account, "智能客服", answer="我们的平台支持GLM"),
        "en": log(account, "How do I rotate an API KEY?"),
        "pct": log(account, "discount 100% off_today"),
        "old": log(account, "智谱 old request", at=timezone.now() - timedelta(days=20)),
    }
    other = log(world.account_b, "智谱AI开放平台 of account B")
    return rows, other


def search(client, **params):
    response = client.get(reverse("history:search"), params)
    return response, [row.pk for row in response.context["rows"]] if response.context else []


def test_chinese_and_english_substrings_find_exactly_the_matching_rows(client, world, corpus):
    rows, other = corpus
    client.force_login(world.owner_a)
    response, found = search(client, q="智谱")
    assert found == [rows["zh"].pk]  # 7 days by default: the 20-day-old row is outside
    # ... and the period select says so (not its first choice, Today).
    assert '<option value="7d" selected>' in response.content.decode()
    _response, found = search(client, q="智谱", range="30d")
    assert set(found) == {rows["zh"].pk, rows["old"].pk}
    assert other.pk not in found
    _response, found = search(client, q="api key")  # case-insensitive
    assert found == [rows["en"].pk]
    _response, found = search(client, q="GLM")  # the response text is searched too
    assert found == [rows["zh2"].pk]


@pytest.mark.parametrize("query", ["100%", "off_today", "%", "_"])
def test_percent_and_underscore_are_matched_literally(client, world, corpus, query):
    rows, _other = corpus
    client.force_login(world.owner_a)
    _response, found = search(client, q=query)
    assert found == [rows["pct"].pk]


@pytest.mark.parametrize("query", ["' OR 1=1 --", ".*", "[a-z]+", "\\", "%%%"])
def test_sql_and_regex_metacharacters_are_just_text(client, world, corpus, query):
    client.force_login(world.owner_a)
    response, found = search(client, q=query)
    assert response.status_code == 200 and found == []


def test_filters_compose(client, world, corpus):
    rows, _other = corpus
    key = api_key_create(
        account=world.account_a,
        project=world.account_a.projects.get(is_default=True),
        label="k",
        actor=None,
    ).key
    mine = log(world.account_a, "智谱 with a key", key=key, model="glm-5", status=429)
    client.force_login(world.owner_a)
    _response, found = search(client, q="智谱", key=key.pk)
    assert found == [mine.pk]
    _response, found = search(client, q="智谱", model="glm-5", status="error")
    assert found == [mine.pk]
    _response, found = search(client, q="智谱", status="ok")
    assert found == [rows["zh"].pk]


@pytest.mark.parametrize(
    "params",
    [
        {"range": "custom", "since": "2026-13-45", "until": "2026-01-01"},
        {"range": "custom", "since": "2026-05-02", "until": "2026-05-01"},
        {"range": "custom"},
        {"q": "x" * 10_000},
        {"key": "999999"},
        {"key": "9" * 40},
        {"project": "abc"},
        {"range": "forever"},
    ],
)
def test_bad_filters_get_a_clear_message_never_a_500(client, world, corpus, params):
    client.force_login(world.owner_a)
    response = client.get(reverse("history:search"), params)
    assert response.status_code == 422
    assert 'class="errorlist' in response.content.decode()


def test_keyset_pages_walk_every_row_once(client, world, monkeypatch):
    from history import selectors

    monkeypatch.setattr(selectors, "PAGE_SIZE", 2)
    made = [log(world.account_a, f"row {index}") for index in range(5)]
    client.force_login(world.owner_a)
    seen, query = [], {}
    for _ in range(5):
        response = client.get(reverse("history:search"), query)
        seen += [row.pk for row in response.context["rows"]]
        if not response.context["next_query"]:
            break
        query = dict(pair.split("=") for pair in response.context["next_query"].split("&"))
        from urllib.parse import unquote

        query = {k: unquote(v) for k, v in query.items()}
    assert sorted(seen) == sorted(row.pk for row in made) and len(seen) == len(set(seen))


def test_the_detail_renders_the_conversation_and_a_masked_curl(client, world):
    key = api_key_create(
        account=world.account_a,
        project=world.account_a.projects.get(is_default=True),
        label="k",
        actor=None,
    )
    row = log(world.account_a, "你好 <script>alert(1)</script>", answer="答复", key=key.key)
    client.force_login(world.developer_a.user)
    page = client.get(reverse("history:detail", args=[row.pk])).content.decode()
    assert "答复" in page and "&lt;script&gt;" in page and "<script>alert" not in page
    assert key.key.mask in page and key.raw.split(".")[1] not in page
    assert "curl " in page


def test_finance_never_sees_content(client, world, corpus):
    client.force_login(world.finance_a.user)
    assert client.get(reverse("history:search")).status_code == 403
    assert client.get(reverse("history:detail", args=[corpus[0]["zh"].pk])).status_code == 403


def test_retention_deletes_by_tier_and_a_second_run_changes_nothing(world):
    free = world.account_a  # the free tier keeps 7 days
    pro = Tier.objects.get(slug="pro")  # 90 days
    Account.objects.filter(pk=world.account_b.pk).update(tier=pro)
    now = timezone.now()
    old_free = log(free, "old free", at=now - timedelta(days=8))
    kept_free = log(free, "recent free", at=now - timedelta(days=6))
    old_pro = log(world.account_b, "old pro", at=now - timedelta(days=8))
    assert history_purge_expired(batch_size=1) == 1
    assert not PromptLog.objects.filter(pk=old_free.pk).exists()
    assert PromptLog.objects.filter(pk__in=[kept_free.pk, old_pro.pk]).count() == 2
    assert history_purge_expired() == 0


def test_bodies_over_the_cap_are_truncated_with_a_marker(world):
    from history.models import MAX_BODY_CHARACTERS, TRUNCATION_MARKER

    row = log(world.account_a, "q", answer="x" * (MAX_BODY_CHARACTERS + 10))
    assert row.response_text.endswith(TRUNCATION_MARKER)
    assert len(row.response_text) == MAX_BODY_CHARACTERS + len(TRUNCATION_MARKER)
