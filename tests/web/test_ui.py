"""The UI in a real browser against a real server: register the first account, log in, chat with streaming,
stop an answer (the server cancels it), and the chat page at a phone's width."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from mlx_manager.testing.server import ServerProcess
from tests.web.conftest import PASSWORD, session_token

MODEL = "tiny-llama"


@pytest.fixture
def page(browser: Any, ui_server: ServerProcess) -> Iterator[Any]:
    context = browser.new_context(base_url=ui_server.base_url, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.set_default_timeout(30_000)
    yield page
    context.close()
    assert not problems, f"browser errors (a CSP violation shows here): {problems}"


def _login(page: Any, username: str) -> None:
    page.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in", exact=True).click()
    page.get_by_role("heading", name="Dashboard").wait_for()


def _cancelled(srv: ServerProcess, token: str) -> int:
    r = httpx.get(f"{srv.base_url}/admin/models", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return sum(m["requests_cancelled"] for m in r.json()["data"] if m["id"] == MODEL)


def test_register_login_chat_and_stop(page: Any, ui_server: ServerProcess) -> None:
    page.goto("/")
    page.get_by_role("heading", name="Create the admin account").wait_for()  # sent to /login: no account yet
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Register").click()
    page.get_by_role("heading", name="Dashboard").wait_for()
    page.get_by_test_id("health").wait_for()

    page.get_by_role("button", name="Log out").click()
    page.get_by_role("heading", name="Log in").wait_for()
    _login(page, "admin")

    page.get_by_role("link", name="Chat").click()
    page.get_by_label("Model or profile").select_option(MODEL)
    page.get_by_text("Options").click()
    page.get_by_label("Max tokens").fill("24")
    page.get_by_label("Message", exact=True).fill("Hello there")
    page.get_by_role("button", name="Send").click()
    stats = page.get_by_test_id("stats").first
    stats.wait_for()
    assert "tokens/s" in stats.inner_text()
    assert page.get_by_test_id("assistant-content").first.inner_text().strip()

    # A long answer, stopped while it streams: the button aborts the fetch and the server cancels the generation.
    token = session_token(ui_server.base_url, "admin")
    before = _cancelled(ui_server, token)
    page.get_by_label("Max tokens").fill("1900")
    page.get_by_label("Message", exact=True).fill("Tell me a very long story")
    page.get_by_role("button", name="Send").click()
    stop = page.get_by_role("button", name="Stop")
    stop.wait_for()
    page.wait_for_function(
        "() => { const c = document.querySelectorAll('[data-testid=assistant-content]'); "
        "return c.length === 2 && c[1].textContent.trim().length > 0 }"
    )
    stop.click()
    page.get_by_role("button", name="Send").wait_for()
    assert "stopped" in page.get_by_test_id("stats").nth(1).inner_text()
    deadline = time.monotonic() + 30
    while _cancelled(ui_server, token) <= before:
        assert time.monotonic() < deadline, "the server never cancelled the stopped generation"
        time.sleep(0.2)


def test_chat_is_usable_at_phone_width(browser: Any, ui_server: ServerProcess) -> None:
    context = browser.new_context(base_url=ui_server.base_url, viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        _login(page, "admin")
        page.goto("/chat")
        page.get_by_label("Model or profile").select_option(MODEL)
        page.get_by_text("Options").click()
        page.get_by_label("Max tokens").fill("8")
        page.get_by_label("Message", exact=True).fill("Hi")
        send = page.get_by_role("button", name="Send")
        box = send.bounding_box()
        assert box is not None and box["x"] + box["width"] <= 390
        send.click()
        page.get_by_test_id("stats").first.wait_for()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the screen
        page.get_by_role("button", name="Menu").click()
        page.get_by_role("link", name="Models").wait_for()
    finally:
        context.close()


def test_profiles_settings_and_logs_pages(page: Any, ui_server: ServerProcess) -> None:
    _login(page, "admin")  # registered by the first test
    page.get_by_role("link", name="Profiles").click()
    page.get_by_label("Name").fill("terse")
    page.get_by_label("Model", exact=True).fill(MODEL)
    page.get_by_role("button", name="Create").click()
    page.get_by_role("cell", name="terse", exact=True).wait_for()

    page.get_by_role("link", name="Settings").click()
    page.get_by_label("Key name").fill("laptop")
    page.get_by_role("button", name="Create key").click()
    assert page.get_by_test_id("new-key").inner_text().startswith("mlxm-")  # shown once
    page.get_by_role("heading", name="Server settings").wait_for()

    page.get_by_role("link", name="Logs").click()
    page.get_by_role("cell", name="/v1/chat/completions").first.wait_for()  # the chats of the first test
