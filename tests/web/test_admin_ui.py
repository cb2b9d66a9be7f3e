"""Forms and admin pages in Chromium against a real server (issue #16, items 8 and 9): server refusals in plain words
with the form's labels, a profile's model checked on save, every profile field and live setting editable; an admin
who demotes themselves is asked first and the navigation follows, a refused checkbox goes back, users are deleted
with their keys and chats, non-admins on an admin page are told it needs an administrator, and the Logs page names
users and keys, hides model listings unless asked, and exports ISO 8601 times."""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from mlx_manager.testing.server import ServerProcess
from tests.api.accounts import Api, login, register
from tests.web.conftest import PASSWORD

MODEL = "tiny-llama"
# Each live setting of GET /api/settings and the label of its control on the Settings page.
SETTING_LABELS = {
    "memory_budget_bytes": "Memory budget (GB)",
    "max_models": "Most models loaded at once",
    "idle_ttl_seconds": "Unload idle models after (seconds, 0 = never)",
    "room_wait_seconds": "Wait for memory before refusing a load (seconds)",
    "preload": "Preload and keep loaded (comma-separated models)",
    "require_api_key": "Require an API key for /v1 and /anthropic",
    "audit_retention_days": "Keep logs for (days, 0 = forever)",
    "allow_registration": "Anyone may register (accounts wait for approval)",
    "chat_timeout_seconds": "Chat time limit (seconds, 0 = none)",
    "completions_timeout_seconds": "Completions time limit (seconds, 0 = none)",
    "embeddings_timeout_seconds": "Embeddings time limit (seconds, 0 = none)",
    "queue_timeout_seconds": "Queue time limit (seconds, 0 = none)",
}
# Each field of a profile (ProfileCreate) and the label of its control in the profile editor.
PROFILE_LABELS = {
    "name": "Name",
    "model": "Model",
    "temperature": "Temperature",
    "top_p": "Top p",
    "max_tokens": "Max tokens",
    "context_length": "Context length",
    "thinking": "Thinking",
    "kv_bits": "KV cache",
    "kv_group_size": "KV group size",
    "system_prompt": "System prompt",
}
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(scope="module")
def admin(ui_server: ServerProcess) -> Api:
    register(ui_server, "admin", PASSWORD)
    return Api(ui_server, login(ui_server, "admin", PASSWORD))


def _user(admin: Api, name: str, *, is_admin: bool = False) -> Api:
    user = register(admin.server, name, PASSWORD)
    admin.ok("PATCH", f"/api/users/{user['id']}", json={"is_approved": True, "is_admin": is_admin})
    return Api(admin.server, login(admin.server, name, PASSWORD))


class Dialogs:
    """Answers confirm() as told, keeping what was asked."""

    def __init__(self, page: Any) -> None:
        self.asked: list[str] = []
        self.accept = True
        page.on("dialog", self._answer)

    def _answer(self, dialog: Any) -> None:
        self.asked.append(dialog.message)
        dialog.accept() if self.accept else dialog.dismiss()


