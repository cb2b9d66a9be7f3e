"""Accounts in the UI against a real server with an API key (issue #12): the register page asks for the setup token
for the first account, the password is changed from Settings, and Log out ends the session on the server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlx_manager.testing.server import ServerProcess, run_server
from tests.web.conftest import PASSWORD

SERVER_KEY = "sk-ui-setup"
NEW_PASSWORD = "another long passphrase"


@pytest.fixture(scope="module")
def keyed(ui_built: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with run_server(tmp_path_factory.mktemp("ui-keyed"), ["--api-key", SERVER_KEY]) as srv:
        yield srv


@pytest.fixture
def page(browser: Any, keyed: ServerProcess) -> Iterator[Any]:
    context = browser.new_context(base_url=keyed.base_url, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" and "403" not in m.text else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("dialog", lambda d: d.accept())
    page.set_default_timeout(30_000)
    yield page
    context.close()
    assert not problems, f"browser errors: {problems}"


def _session(page: Any) -> str:
    token: str = page.evaluate("() => JSON.parse(localStorage.getItem('mlx-manager-session')).token")
    return token


def test_setup_token_password_change_and_logout(page: Any, keyed: ServerProcess) -> None:
    page.goto("/")
    page.get_by_role("heading", name="Create the admin account").wait_for()
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Setup token").fill("a wrong guess")
    page.get_by_role("button", name="Register").click()
    page.get_by_role("alert").filter(has_text="setup token").wait_for()  # refused, nothing made
    page.get_by_label("Setup token").fill(SERVER_KEY)
    page.get_by_role("button", name="Register").click()
    page.get_by_role("heading", name="Dashboard").wait_for()

    page.get_by_role("link", name="Settings").click()
    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_label("New password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    page.get_by_role("status").filter(has_text="Password changed").wait_for()
    token = _session(page)  # the new session the change handed out
    me = httpx.get(f"{keyed.base_url}/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json()["username"] == "admin"

    page.get_by_role("button", name="Log out").click()
    page.get_by_role("heading", name="Log in").wait_for()
    after = httpx.get(f"{keyed.base_url}/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert after.status_code == 401  # ended on the server, not only forgotten by the browser
    login = {"username": "admin", "password": NEW_PASSWORD}
    assert httpx.post(f"{keyed.base_url}/api/auth/login", json=login).status_code == 200
