import csv
import io
import json

import pytest
from django.urls import reverse
from django.utils import timezone

from console.models import Account, AuditEvent
from history.models import PromptLog
from history.services import prompt_log_write

pytestmark = pytest.mark.django_db


def write(account, text, **extra):
    return prompt_log_write(
        account=account,
        project=None,
        api_key=None,
        request_id=f"x{PromptLog.objects.count()}",
        model="glm-4.7",
        messages=[{"role": "user", "content": text}],
        parameters={"top_p": 0.5},
        response_text=f"answer to {text}",
        status=200,
        input_tokens=1,
        output_tokens=2,
        latency_ms=3,
        first_token_ms=None,
        created_at=timezone.now(),
        **extra,
    )


def body(response) -> str:
    return b"".join(response.streaming_content).decode()


def test_export_streams_the_current_filter_as_csv_and_jsonl(client, world):
    write(world.account_a, "智谱 one")
    write(world.account_a, "english two")
    write(world.account_b, "智谱 of B")
    client.force_login(world.developer_a.user)
    rows = list(csv.reader(io.StringIO(body(client.get(reverse("history:export"), {"q": "智谱"})))))
    assert rows[0][0] == "time" and len(rows) == 2 and rows[1][9] == "智谱 one"
    lines = body(client.get(reverse("history:export"), {"format": "jsonl"})).splitlines()
    records = [json.loads(line) for line in lines]
    assert {record["messages"][0]["content"] for record in records} == {"智谱 one", "english two"}
    assert records[0]["parameters"] == {"top_p": 0.5}


@pytest.mark.parametrize("params", [{"format": "xml"}, {"range": "custom"}])
def test_a_bad_export_request_is_refused_clearly(client, world, params):
    client.force_login(world.owner_a)
    response = client.get(reverse("history:export"), params)
    assert response.status_code == 422 and "errorlist" in response.content.decode()


def test_owners_delete_by_filter_after_confirming_and_it_is_audited(client, world):
    keep = write(world.account_a, "keep this")
    gone = write(world.account_a, "delete 智谱 this")
    other = write(world.account_b, "delete 智谱 this too")
    client.force_login(world.owner_a)
    confirm = client.get(reverse("history:delete"), {"q": "智谱"})
    assert "Delete 1 request" in confirm.content.decode()
    assert PromptLog.objects.filter(pk=gone.pk).exists()
    client.post(reverse("history:delete"), {"q": "智谱"})
    assert not PromptLog.objects.filter(pk=gone.pk).exists()
    assert PromptLog.objects.filter(pk__in=[keep.pk, other.pk]).count() == 2
    event = AuditEvent.objects.get(action="history.delete")
    assert event.metadata["deleted"] == 1 and event.metadata["text"] == "智谱"


def test_admins_and_developers_cannot_delete(client, world):
    row = write(world.account_a, "stays")
    for member in (world.admin_a, world.developer_a):
        client.force_login(member.user)
        assert client.post(reverse("history:delete"), {}).status_code == 403
    assert PromptLog.objects.filter(pk=row.pk).exists()


def test_with_content_storage_off_only_metadata_is_kept(client, world):
    client.force_login(world.owner_a)
    client.post(
        reverse("account_settings"),
        {"name": "Account A", "time_zone": "Asia/Shanghai", "currency": "CNY"},
    )  # the checkbox unticked
    account = Account.objects.get(pk=world.account_a.pk)
    assert account.store_prompt_content is False
    row = write(account, "a secret prompt")
    assert (row.messages, row.response_text, row.search_text, row.preview) == ([], "", "", "")
    assert (row.model, row.input_tokens, row.output_tokens) == ("glm-4.7", 1, 2)
    assert AuditEvent.objects.filter(action="account.update").exists()


def test_a_large_export_runs_in_the_background_with_progress_and_a_download(
    client, world, monkeypatch, django_capture_on_commit_callbacks
):
    from history import views
    from history.models import HistoryExport
    from history.services import history_export_build

    monkeypatch.setattr(views, "EXPORT_LIMIT", 1)
    queued = []
    monkeypatch.setattr(
        "history.tasks.build_history_export.apply_async",
        lambda args, **options: queued.extend(args),
    )
    for index in range(3):
        write(world.account_a, f"智谱 row {index}")
    client.force_login(world.developer_a.user)
    offer = client.get(reverse("history:export"), {"q": "智谱", "format": "jsonl"})
    assert "Prepare the export" in offer.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        started = client.post(reverse("history:export_start"), {"q": "智谱", "format": "jsonl"})
    export = HistoryExport.objects.get()
    assert started["Location"] == reverse("history:export_status", args=[export.pk])
    assert queued == [export.pk]  # the worker's job, enqueued after commit
    waiting = client.get(reverse("history:export_status", args=[export.pk])).content.decode()
    assert "every 2s" in waiting  # the page polls while it runs
    history_export_build(export_id=export.pk)  # what the worker runs
    history_export_build(export_id=export.pk)  # a redelivery changes nothing
    done = client.get(reverse("history:export_status", args=[export.pk])).content.decode()
    assert "Download" in done and "3 / 3" in done
    download = client.get(reverse("history:export_download", args=[export.pk]))
    lines = b"".join(download.streaming_content).decode().splitlines()
    assert len(lines) == 3 and all(
        "智谱" in json.loads(line)["messages"][0]["content"] for line in lines
    )
    client.force_login(world.owner_b)
    assert client.get(reverse("history:export_download", args=[export.pk])).status_code == 404