@pytest.fixture
def page(browser: Any, ui_server: ServerProcess) -> Iterator[Any]:
    context = browser.new_context(base_url=ui_server.base_url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.set_default_timeout(30_000)
    yield page
    context.close()
    assert not problems, f"browser errors: {problems}"


def _login(page: Any, username: str = "admin") -> None:
    page.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in", exact=True).click()
    page.get_by_role("heading", name="Dashboard").wait_for()


def _plain(text: str) -> None:
    """No regex, validator phrasing or API field name reached the user."""
    for raw in ("pattern", "String should", "^", "_seconds", "_days", "max_tokens", "context_length", "loc"):
        assert raw not in text, (raw, text)


def test_server_refusals_read_as_plain_words_with_the_forms_labels(page: Any, admin: Api) -> None:
    Dialogs(page)
    _login(page)
    page.get_by_role("link", name="Settings").click()
    page.get_by_label("New user").fill("has space")
    page.get_by_label("Their password").fill(PASSWORD)
    page.get_by_role("button", name="Add user").click()
    alert = page.get_by_role("alert").filter(has_text="Username may use only letters, digits")
    alert.wait_for()
    _plain(alert.inner_text())

    # Every live setting is here; what is saved is named by its label, not its API name.
    page.get_by_label("Keep logs for (days, 0 = forever)").fill("45")
    page.get_by_label("Wait for memory before refusing a load (seconds)").fill("12")
    page.get_by_role("button", name="Save", exact=True).click()
    page.get_by_role("status").filter(has_text="Saved").wait_for()
    page.get_by_test_id("overridden").filter(has_text="Keep logs for").wait_for()
    overridden = page.get_by_test_id("overridden").inner_text()
    assert "Keep logs for" in overridden and "Wait for memory before refusing" in overridden
    _plain(overridden)
    settings = admin.ok("GET", "/api/settings")
    assert (settings["audit_retention_days"], settings["room_wait_seconds"]) == (45, 12)
    # Every live setting the API has is on the page (a new one fails here until the page has it).
    assert set(settings) - {"overridden"} == set(SETTING_LABELS)
    for name, label in SETTING_LABELS.items():
        assert page.get_by_label(label).count() == 1, name


def test_a_profile_is_checked_on_save_and_shows_every_field(page: Any, admin: Api) -> None:
    _login(page)
    page.get_by_role("link", name="Profiles").click()
    page.get_by_label("Name").fill("careful")
    page.get_by_label("Model", exact=True).fill("tiny-lama")  # a typo
    page.get_by_role("button", name="Create").click()
    error = page.get_by_test_id("profile-error")
    error.wait_for()
    assert "no model named 'tiny-lama'" in error.inner_text()
    assert [p["name"] for p in admin.ok("GET", "/api/profiles")] == []

    page.get_by_label("Model", exact=True).fill(MODEL)
    page.get_by_label("Top p").fill("0.9")
    page.get_by_label("Context length").fill("512")
    page.get_by_label("Max tokens").fill("600")
    page.get_by_label("Thinking").select_option("off")
    page.get_by_role("button", name="Create").click()
    error.filter(has_text="Max tokens (600) must be less than Context length (512)").wait_for()
    _plain(error.inner_text())
    page.get_by_label("Max tokens").fill("64")
    assert page.get_by_label("KV group size").is_disabled()  # only quantized KV has groups
    page.get_by_label("KV cache").select_option("8")
    page.get_by_label("KV group size").select_option("32")
    page.get_by_role("button", name="Create").click()
    row = page.get_by_test_id("profile-row").filter(has_text="careful")
    row.wait_for()
    saved = next(p for p in admin.ok("GET", "/api/profiles") if p["name"] == "careful")
    assert (saved["top_p"], saved["context_length"], saved["max_tokens"], saved["thinking"]) == (0.9, 512, 64, False)
    assert (saved["kv_bits"], saved["kv_group_size"]) == (8, 32)

    row.get_by_role("button", name="Edit careful").click()  # the editor shows what is saved
    assert page.get_by_label("Top p").input_value() == "0.9"
    assert page.get_by_label("Context length").input_value() == "512"
    assert page.get_by_label("Thinking").input_value() == "off"
    # Every field a profile has in the API is in the editor (a new one fails here until the form has it).
    fields = httpx.get(f"{admin.server.base_url}/openapi.json").json()["components"]["schemas"]["ProfileCreate"]
    assert set(fields["properties"]) == set(PROFILE_LABELS)
    for name, label in PROFILE_LABELS.items():
        assert page.get_by_label(label, exact=name == "model").count() == 1, name  # a select names its option too


def test_self_demotion_asks_and_a_refused_checkbox_goes_back(page: Any, admin: Api) -> None:
    dialogs = Dialogs(page)
    _login(page)
    page.get_by_role("link", name="Settings").click()
    mine = page.get_by_label("admin admin", exact=True)
    # The only administrator: asked, then refused (409); the box shows what the server kept.
    mine.click()
    assert "Remove your own administrator rights?" in dialogs.asked[-1]
    page.get_by_role("alert").filter(has_text="last administrator").wait_for()
    assert mine.is_checked()

    deputy = _user(admin, "deputy", is_admin=True)
    page.reload()
    mine = page.get_by_label("admin admin", exact=True)
    dialogs.accept = False
    mine.click()  # asked, and said no: nothing changes
    assert mine.is_checked() and admin.ok("GET", "/api/auth/me")["is_admin"] is True
    dialogs.accept = True
    mine.click()
    page.get_by_role("heading", name="Users").wait_for(state="detached")  # no blank table left behind
    assert page.get_by_role("link", name="Models").count() == 0  # the navigation follows at once
    assert admin.ok("GET", "/api/auth/me")["is_admin"] is False
    me = admin.ok("GET", "/api/auth/me")["id"]
    deputy.ok("PATCH", f"/api/users/{me}", json={"is_admin": True})  # back, for the other tests


def test_non_admins_on_an_admin_page_are_told_it_needs_one(page: Any, admin: Api) -> None:
    _user(admin, "member")
    _login(page, "member")
    for path, title in (("/models", "Models"), ("/logs", "Logs"), ("/routing", "Routing")):
        page.goto(path)
        page.get_by_role("heading", name=title).wait_for()
        assert "needs an administrator" in page.get_by_test_id("needs-admin").inner_text()
        assert page.get_by_text("No models on this machine").count() == 0


def _audit_rows(page: Any, has_text: str) -> Any:
    rows = page.get_by_test_id("audit-row").filter(has_text=has_text)
    deadline = time.monotonic() + 30
    while not rows.count():  # the audit writer batches its rows
        assert time.monotonic() < deadline, f"no audit row with {has_text!r}"
        page.get_by_role("button", name="Filter").click()
        page.wait_for_timeout(500)
    return rows


def test_users_are_deleted_with_keys_and_chats_and_logs_name_people(page: Any, admin: Api, tmp_path: Path) -> None:
    leaver = _user(admin, "leaver")
    key = leaver.ok("POST", "/api/keys", 201, json={"name": "leaver-laptop"})["key"]
    leaver.ok("POST", "/api/chats", 201, json={"title": "notes", "model": MODEL})
    client = openai.OpenAI(base_url=f"{admin.server.base_url}/v1", api_key=key, max_retries=0)
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    client.models.list()  # a model listing: hidden in the Logs page unless asked for

    dialogs = Dialogs(page)
    _login(page)
    page.get_by_role("link", name="Logs").click()
    row = _audit_rows(page, "leaver-laptop").first
    assert "/v1/chat/completions" in row.inner_text()
    assert row.get_by_test_id("audit-user").inner_text() == "leaver"
    assert row.get_by_test_id("audit-key").inner_text() == "leaver-laptop"
    assert page.get_by_test_id("audit-row").filter(has_text="/v1/models").count() == 0
    page.get_by_label("Show model listings (GET /v1/models)").check()
    _audit_rows(page, "/v1/models")

    with page.expect_download() as download:
        page.get_by_role("button", name="Export CSV").click()
    path = tmp_path / "audit.csv"
    download.value.save_as(path)
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert rows and all(ISO_UTC.match(r["time"]) for r in rows), rows[0]["time"]
    assert any(r["username"] == "leaver" and r["api_key_name"] == "leaver-laptop" for r in rows)

    page.get_by_role("link", name="Settings").click()
    page.get_by_role("button", name="Delete user leaver").click()
    assert "API keys and chats are deleted" in dialogs.asked[-1] and "stay" in dialogs.asked[-1]
    page.get_by_test_id("user-row").filter(has_text="leaver").wait_for(state="detached")
    assert (
        httpx.get(f"{admin.server.base_url}/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 401
    )
    assert "leaver" not in [u["username"] for u in admin.ok("GET", "/api/users")]

    page.get_by_role("link", name="Logs").click()
    gone = _audit_rows(page, "deleted user").first
    assert gone.get_by_test_id("audit-user").inner_text().startswith("deleted user #")
    assert gone.get_by_test_id("audit-key").inner_text().startswith("deleted key #")


def test_a_refused_chat_names_the_option_by_its_label(page: Any, admin: Api) -> None:
    _login(page)
    page.goto("/chat")
    page.get_by_label("Model or profile").select_option(MODEL)
    page.get_by_role("button", name="Options").click()
    page.get_by_label("Temperature").fill("5")
    page.get_by_label("Message", exact=True).fill("Hello")
    page.get_by_role("button", name="Send").click()
    alert = page.get_by_role("alert").filter(has_text="Temperature must be 2 or less.")
    alert.wait_for()
    _plain(alert.inner_text())
