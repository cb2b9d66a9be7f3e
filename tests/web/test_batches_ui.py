"""The Batches page in a real browser: a batch sent with the openai SDK shows with its progress moving, and the
Cancel button stops it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from mlx_manager.testing.server import ServerProcess
from tests.web.conftest import PASSWORD, session_token


@pytest.fixture
def page(browser: Any, ui_server: ServerProcess) -> Iterator[Any]:
    r = httpx.post(f"{ui_server.base_url}/api/auth/register", json={"username": "admin", "password": PASSWORD})
    assert r.status_code in (201, 409), r.text
    context = browser.new_context(base_url=ui_server.base_url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.set_default_timeout(30_000)
    yield page
    context.close()
    assert not problems, f"browser errors: {problems}"


def test_the_batches_page_shows_progress_and_cancels(page: Any, ui_server: ServerProcess) -> None:
    client = openai.OpenAI(base_url=f"{ui_server.base_url}/v1", api_key=session_token(ui_server.base_url, "admin"))
    lines = [
        {
            "custom_id": f"u{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 300},
        }
        for i in range(80)
    ]
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    upload = client.files.create(file=("ui.jsonl", data), purpose="batch")
    batch = client.batches.create(
        input_file_id=upload.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"description": "nightly"},
    )

    page.goto("/login")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in", exact=True).click()
    page.get_by_role("heading", name="Dashboard").wait_for()
    page.get_by_role("link", name="Batches").click()
    page.get_by_role("heading", name="Batches").wait_for()
    row = page.get_by_test_id("batch-row").filter(has_text=batch.id)
    row.get_by_text("nightly").wait_for()
    status = row.get_by_test_id("batch-status")
    progress = row.get_by_test_id("batch-progress")
    page.wait_for_function(
        "el => /^([1-9][0-9]*) \\/ 80$/.test(el.textContent)", arg=progress.element_handle(), timeout=60_000
    )
    row.get_by_role("button", name=f"Cancel {batch.id}").click()
    page.wait_for_function("el => el.textContent === 'cancelled'", arg=status.element_handle(), timeout=60_000)
    done = int(re.match(r"(\d+) / 80", progress.inner_text()).group(1))  # type: ignore[union-attr]
    assert 0 < done < 80
    assert client.batches.retrieve(batch.id).status == "cancelled"


def test_the_time_limits_are_settings_fields(page: Any, ui_server: ServerProcess) -> None:
    page.goto("/login")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in", exact=True).click()
    page.get_by_role("heading", name="Dashboard").wait_for()
    page.get_by_role("link", name="Settings").click()
    assert page.get_by_label("Chat time limit (seconds, 0 = none)").input_value() == "900"
    page.get_by_label("Chat time limit (seconds, 0 = none)").fill("42")
    page.get_by_label("Queue time limit (seconds, 0 = none)").fill("0")
    page.get_by_role("button", name="Save", exact=True).click()
    page.get_by_role("status").filter(has_text="Saved").wait_for()
    headers = {"Authorization": f"Bearer {session_token(ui_server.base_url, 'admin')}"}
    settings = httpx.get(f"{ui_server.base_url}/api/settings", headers=headers).json()
    assert (settings["chat_timeout_seconds"], settings["queue_timeout_seconds"]) == (42, 0)
    assert "Chat time limit" in page.get_by_test_id("overridden").inner_text()
