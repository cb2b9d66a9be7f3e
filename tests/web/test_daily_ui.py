"""Pages a daily user keeps open, in a real browser against a real server with the tiny models: the Models page
shows which models are loaded and offers only the action that fits, saying what it is doing meanwhile."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from mlx_manager.testing.server import ServerProcess
from tests.web.conftest import PASSWORD

MODEL = "tiny-llama"


@pytest.fixture(scope="module")
def front(ui_server: ServerProcess) -> ServerProcess:
    r = httpx.post(f"{ui_server.base_url}/api/auth/register", json={"username": "admin", "password": PASSWORD})
    assert r.status_code in (201, 409), r.text
    return ui_server


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
