"""The audit log on a real server: one entry per model-API request with who, what and how many tokens, never the
text; filtered and paged, exported as CSV and JSON, and pruned to the retention set in /api/settings."""

from __future__ import annotations

import csv
import io
import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from mlx_manager.testing.server import ServerProcess, run_server
from tests.api.accounts import Api, approved_user, assert_problem, eventually, new_key, register, signed_in

CANARY = "canary-7f3a9c: please remember the purple elephant"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("audit")


@pytest.fixture(scope="module")
def server(tiny_models_dir: Path, home: Path) -> Iterator[ServerProcess]:
    with run_server(home, ["--model-dir", str(tiny_models_dir)]) as srv:
        yield srv


@pytest.fixture(scope="module")
def admin(server: ServerProcess) -> Api:
    register(server, "admin")
    return signed_in(server, "admin")


def _entries(admin: Api, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = admin.ok("GET", "/api/audit", params=params)["items"]
    return items


def _by_request(admin: Api, request_id: str) -> dict[str, Any]:
    found = eventually(lambda: [e for e in _entries(admin, limit=1000) if e["request_id"] == request_id])
    return found[0]


def test_sdk_requests_are_audited_with_user_key_and_tokens_but_no_text(
    server: ServerProcess, admin: Api, home: Path
) -> None:
    member = approved_user(admin, "member")
    member_id = member.ok("GET", "/api/auth/me")["id"]
    key = new_key(member)
    key_id = member.ok("GET", "/api/keys")[0]["id"]
    messages = [{"role": "user", "content": CANARY}]
    client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="tiny-llama", messages=messages, max_tokens=3)  # type: ignore[arg-type]
    chat = raw.parse()
    entry = _by_request(admin, raw.headers["x-request-id"])
    assert entry["user_id"] == member_id and entry["api_key_id"] == key_id
    assert (entry["username"], entry["api_key_name"]) == ("member", member.ok("GET", "/api/keys")[0]["name"])
    assert (entry["method"], entry["endpoint"], entry["model"], entry["status"], entry["backend"]) == (
        "POST", "/v1/chat/completions", "tiny-llama", 200, "local")  # fmt: skip
    assert entry["prompt_tokens"] == chat.usage.prompt_tokens and entry["completion_tokens"] == 3  # type: ignore[union-attr]
    assert entry["latency_ms"] > 0 and abs(entry["time"] - time.time()) < 60

    with client.chat.completions.with_streaming_response.create(
        model="tiny-llama",
        messages=messages,  # type: ignore[arg-type]
        max_tokens=4,
        stream=True,
    ) as streamed:
        request_id = streamed.headers["x-request-id"]
        list(streamed.iter_lines())
    assert _by_request(admin, request_id)["completion_tokens"] == 4  # counted when the stream ended

    claude = anthropic.Anthropic(base_url=server.base_url, api_key=key, max_retries=0)
    raw_message = claude.messages.with_raw_response.create(model="tiny-llama", max_tokens=2, messages=messages)  # type: ignore[arg-type]
    message = _by_request(admin, raw_message.headers["x-request-id"])
    assert (message["endpoint"], message["completion_tokens"], message["api_key_id"]) == ("/v1/messages", 2, key_id)

    text = b"".join(p.read_bytes() for p in home.glob("mlx-manager.db*"))
    assert CANARY.encode() not in text and b"purple elephant" not in text
    assert b"/v1/chat/completions" in text  # the entries are there, only the text is not


def test_anonymous_and_refused_requests_are_audited_too(server: ServerProcess, admin: Api) -> None:
    ok = httpx.get(f"{server.base_url}/v1/models")
    assert _by_request(admin, ok.headers["x-request-id"])["user_id"] is None
    refused = httpx.get(f"{server.base_url}/v1/models", headers={"Authorization": "Bearer mlxm-not-a-key"})
    assert refused.status_code == 401
    assert _by_request(admin, refused.headers["x-request-id"])["status"] == 401
    shown = [e["request_id"] for e in _entries(admin, limit=1000, hide_listings=True)]
    assert ok.headers["x-request-id"] not in shown and refused.headers["x-request-id"] not in shown
    ui = admin.get("/api/auth/me")
    time.sleep(0.3)
    assert ui.headers["x-request-id"] not in [e["request_id"] for e in _entries(admin, limit=1000)]


