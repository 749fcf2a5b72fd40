"""The recorded Claude Code request (tests/gateway/fixtures/claude_code_request.json) that the
Anthropic-compatible endpoint's tests replay: it stays valid JSON and keeps every field the
real client sends, beta ones included, so a test posting it covers what Claude Code sends."""

import json
from pathlib import Path

FIXTURE = Path(__file__).parent / "fixtures" / "claude_code_request.json"


def _fixture() -> dict:
    return json.loads(FIXTURE.read_text())


def test_it_cites_where_it_comes_from():
    fixture = _fixture()
    assert fixture["source"] and all(isinstance(source, str) for source in fixture["source"])
    assert fixture["query"] == "beta=true"


def test_it_has_the_headers_claude_code_sends():
    headers = _fixture()["headers"]
    assert headers["user-agent"].startswith("claude-cli/2.")
    assert headers["x-app"] == "cli"
    assert headers["anthropic-version"] == "2023-06-01"
    assert headers["anthropic-dangerous-direct-browser-access"] == "true"
    betas = headers["anthropic-beta"].split(",")
    assert betas[0] == "claude-code-20250219"
    assert "interleaved-thinking-2025-05-14" in betas
    assert "context-management-2025-06-27" in betas
    assert any(name.startswith("x-stainless-") for name in headers)
    # Never a real key: the endpoint's test puts its own in.
    assert headers["authorization"] == "Bearer <your API key>"


def test_it_has_every_body_field_claude_code_sends():
    body = _fixture()["body"]
    for field in (
        "model",
        "max_tokens",
        "messages",
        "system",
        "tools",
        "tool_choice",
        "metadata",
        "stream",
        "temperature",
        "thinking",
        "context_management",
    ):
        assert field in body, field
    assert body["model"].startswith("claude-") and body["stream"] is True
    assert body["thinking"]["type"] == "enabled"
    assert 0 < body["thinking"]["budget_tokens"] < body["max_tokens"]
    assert body["context_management"]["edits"][0]["type"] == "clear_thinking_20251015"
    assert json.loads(body["metadata"]["user_id"])["session_id"]


def test_it_carries_cache_control_and_every_block_kind_of_a_tool_turn():
    body = _fixture()["body"]
    assert all(block["type"] == "text" for block in body["system"])
    assert any("cache_control" in block for block in body["system"])
    assert all({"name", "description", "input_schema"} <= tool.keys() for tool in body["tools"])
    assert 2 <= len(body["tools"]) <= 3
    blocks = [block for message in body["messages"] for block in message["content"]]
    assert {"text", "thinking", "tool_use", "tool_result"} <= {block["type"] for block in blocks}
    assert "cache_control" in body["messages"][-1]["content"][-1]
