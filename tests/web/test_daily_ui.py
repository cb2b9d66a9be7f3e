"""Pages a daily user keeps open, in a real browser against a real server with the tiny models: the Models page
shows which models are loaded and offers only the action that fits, saying what it is doing meanwhile; the dashboard's
tokens/s moves while a reply is being generated."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from mlx_manager.testing.server import ServerProcess
from tests.web.conftest import PASSWORD, session_token

MODEL = "tiny-llama"


@pytest.fixture(scope="module")
def front(ui_server: ServerProcess) -> ServerProcess:
    r = httpx.post(f"{ui_server.base_url}/api/auth/register", json={"username": "admin", "password": PASSWORD})
    assert r.status_code in (201, 409), r.text
    return ui_server


def admin_headers(srv: ServerProcess) -> dict[str, str]:
    return {"Authorization": f"Bearer {session_token(srv.base_url, 'admin')}"}


@pytest.fixture
def page(browser: Any, front: ServerProcess) -> Iterator[Any]:
    context = browser.new_context(base_url=front.base_url, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.on("dialog", lambda d: d.accept())
    yield page
    context.close()


def login(page: Any, username: str = "admin") -> None:
    page.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in", exact=True).click()
    page.get_by_role("heading", name="Dashboard").wait_for()


def test_models_page_shows_loaded_state_and_only_the_fitting_action(page: Any) -> None:
    login(page)
    page.get_by_role("link", name="Models", exact=True).click()
    row = page.get_by_test_id("local-model").filter(has=page.get_by_text(MODEL, exact=True))
    assert row.get_by_test_id("model-state").inner_text() == "not loaded"
    assert row.get_by_role("button", name=f"Unload {MODEL}").count() == 0

    row.get_by_role("button", name=f"Load {MODEL}").click()
    row.get_by_role("button", name=f"Unload {MODEL}").wait_for()  # "Loading…" meanwhile, then the other action
    assert row.get_by_test_id("model-state").inner_text() == "loaded"
    assert row.get_by_role("button", name=f"Load {MODEL}", exact=True).count() == 0

    row.get_by_role("button", name=f"Unload {MODEL}").click()
    row.get_by_role("button", name=f"Load {MODEL}", exact=True).wait_for()
    assert row.get_by_test_id("model-state").inner_text() == "not loaded"


def test_dashboard_tokens_per_second_moves_during_a_long_reply(page: Any, front: ServerProcess) -> None:
    login(page)
    stop = threading.Event()
    live: list[int] = []

    def generate() -> None:  # long streamed replies, one after another, until the dashboard has shown its rate
        body = {"model": MODEL, "messages": [{"role": "user", "content": "go"}], "max_tokens": 1500}
        body |= {"ignore_eos": True, "stream": True}
        url = f"{front.base_url}/v1/chat/completions"
        while not stop.is_set():
            with httpx.stream("POST", url, json=body, headers=admin_headers(front), timeout=120) as r:
                for n, _ in enumerate(r.iter_lines()):
                    if n == 40 and not live:  # mid-reply: the pool's counter already holds its tokens
                        models = httpx.get(f"{front.base_url}/admin/models", headers=admin_headers(front)).json()
                        live.append(next(m["tokens_generated"] for m in models["data"] if m["id"] == MODEL))

    worker = threading.Thread(target=generate, daemon=True)
    worker.start()
    try:
        page.wait_for_function(
            "() => [...document.querySelectorAll('[data-testid=tokens-per-second]')].some(c => +c.textContent > 0)"
        )
        assert worker.is_alive()
        assert live and live[0] > 0, "tokens of a running reply are counted only when it ends"
    finally:
        stop.set()
        worker.join(60)


def test_settings_say_keys_are_optional_offer_the_toggle_and_copy_a_new_key(page: Any, front: ServerProcess) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    login(page)
    page.get_by_role("link", name="Settings").click()
    page.get_by_test_id("key-requirement").filter(has_text="Keys are optional now").wait_for()

    toggle = page.get_by_label("Require an API key for /v1 and /anthropic")
    toggle.check()
    page.get_by_test_id("key-requirement").filter(has_text="requires a key").wait_for()
    assert httpx.get(f"{front.base_url}/v1/models").status_code == 401
    toggle.uncheck()
    page.get_by_test_id("key-requirement").filter(has_text="optional").wait_for()
    assert httpx.get(f"{front.base_url}/v1/models").status_code == 200

    page.get_by_label("Key name").fill("copied")
    page.get_by_role("button", name="Create key").click()
    key = page.get_by_test_id("new-key").inner_text().strip()
    page.get_by_role("button", name="Copy key").click()
    page.get_by_role("button", name="Copied", exact=True).wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == key
