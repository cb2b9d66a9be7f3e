"""A first run in the browser: with no model yet, the Models page says how to get one, the dashboard says why Run is
disabled, a model downloads by its repo id, and a hub that never answers fails the search fast, in plain words,
next to the search box."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlx_manager.testing.hub_server import LoopbackHub, serve_hub
from mlx_manager.testing.server import ServerProcess, run_server
from tests.api.hub_helpers import hub_repos, hub_server
from tests.web.conftest import PASSWORD

REPO = "mlx-community/tiny-llama"


@pytest.fixture(scope="module")
def hub(tiny_models: dict[str, Path]) -> Iterator[LoopbackHub]:
    with serve_hub(hub_repos(tiny_models)) as loopback:
        yield loopback


def _registered(srv: ServerProcess) -> ServerProcess:
    r = httpx.post(f"{srv.base_url}/api/auth/register", json={"username": "admin", "password": PASSWORD})
    assert r.status_code == 201, r.text
    return srv


@pytest.fixture(scope="module")
def fresh(ui_built: Path, hub: LoopbackHub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with hub_server(tmp_path_factory.mktemp("first-run"), hub) as srv:
        yield _registered(srv)


@pytest.fixture(scope="module")
def silent_hub() -> Iterator[str]:
    """A hub address that accepts connections and never answers (a captive or dead network)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture(scope="module")
def stranded(ui_built: Path, silent_hub: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"HF_ENDPOINT": silent_hub, "HF_HUB_OFFLINE": "0"}
    with run_server(tmp_path_factory.mktemp("stranded"), [], env) as srv:
        yield _registered(srv)


def _page(browser: Any, srv: ServerProcess) -> Any:
    context = browser.new_context(base_url=srv.base_url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto("/login")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in", exact=True).click()
    page.get_by_role("heading", name="Dashboard").wait_for()
    return page


def test_first_run_says_how_to_get_a_model_and_downloads_one_by_repo_id(browser: Any, fresh: ServerProcess) -> None:
    page = _page(browser, fresh)
    try:
        why = page.get_by_test_id("run-why")
        assert "No model to run yet" in why.inner_text()
        assert page.get_by_role("button", name="Run").is_disabled()
        why.get_by_role("link", name="get one").click()

        empty = page.get_by_test_id("no-models")
        assert "mlx-manager setup" in empty.inner_text() and "--model-dir" in empty.inner_text()

        page.get_by_label("Download by repo id").fill("not a repo id")
        page.get_by_role("button", name="Download", exact=True).click()
        assert "owner/name" in page.get_by_role("alert").inner_text()

        page.get_by_label("Download by repo id").fill(REPO)
        page.get_by_role("button", name="Download", exact=True).click()
        item = page.get_by_test_id("download").filter(has_text=REPO)
        item.get_by_test_id("download-status").filter(has_text="completed").wait_for()
        page.get_by_test_id("local-model").filter(has_text=REPO).wait_for()
        assert page.get_by_test_id("no-models").count() == 0
    finally:
        page.context.close()


def test_search_without_a_hub_fails_fast_in_plain_words_by_the_search_box(
    browser: Any, stranded: ServerProcess
) -> None:
    page = _page(browser, stranded)
    try:
        page.get_by_role("link", name="Models").click()
        page.get_by_label("Search models").fill("qwen")
        started = time.monotonic()
        page.get_by_role("button", name="Search").click()
        error = page.get_by_role("search").locator("xpath=..").get_by_test_id("search-error")
        error.wait_for(timeout=15_000)
        assert time.monotonic() - started < 12
        text = error.inner_text()
        assert "offline" in text and "model directory" in text, text
        assert "Error" not in text  # no exception names
    finally:
        page.context.close()


def test_cancelling_a_download_asks_first(browser: Any, fresh: ServerProcess, hub: LoopbackHub) -> None:
    hub.bytes_per_second = 20_000  # slow enough to still be running when Cancel is clicked
    page = _page(browser, fresh)
    asked: list[str] = []
    answer = {"accept": False}

    def dialog(d: Any) -> None:
        asked.append(d.message)
        d.accept() if answer["accept"] else d.dismiss()

    page.on("dialog", dialog)
    try:
        page.goto("/models")
        page.get_by_label("Download by repo id").fill("mlx-community/tiny-qwen3")
        page.get_by_role("button", name="Download", exact=True).click()
        item = page.get_by_test_id("download").filter(has_text="mlx-community/tiny-qwen3")
        item.get_by_test_id("download-status").filter(has_text="downloading").wait_for()
        item.get_by_role("button", name="Cancel").click()
        assert asked and "Cancel the download of mlx-community/tiny-qwen3" in asked[0]
        page.wait_for_timeout(500)
        assert item.get_by_test_id("download-status").inner_text() == "downloading"  # dismissed: it goes on
        answer["accept"] = True
        item.get_by_role("button", name="Cancel").click()
        item.get_by_test_id("download-status").filter(has_text="cancelled").wait_for()
    finally:
        hub.bytes_per_second = None
        page.context.close()
