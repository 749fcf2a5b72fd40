"""Upstreams that answer what a model service never should (a real HTTP server on loopback
serving each answer): whatever they send, a request is settled or refused once, billed by
what reached the client, and nothing stays held."""

import http.server
import json
import threading

import pytest

from billing.models import LedgerEntry
from console.shared_state import shared_state
from gateway.models import UpstreamRoute
from tests.asynchronous import run_async
from tests.gateway.test_chat import BODY, error_of, post
from tests.gateway.test_outages import nothing_held
from usage.models import UsageRecord

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded]

TOOL_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": json.dumps({"city": "北京", "days": 3})},
}


class OddUpstream:
    """An upstream that answers every POST with `self.answer` (bytes), as given, and keeps
    what it was sent in `self.requests`: (path, headers, body bytes)."""

    def __init__(self):
        self.answer = b"{}"
        self.content_type = "application/json"
        self.status = 200
        self.requests: list[tuple[str, dict, bytes]] = []
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                upstream.requests.append((self.path, dict(self.headers), body))
                self.send_response(upstream.status)
                self.send_header("Content-Type", upstream.content_type)
                self.send_header("Content-Length", str(len(upstream.answer)))
                self.end_headers()
                self.wfile.write(upstream.answer)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answers_json(self, value) -> None:
        self.answer, self.content_type = json.dumps(value).encode(), "application/json"

    def answers_events(self, *events) -> None:
        lines = [f"data: {event}\n\n" for event in events]
        self.answer, self.content_type = "".join(lines).encode(), "text/event-stream"


@pytest.fixture
def odd(funded):
    upstream = OddUpstream()
    UpstreamRoute.objects.filter(model=BODY["model"]).update(
        base_url=f"http://127.0.0.1:{upstream.server.server_port}/v1", timeout_seconds=5
    )
    yield upstream
    upstream.server.shutdown()


async def record_and_charge(response):
    record = await UsageRecord.objects.aget(request_id=response["x-request-id"])
    charge = await LedgerEntry.objects.filter(request_id=record.request_id, kind="charge").afirst()
    return record, charge


@run_async
async def test_an_answer_of_tool_calls_without_usage_is_counted_not_free(funded, odd):
    account, raw, _key = funded
    message = {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]}
    odd.answers_json({"id": "x", "object": "chat.completion", "choices": [{"message": message}]})
    response = await post(raw)
    assert response.status_code == 200
    record, charge = await record_and_charge(response)
    assert record.estimated and record.output_tokens > 0
    assert charge is not None and charge.fee_nano == record.fee_nano > 0
    await nothing_held(shared_state(), account)


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": 12, "completion_tokens": "many"},
        {"prompt_tokens": -3, "completion_tokens": 4.5},
        "not an object",
    ],
)
@run_async
async def test_usage_that_is_not_counts_is_counted_instead(funded, odd, usage):
    account, raw, _key = funded
    message = {"role": "assistant", "content": "你好，我是一个回答。"}
    odd.answers_json({"choices": [{"message": message}], "usage": usage})
    response = await post(raw)
    assert response.status_code == 200
    record, charge = await record_and_charge(response)
    assert record.estimated and record.output_tokens > 0 and record.input_tokens > 0
    assert charge.fee_nano == record.fee_nano > 0
    await nothing_held(shared_state(), account)


@pytest.mark.parametrize("answer", [b"<html>Bad gateway</html>", b"[1, 2, 3]", b'"text"'])
@run_async
async def test_an_answer_that_is_not_a_json_object_is_502_and_free(funded, odd, answer):
    account, raw, _key = funded
    odd.answer = answer
    response = await post(raw)
    assert (response.status_code, error_of(response)) == (502, "1230")
    record, charge = await record_and_charge(response)
    assert (record.status, record.code, record.fee_nano, charge) == (502, "1230", 0, None)
    await nothing_held(shared_state(), account)


@run_async
async def test_a_stream_breaking_off_after_tool_call_deltas_bills_what_was_delivered(funded, odd):
    account, raw, _key = funded
    delta = {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "北'}}]}
    chunk = json.dumps({"choices": [{"index": 0, "delta": delta}]})
    odd.answers_events(chunk, chunk, "this is not JSON")
    response = await post(raw, {**BODY, "stream": True})
    text = b"".join([part async for part in response.streaming_content]).decode()
    assert '"code":"1230"' in text and "[DONE]" not in text
    record, charge = await record_and_charge(response)
    assert (record.status, record.code, record.estimated) == (502, "1230", True)
    assert record.output_tokens == 2
    assert charge.fee_nano == record.fee_nano > 0
    await nothing_held(shared_state(), account)