def test_filters_and_pages(server: ServerProcess, admin: Api) -> None:
    client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0)
    for _ in range(3):
        client.completions.create(model="tiny-qwen3", prompt="a", max_tokens=1)
    eventually(lambda: len(_entries(admin, model="tiny-qwen3")) >= 3)
    page = admin.ok("GET", "/api/audit", params={"model": "tiny-qwen3", "limit": 2})
    assert page["total"] >= 3 and len(page["items"]) == 2 and page["items"][0]["time"] >= page["items"][1]["time"]
    rest = admin.ok("GET", "/api/audit", params={"model": "tiny-qwen3", "limit": 2, "offset": 2})["items"]
    assert {e["id"] for e in rest}.isdisjoint(e["id"] for e in page["items"])
    assert {e["endpoint"] for e in _entries(admin, endpoint="/v1/completions")} == {"/v1/completions"}
    assert {e["status"] for e in _entries(admin, status=401)} == {401}
    assert _entries(admin, since="2100-01-01T00:00:00Z") == []
    assert _entries(admin, until="2000-01-01") == []
    assert len(_entries(admin, since=str(time.time() - 3600))) >= 3
    admin_id = admin.ok("GET", "/api/auth/me")["id"]
    assert _entries(admin, user_id=admin_id) == []
    assert_problem(admin.get("/api/audit", params={"limit": 0}), 400)
    assert_problem(admin.get("/api/audit", params={"since": "yesterday"}), 400)


def test_exports_as_csv_and_json(admin: Api) -> None:
    total = admin.ok("GET", "/api/audit")["total"]
    resp = admin.get("/api/audit/export", params={"format": "csv"})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    assert "attachment" in resp.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert len(rows) >= total and {"request_id", "user_id", "prompt_tokens", "latency_ms"} <= set(rows[0])
    times = [datetime.fromisoformat(r["time"]) for r in rows]  # ISO 8601 in UTC, oldest first
    assert times == sorted(times) and all(r["time"].endswith("Z") for r in rows)
    assert {"username", "api_key_name"} <= set(rows[0])
    data = admin.ok("GET", "/api/audit/export", params={"format": "json", "model": "tiny-llama"})
    assert data and {e["model"] for e in data} == {"tiny-llama"}
    assert_problem(admin.get("/api/audit/export", params={"format": "xml"}), 400)


def test_a_deleted_user_loses_keys_chats_and_sessions_but_their_audit_rows_stay(
    server: ServerProcess, admin: Api, home: Path
) -> None:
    leaver = approved_user(admin, "leaver")
    leaver_id = leaver.ok("GET", "/api/auth/me")["id"]
    key = new_key(leaver, "leaver-key")
    chat = leaver.ok("POST", "/api/chats", 201, json={"title": "mine", "model": "tiny-llama"})
    leaver.ok("POST", f"/api/chats/{chat['id']}/messages", 201, json={"role": "user", "content": "hi"})
    client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="tiny-llama",
        messages=[{"role": "user", "content": "x"}],
        max_tokens=1,
    )
    entry = _by_request(admin, raw.headers["x-request-id"])
    assert (entry["username"], entry["api_key_name"]) == ("leaver", "leaver-key")

    assert admin.delete(f"/api/users/{leaver_id}").status_code == 204
    assert leaver.get("/api/auth/me").status_code == 401  # the session ended
    assert httpx.get(f"{server.base_url}/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 401
    with sqlite3.connect(home / "mlx-manager.db") as db:
        assert db.execute("SELECT count(*) FROM chats WHERE title = 'mine'").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM api_keys WHERE name = 'leaver-key'").fetchone() == (0,)
    kept = _by_request(admin, raw.headers["x-request-id"])  # the audit row stays, with the ids only
    assert (kept["user_id"], kept["username"], kept["api_key_name"]) == (leaver_id, None, None)


def test_entries_older_than_the_retention_are_pruned(admin: Api, home: Path) -> None:
    old = time.time() - 40 * 86400
    with sqlite3.connect(home / "mlx-manager.db") as db:
        db.execute(
            "INSERT INTO audit_log (time, request_id, method, endpoint, model, status, prompt_tokens,"
            " completion_tokens, latency_ms, backend)"
            " VALUES (?, 'req-old', 'POST', '/v1/x', 'm', 200, 0, 0, 1, 'local')",
            (old,),
        )
    assert [e["request_id"] for e in _entries(admin, model="m")] == ["req-old"]
    settings = admin.ok("PATCH", "/api/settings", json={"audit_retention_days": 60})
    assert settings["audit_retention_days"] == 60 and "audit_retention_days" in settings["overridden"]
    assert _entries(admin, model="m") != []  # within 60 days
    admin.ok("PATCH", "/api/settings", json={"audit_retention_days": 30})  # pruned on the change
    assert _entries(admin, model="m") == []
    assert admin.ok("GET", "/api/audit")["total"] > 0  # recent entries stay
