"""The web UI's chats (/api/chats) through a real server and its SQLite database: each owner's alone (another user's
is a 404), messages keep what made them, search, rename, delete, export; open mode's anonymous chats go
to the first account. Also the two model-API extensions the chat page uses: `vision` in /v1/models and
`continue_final_message` (Continue after an interrupted reply)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlx_manager.testing.server import ServerProcess, run_server
from tests.api.accounts import Api, approved_user, register, signed_in

PNG = "data:image/png;base64,iVBORw0KGgo="
REPLY = {
    "role": "assistant",
    "content": "Hel",
    "status": "streaming",
    "model": "tiny-llama",
    "params": {"temperature": 0.5, "max_tokens": 8},
}


@pytest.fixture(scope="module")
def server(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with run_server(tmp_path_factory.mktemp("chats"), ["--model-dir", str(tiny_models_dir)]) as srv:
        yield srv


@pytest.fixture(scope="module")
def admin(server: ServerProcess) -> Api:
    # The first test runs in open mode and then registers the admin; any test run alone registers it here.
    if not httpx.get(f"{server.base_url}/api/auth/status").json()["has_users"]:
        register(server, "admin")
    return signed_in(server, "admin")


def _chat(api: Api, title: str = "A chat", **fields: Any) -> dict[str, Any]:
    made: dict[str, Any] = api.ok("POST", "/api/chats", 201, json={"title": title, **fields})
    return made


def _say(api: Api, chat_id: int, body: dict[str, Any]) -> dict[str, Any]:
    made: dict[str, Any] = api.ok("POST", f"/api/chats/{chat_id}/messages", 201, json=body)
    return made


def test_open_mode_chats_belong_to_the_anonymous_owner_until_the_first_account_takes_them(
    server: ServerProcess,
) -> None:
    anonymous = Api(server)
    made = _chat(anonymous, "before accounts")
    _say(anonymous, made["id"], {"role": "user", "content": "hello"})
    assert [c["title"] for c in anonymous.ok("GET", "/api/chats")["items"]] == ["before accounts"]

    register(server, "admin")
    refused = anonymous.get("/api/chats")
    assert refused.status_code == 401 and refused.headers["content-type"] == "application/problem+json"
    admin = signed_in(server, "admin")
    detail = admin.ok("GET", f"/api/chats/{made['id']}")
    assert detail["title"] == "before accounts" and detail["messages"][0]["content"] == "hello"


def test_messages_keep_model_parameters_timings_tokens_and_a_reply_saved_as_it_streams(admin: Api) -> None:
    chat = _chat(admin, "Streaming", model="tiny-llama", options={"temperature": 0.5, "system_prompt": "Be brief"})
    question = _say(admin, chat["id"], {"role": "user", "content": "Say hello", "images": [PNG]})
    reply = _say(admin, chat["id"], REPLY)
    assert reply["status"] == "streaming" and reply["params"] == {
        **REPLY["params"],
        "system_prompt": None,
        "top_p": None,
    }
    path = f"/api/chats/{chat['id']}/messages/{reply['id']}"
    admin.ok("PATCH", path, json={"content": "Hello th"})  # a save while it streams
    done = admin.ok(
        "PATCH",
        path,
        json={
            "content": "Hello there",
            "status": "complete",
            "finish_reason": "length",
            "prompt_tokens": 12,
            "completion_tokens": 8,
            "ttft_ms": 420.5,
            "decode_ms": 1400.0,
        },
    )
    assert done["content"] == "Hello there" and done["finish_reason"] == "length"

    detail = admin.ok("GET", f"/api/chats/{chat['id']}")
    assert detail["options"] == {"temperature": 0.5, "system_prompt": "Be brief", "top_p": None, "max_tokens": None}
    assert [m["id"] for m in detail["messages"]] == [question["id"], reply["id"]]
    assert detail["messages"][0]["images"] == [PNG]
    saved = detail["messages"][1]
    assert (saved["model"], saved["completion_tokens"], saved["ttft_ms"], saved["decode_ms"]) == (
        "tiny-llama",
        8,
        420.5,
        1400.0,
    )
    assert detail["message_count"] == 2 and detail["updated_at"] >= chat["updated_at"]


def test_list_search_rename_and_delete(admin: Api) -> None:
    first = _chat(admin, "Gardening tips")
    second = _chat(admin, "Travel")
    _say(admin, second["id"], {"role": "user", "content": "What to pack for a trip to 100% humid OSLO?"})
    listed = admin.ok("GET", "/api/chats", params={"limit": 2})
    assert [c["id"] for c in listed["items"]] == [second["id"], first["id"]]  # most recently changed first
    assert listed["total"] >= 2 and listed["items"][0]["message_count"] == 1

    by_title = admin.ok("GET", "/api/chats", params={"q": "gardening"})["items"]
    assert [c["id"] for c in by_title] == [first["id"]] and by_title[0]["snippet"] is None
    by_text = admin.ok("GET", "/api/chats", params={"q": "oslo"})["items"]
    assert [c["id"] for c in by_text] == [second["id"]]
    assert "OSLO" in by_text[0]["snippet"]
    assert [c["id"] for c in admin.ok("GET", "/api/chats", params={"q": "100%"})["items"]] == [second["id"]]
    assert admin.ok("GET", "/api/chats", params={"q": "1_0"})["items"] == []  # wildcards are literal

    renamed = admin.ok("PATCH", f"/api/chats/{first['id']}", json={"title": "Roses"})
    assert renamed["title"] == "Roses"
    assert admin.ok("GET", "/api/chats", params={"q": "roses"})["items"][0]["id"] == first["id"]

    assert admin.delete(f"/api/chats/{second['id']}").status_code == 204
    assert admin.get(f"/api/chats/{second['id']}").status_code == 404
    assert admin.ok("GET", "/api/chats", params={"q": "oslo"})["items"] == []


def test_a_message_is_deleted_alone_or_with_the_ones_after_it(admin: Api) -> None:
    chat = _chat(admin)
    ids = [_say(admin, chat["id"], {"role": role, "content": role})["id"] for role in ("user", "assistant") * 3]
    messages = f"/api/chats/{chat['id']}/messages"
    assert admin.delete(f"{messages}/{ids[2]}").status_code == 204  # a message whose send failed
    assert admin.delete(f"{messages}/{ids[3]}").status_code == 204  # and its error reply
    assert [m["id"] for m in admin.ok("GET", f"/api/chats/{chat['id']}")["messages"]] == [*ids[:2], *ids[4:]]
    assert admin.delete(f"{messages}/{ids[1]}", params={"and_later": True}).status_code == 204  # to regenerate
    left = admin.ok("GET", f"/api/chats/{chat['id']}")["messages"]
    assert [m["id"] for m in left] == [ids[0]]
    assert admin.delete(f"{messages}/{ids[1]}").status_code == 404
    edited = admin.ok("PATCH", f"{messages}/{ids[0]}", json={"content": "again"})
    assert edited["content"] == "again"


def test_another_users_chat_is_not_found(admin: Api) -> None:
    alice = approved_user(admin, "alice")
    bob = approved_user(admin, "bob")
    chat = _chat(alice, "Alice's secret")
    message = _say(alice, chat["id"], {"role": "user", "content": "private"})
    base, msg = f"/api/chats/{chat['id']}", f"/api/chats/{chat['id']}/messages/{message['id']}"
    attempts = [
        bob.get(base),
        bob.get(f"{base}/export"),
        bob.patch(base, json={"title": "mine now"}),
        bob.delete(base),
        bob.post(f"{base}/messages", json={"role": "user", "content": "hi"}),
        bob.patch(msg, json={"content": "changed"}),
        bob.delete(msg),
    ]
    for resp in attempts:
        assert resp.status_code == 404, (resp.request.method, resp.request.url, resp.text)
        assert resp.json()["code"] == "chat_not_found"
    missing = bob.get("/api/chats/999999")
    assert missing.status_code == 404 and missing.json()["code"] == "chat_not_found"  # the same as no chat at all
    assert all(c["id"] != chat["id"] for c in bob.ok("GET", "/api/chats")["items"])
    assert bob.ok("GET", "/api/chats", params={"q": "private"})["items"] == []
    detail = alice.ok("GET", base)
    assert detail["title"] == "Alice's secret" and detail["messages"][0]["content"] == "private"
    # Nor does a message id of another chat reach into this one.
    other = _chat(bob)
    assert bob.patch(f"/api/chats/{other['id']}/messages/{message['id']}", json={"content": "x"}).status_code == 404


def test_export_as_markdown_and_json(admin: Api) -> None:
    chat = _chat(admin, "Export me: now!", model="tiny-llama", options={"system_prompt": "Be brief"})
    _say(admin, chat["id"], {"role": "user", "content": "Show code", "images": [PNG]})
    _say(
        admin,
        chat["id"],
        {**REPLY, "content": "```py\nprint(1)\n```", "status": "complete", "finish_reason": "length"}
        | {"completion_tokens": 11, "ttft_ms": 250.0, "decode_ms": 2000.0},
    )
    md = admin.get(f"/api/chats/{chat['id']}/export")
    assert md.status_code == 200 and md.headers["content-type"].startswith("text/markdown")
    assert md.headers["content-disposition"] == 'attachment; filename="Export-me-now.md"'
    text = md.text
    assert text.startswith("# Export me: now!\n") and "## System\n\nBe brief" in text
    assert "## You\n\nShow code" in text and f"![Image 1]({PNG})" in text
    assert "## Assistant (tiny-llama)\n\n```py\nprint(1)\n```" in text
    assert "_11 tokens · first token after 0.25 s · 5.0 tokens/s · cut at max tokens_" in text

    js = admin.get(f"/api/chats/{chat['id']}/export", params={"format": "json"})
    assert js.headers["content-disposition"].endswith('.json"')
    body = json.loads(js.text)
    assert body["title"] == "Export me: now!" and [m["role"] for m in body["messages"]] == ["user", "assistant"]


@pytest.mark.parametrize(
    ("method", "suffix", "body", "field"),
    [
        ("POST", "/messages", {"role": "system", "content": "x"}, "role"),
        ("POST", "/messages", {"role": "user", "images": ["https://example.com/a.png"]}, "images"),
        ("POST", "/messages", {"role": "assistant", "status": "done"}, "status"),
        ("POST", "/messages", {"role": "assistant", "completion_tokens": 2**63}, "completion_tokens"),
        ("PATCH", "", {"title": None}, "title"),
        ("PATCH", "", {"title": ""}, "title"),
        ("PATCH", "", {"options": {"temperature": 3}}, "options"),
        ("PATCH", "", {"owner": "someone"}, "owner"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    admin: Api, method: str, suffix: str, body: dict[str, Any], field: str
) -> None:
    chat = _chat(admin)
    resp = admin.http.request(method, f"/api/chats/{chat['id']}{suffix}", json=body)
    assert resp.status_code == 400, resp.text
    assert any(field in e["loc"] for e in resp.json()["errors"]), resp.text


def test_deleting_a_user_deletes_their_chats(admin: Api) -> None:
    erin = approved_user(admin, "erin")
    chat = _chat(erin, "Erin's")
    _say(erin, chat["id"], {"role": "user", "content": "bye"})
    user_id = erin.ok("GET", "/api/auth/me")["id"]
    assert admin.delete(f"/api/users/{user_id}").status_code == 204
    assert approved_user(admin, "erin").ok("GET", "/api/chats")["items"] == []  # a new account of the same name


def test_models_say_whether_they_take_images(server: ServerProcess, admin: Api) -> None:
    cards = admin.ok("GET", "/v1/models")["data"]
    assert {c["id"]: c["vision"] for c in cards}["tiny-llama"] is False


def test_continue_final_message_continues_the_assistants_reply(server: ServerProcess) -> None:
    url = f"{server.base_url}/v1/chat/completions"
    history = [{"role": "user", "content": "Tell a story"}, {"role": "assistant", "content": "Once upon a"}]
    ask = {"model": "tiny-llama", "messages": history, "max_tokens": 3, "temperature": 0}
    reply = httpx.post(url, json=ask, timeout=60).json()
    continued = httpx.post(url, json={**ask, "continue_final_message": True}, timeout=60).json()
    # Continuing leaves out the end of the assistant's turn and the header of a new one.
    assert continued["usage"]["prompt_tokens"] < reply["usage"]["prompt_tokens"]
    assert continued["choices"][0]["message"]["content"]
    refused = httpx.post(url, json={**ask, "messages": history[:1], "continue_final_message": True}, timeout=60)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "continue_final_message"
