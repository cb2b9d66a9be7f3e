"""The rest of the UI in a real browser against real servers: an API key made in the UI used by the OpenAI SDK and
found in the Logs page; screenshots of every page (test-artifacts/ui/); the dark theme; and the Routing page sending a
routed model name, chatted with in the chat page, to a second real server, with the breaker's served count moving."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from mlx_manager.testing.server import ServerProcess, run_server
from tests.web.conftest import PASSWORD

MODEL = "tiny-llama"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
PAGES = ["dashboard", "models", "chat", "profiles", "settings", "logs", "routing"]


@pytest.fixture(scope="module")
def front(ui_server: ServerProcess) -> ServerProcess:
    r = httpx.post(f"{ui_server.base_url}/api/auth/register", json={"username": "admin", "password": PASSWORD})
    assert r.status_code in (201, 409), r.text  # 409: another module registered it first
    return ui_server


@pytest.fixture(scope="module")
def peer(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with run_server(tmp_path_factory.mktemp("ui-peer"), ["--model-dir", str(tiny_models_dir)]) as srv:
        yield srv


def _context(browser: Any, srv: ServerProcess, width: int = 1280, height: int = 800) -> Any:
    return browser.new_context(base_url=srv.base_url, viewport={"width": width, "height": height}, color_scheme="light")


@pytest.fixture
def page(browser: Any, front: ServerProcess) -> Iterator[Any]:
    context = _context(browser, front)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("dialog", lambda d: d.accept())
    page.set_default_timeout(30_000)
    yield page
    context.close()
    assert not problems, f"browser errors (a CSP violation shows here): {problems}"


def _login(page: Any) -> None:
    page.goto("/login")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in", exact=True).click()
    page.get_by_role("heading", name="Dashboard").wait_for()


def test_api_key_from_the_ui_works_in_the_openai_sdk_and_shows_in_logs(page: Any, front: ServerProcess) -> None:
    _login(page)
    page.get_by_role("link", name="Settings").click()
    page.get_by_label("Key name").fill("sdk")
    page.get_by_role("button", name="Create key").click()
    key = page.get_by_test_id("new-key").inner_text().strip()
    assert key.startswith("mlxm-")

    client = openai.OpenAI(base_url=f"{front.base_url}/v1", api_key=key, max_retries=0)
    out = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=3)
    assert out.usage and out.usage.completion_tokens == 3
    # The Logs page names the key (and its user) instead of showing their ids.
    named = page.get_by_test_id("audit-key").filter(has_text=re.compile(r"^sdk$"))
    row = page.get_by_test_id("audit-row").filter(has=named)
    row = row.filter(has_text="/v1/chat/completions")
    deadline = time.monotonic() + 30
    while True:  # the audit writer batches its rows: reload until it is there
        page.get_by_role("link", name="Logs").click()
        page.get_by_role("heading", name="Logs").wait_for()
        page.wait_for_load_state("networkidle")
        if row.count():
            break
        assert time.monotonic() < deadline, "the SDK's request never showed in the Logs page"
        page.get_by_role("link", name="Dashboard").click()
        time.sleep(0.5)
    assert MODEL in row.first.inner_text() and "/3" in row.first.inner_text()  # tokens in/out


def test_dark_theme_changes_the_background(page: Any) -> None:
    _login(page)
    background = "getComputedStyle(document.body).backgroundColor"
    light = page.evaluate(background)
    page.get_by_role("button", name="Theme: system (change)").click()
    page.get_by_role("button", name="Theme: dark (change)").wait_for()
    dark = page.evaluate(background)
    assert dark != light and dark == "rgb(18, 21, 26)", (light, dark)
    page.reload()  # kept across reloads
    page.get_by_role("heading", name="Dashboard").wait_for()
    assert page.evaluate(background) == dark
    page.get_by_role("button", name="Theme: dark (change)").click()
    assert page.evaluate(background) == light  # light, chosen explicitly


def test_routing_page_tester_and_a_routed_chat(page: Any, front: ServerProcess, peer: ServerProcess) -> None:
    _login(page)
    page.get_by_role("link", name="Routing").click()
    page.get_by_role("heading", name="Routing").wait_for()

    # A credential's secret is write-only: accepted, never shown back; and it can be deleted.
    page.get_by_label("Credential name").fill("spare")
    page.get_by_label("Provider").fill("openai")
    page.get_by_label("Secret").fill("sk-never-shown-again")
    page.get_by_role("button", name="Add credential").click()
    page.get_by_test_id("credential-row").filter(has_text="spare").wait_for()
    assert "sk-never-shown-again" not in page.content()
    assert page.get_by_label("Secret").input_value() == ""
    page.get_by_role("button", name="Delete credential spare").click()
    page.get_by_test_id("credential-row").filter(has_text="spare").wait_for(state="detached")

    page.get_by_label("Backend name").fill("peer")
    page.get_by_label("Kind").select_option("openai")
    page.get_by_label("Base URL").fill(peer.base_url)
    page.get_by_role("button", name="Add backend").click()
    page.get_by_test_id("backend-row").filter(has_text="peer").wait_for()

    page.get_by_label("Pattern").fill("remote-llama")
    page.get_by_label("Upstream model").fill(MODEL)
    page.get_by_role("group", name="Backends, in order").get_by_label("peer").check()
    page.get_by_role("button", name="Add rule").click()
    page.get_by_test_id("rule-row").filter(has_text="remote-llama").wait_for()

    page.get_by_label("Model name to test").fill("remote-llama")
    page.get_by_role("button", name="Test", exact=True).click()
    result = page.get_by_test_id("route-result")
    result.get_by_role("listitem").filter(has_text="peer").wait_for()
    assert page.get_by_test_id("upstream-model").inner_text() == MODEL
    page.get_by_label("Model name to test").fill(MODEL)
    page.get_by_role("button", name="Test", exact=True).click()
    result.get_by_text("none: runs here").wait_for()

    peer_row = page.locator("[data-testid=breaker-row][data-backend=peer]")
    assert peer_row.get_by_test_id("breaker").inner_text() == "closed"
    served = int(peer_row.get_by_test_id("served").inner_text())

    # Chat with the routed name: the tester's link opens the chat page with it filled in.
    page.get_by_label("Model name to test").fill("remote-llama")
    page.get_by_role("button", name="Test", exact=True).click()
    page.get_by_role("link", name="Chat with remote-llama").click()
    assert page.get_by_label("Model name").input_value() == "remote-llama"
    page.get_by_text("Options").click()
    page.get_by_label("Max tokens").fill("6")
    page.get_by_label("Message", exact=True).fill("Hello")
    page.get_by_role("button", name="Send").click()
    stats = page.get_by_test_id("stats").first
    stats.wait_for()
    assert "6 tokens" in stats.inner_text(), stats.inner_text()

    page.get_by_role("link", name="Routing").click()
    page.wait_for_function(
        "(n) => Number(document.querySelector('[data-backend=peer] [data-testid=served]')?.textContent) > n",
        arg=served,
    )
    assert peer_row.get_by_test_id("breaker").inner_text() == "closed"


def test_screenshots_of_every_page(browser: Any, front: ServerProcess) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = _context(browser, front)
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        page.goto("/login")
        page.get_by_role("heading", name="Log in").wait_for()
        shots = {"login": ARTIFACTS / "login-1280.png"}
        page.screenshot(path=shots["login"], full_page=True)
        _login(page)
        for name in PAGES:
            page.goto("/" if name == "dashboard" else f"/{name}")
            page.locator("nav a[aria-current=page]").filter(has_text=name.capitalize()).wait_for()
            page.wait_for_load_state("networkidle")
            shots[name] = ARTIFACTS / f"{name}-1280.png"
            page.screenshot(path=shots[name], full_page=True)
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto("/chat")
        page.get_by_label("Model or profile").wait_for()
        shots["chat-390"] = ARTIFACTS / "chat-390.png"
        page.screenshot(path=shots["chat-390"], full_page=True)
    finally:
        context.close()
    for path in shots.values():
        assert path.is_file() and path.stat().st_size > 1000, path
