"""The models page: search the loopback hub, download a tiny model with a visible, moving progress bar, pause and
resume it, find it among the local models when it completes, and chat with it, streamed, from its Chat link."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlx_manager.testing.hub_server import LoopbackHub, serve_hub
from mlx_manager.testing.server import ServerProcess
from tests.api.hub_helpers import hub_repos, hub_server
from tests.web.conftest import PASSWORD

REPO = "mlx-community/tiny-llama"


@pytest.fixture(scope="module")
def hub(tiny_models: dict[str, Path]) -> Iterator[LoopbackHub]:
    with serve_hub(hub_repos(tiny_models)) as loopback:
        yield loopback


@pytest.fixture(scope="module")
def hub_srv(ui_built: Path, hub: LoopbackHub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with hub_server(tmp_path_factory.mktemp("ui-hub-home"), hub) as srv:
        r = httpx.post(f"{srv.base_url}/api/auth/register", json={"username": "admin", "password": PASSWORD})
        assert r.status_code == 201, r.text
        yield srv


def test_search_download_with_progress_pause_resume(browser: Any, hub: LoopbackHub, hub_srv: ServerProcess) -> None:
    context = browser.new_context(base_url=hub_srv.base_url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        page.goto("/login")
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in", exact=True).click()
        page.get_by_role("heading", name="Dashboard").wait_for()
        page.get_by_role("link", name="Models").click()

        hub.throttle(200_000)  # slow enough to watch the bar move and to pause it
        page.get_by_label("Search models").fill("tiny-llama")
        page.get_by_role("button", name="Search").click()
        page.get_by_role("button", name=f"Download {REPO}", exact=True).click()

        item = page.get_by_test_id("download").filter(has_text=REPO)
        bar = item.get_by_role("progressbar")
        page.wait_for_function(
            "() => { const p = document.querySelector('[data-testid=download] progress'); "
            "return p && p.value > 0 && p.value < 1 }"
        )
        item.get_by_role("button", name="Pause").click()
        item.get_by_test_id("download-status").filter(has_text="paused").wait_for()
        paused_at = float(bar.get_attribute("value") or 0)
        assert 0 < paused_at < 1

        hub.throttle(None)
        item.get_by_role("button", name="Resume").click()
        item.get_by_test_id("download-status").filter(has_text="completed").wait_for()
        assert float(bar.get_attribute("value") or 0) == 1
        row = page.get_by_test_id("local-model").filter(has_text=REPO)
        row.wait_for()  # discovery lists it at once

        # The model just downloaded answers in the chat page (which always streams: the stats count its chunks).
        row.get_by_role("link", name="Chat").click()
        page.get_by_role("heading", name="Dashboard").wait_for(state="detached")
        page.wait_for_function("(repo) => document.querySelector('select[name=model]')?.value === repo", arg=REPO)
        page.get_by_text("Options").click()
        page.get_by_label("Max tokens").fill("12")
        page.get_by_label("Message", exact=True).fill("Hello")
        page.get_by_role("button", name="Send").click()
        stats = page.get_by_test_id("stats").first
        stats.wait_for()
        assert "tokens/s" in stats.inner_text(), stats.inner_text()
        assert page.get_by_test_id("assistant-content").first.inner_text().strip()
    finally:
        context.close()
