"""The chat page a daily user keeps open (issue #16), in Chromium against a real server with the tiny text models and
the tiny vision model: chats kept on the server (a reload keeps the chat, and a reply cut off by it is marked
interrupted and can be continued), the chat list (search, rename, delete), regenerate, edit and send again, copy,
export; Enter and IME input; the wait for the first token, decode speed and the cut-at-max-tokens marker; images
(thumbnails, remove, only for vision models, a failed one does not break the chat); the options panel, focus after
Stop, the heading and tab title; screenshots (light, dark, 390 px) in test-artifacts/ui/."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from mlx_manager.testing.server import ServerProcess, run_server
from mlx_manager.testing.tiny_vlm import NAME as VLM
from tests.web.conftest import PASSWORD, session_token

MODEL = "tiny-llama"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"


@pytest.fixture(scope="module")
def srv(
    ui_built: Path, tiny_models_dir: Path, tiny_vlm: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    args = ["--model-dir", str(tiny_models_dir), "--model-dir", str(tiny_vlm.parent)]
    with run_server(tmp_path_factory.mktemp("chat-ui"), args) as server:
        r = httpx.post(f"{server.base_url}/api/auth/register", json={"username": "admin", "password": PASSWORD})
        assert r.status_code == 201, r.text
        yield server


@pytest.fixture(scope="module")
def token(srv: ServerProcess) -> str:
    return session_token(srv.base_url, "admin")


@pytest.fixture
def page(browser: Any, srv: ServerProcess) -> Iterator[Any]:
    context = browser.new_context(base_url=srv.base_url, viewport={"width": 1280, "height": 800}, color_scheme="light")
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("dialog", lambda d: d.accept())
    page.set_default_timeout(30_000)
    _login(page)
    yield page
    context.close()
    # A failed send is a 400 the browser logs as a failed resource load: that one is expected.
    unexpected = [p for p in problems if "status of 400" not in p]
    assert not unexpected, f"browser errors (a CSP violation shows here): {unexpected}"


def _login(page: Any) -> None:
    page.goto("/login")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in", exact=True).click()
    page.get_by_role("heading", name="Dashboard").wait_for()


def _api(srv: ServerProcess, token: str, method: str, path: str, **kw: Any) -> Any:
    r = httpx.request(method, f"{srv.base_url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=60, **kw)
    assert r.status_code < 300, r.text
    return r.json() if r.content else None


def _new_chat(page: Any, model: str = MODEL, max_tokens: int | None = 6) -> None:
    page.goto("/chat")
    page.get_by_label("Model or profile").select_option(model)
    if max_tokens is not None:
        page.get_by_role("button", name="Options").click()
        page.get_by_label("Max tokens").fill(str(max_tokens))
        page.get_by_role("button", name="Options").click()


def _send(page: Any, text: str) -> None:
    box = page.get_by_label("Message", exact=True)
    box.fill(text)
    box.press("Enter")


def _replies_done(page: Any, count: int) -> None:
    """Wait until `count` replies have ended (each shows its numbers or its error)."""
    page.wait_for_function(
        "(n) => [...document.querySelectorAll('article[aria-label=Assistant]')]"
        ".filter(a => a.querySelector('[data-testid=stats], .error')).length >= n"
        " && !document.querySelector('[data-testid=waiting]')",
        arg=count,
    )
    page.get_by_role("button", name="Send").wait_for()


def _until(check: Any, timeout: float = 30) -> Any:
    """Poll until check() gives something truthy; that."""
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
    return found


def _chat_id(page: Any) -> int:
    page.wait_for_url("**/chat?chat=*")
    return int(page.url.rsplit("=", 1)[1])


def _png(seed: int, size: int = 56) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), ((seed * 70) % 256, 120, 200)).save(buf, "PNG")
    return buf.getvalue()


def _file(name: str, data: bytes) -> dict[str, Any]:
    return {"name": name, "mimeType": "image/png", "buffer": data}


def test_enter_sends_without_a_leftover_newline_and_shift_enter_adds_one(
    page: Any, srv: ServerProcess, token: str
) -> None:
    _new_chat(page)
    box = page.get_by_label("Message", exact=True)
    box.fill("Hello")
    box.press("Enter")
    assert box.input_value() == ""  # Enter sent it and left nothing behind
    _replies_done(page, 1)
    box.press_sequentially("Line one")
    box.press("Shift+Enter")
    box.press_sequentially("line two")
    assert box.input_value() == "Line one\nline two"
    box.press("Enter")
    assert box.input_value() == ""
    _replies_done(page, 2)
    stored = _api(srv, token, "GET", f"/api/chats/{_chat_id(page)}")["messages"]
    assert [m["content"] for m in stored if m["role"] == "user"] == ["Hello", "Line one\nline two"]


def test_enter_that_ends_an_ime_composition_does_not_send(page: Any, srv: ServerProcess, token: str) -> None:
    _new_chat(page)
    box = page.get_by_label("Message", exact=True)
    box.click()
    cdp = page.context.new_cdp_session(page)
    # Chromium's own IME path: the Enter that commits the composition comes with isComposing set.
    cdp.send("Input.imeSetComposition", {"text": "にほん", "selectionStart": 3, "selectionEnd": 3})
    page.keyboard.press("Enter")
    page.wait_for_timeout(300)
    assert page.get_by_test_id("message").count() == 0  # nothing sent
    assert box.input_value().startswith("にほん")
    cdp.send("Input.insertText", {"text": "にほん"})  # the composition is committed
    box.fill("にほんご")
    box.press("Enter")  # composition over: this one sends
    _replies_done(page, 1)
    assert page.get_by_test_id("user-content").inner_text() == "にほんご"


def test_reload_keeps_the_chat_and_an_interrupted_reply_can_be_continued(
    page: Any, srv: ServerProcess, token: str
) -> None:
    _new_chat(page, max_tokens=1900)
    _send(page, "Tell me a very long story")
    chat_id = _chat_id(page)
    page.wait_for_function(
        "() => (document.querySelector('[data-testid=assistant-content]')?.textContent ?? '').length > 0"
    )
    page.wait_for_timeout(1500)  # saved as it streams, at least once a second
    page.reload()  # mid-stream: the reply is cut off
    page.get_by_test_id("interrupted").wait_for()
    assert page.url.endswith(f"/chat?chat={chat_id}")
    assert page.get_by_test_id("user-content").inner_text() == "Tell me a very long story"
    partial = page.get_by_test_id("assistant-content").inner_text()
    assert partial.strip()
    stored = _api(srv, token, "GET", f"/api/chats/{chat_id}")["messages"][1]
    assert stored["status"] in ("interrupted", "streaming") and stored["content"]

    page.get_by_role("button", name="Options").click()
    page.get_by_label("Max tokens").fill("8")  # kept with the chat, so the reload kept 1900: make Continue short
    page.get_by_role("button", name="Options").click()
    page.get_by_role("button", name="Continue").click()
    _replies_done(page, 1)
    page.get_by_test_id("interrupted").wait_for(state="detached")
    continued = _api(srv, token, "GET", f"/api/chats/{chat_id}")["messages"][1]
    assert continued["status"] == "complete" and continued["content"].startswith(stored["content"])
    assert len(continued["content"]) > len(stored["content"])

    # A visit to another page and back: the same chat, from the page's own state.
    page.get_by_role("link", name="Profiles", exact=True).click()
    page.get_by_role("heading", name="Profiles").wait_for()
    page.get_by_role("link", name="Chat", exact=True).click()
    page.wait_for_url(f"**/chat?chat={chat_id}")
    assert page.get_by_test_id("user-content").inner_text() == "Tell me a very long story"
    page.goto("/chat")  # a fresh start of the page (no id): the last chat again
    page.wait_for_url(f"**/chat?chat={chat_id}")
    page.get_by_test_id("user-content").wait_for()


def test_chat_list_search_rename_and_delete(page: Any, srv: ServerProcess, token: str) -> None:
    garden = _api(srv, token, "POST", "/api/chats", json={"title": "Gardening roses", "model": MODEL})
    trip = _api(srv, token, "POST", "/api/chats", json={"title": "Trip to Oslo", "model": MODEL})
    _api(srv, token, "POST", f"/api/chats/{trip['id']}/messages", json={"role": "user", "content": "Pack an umbrella?"})
    page.goto("/chat")
    items = page.get_by_test_id("chat-item")
    items.filter(has_text="Gardening roses").wait_for()
    assert items.first.inner_text().startswith("Trip to Oslo")  # most recently changed first

    page.get_by_label("Search chats").fill("umbrella")
    items.filter(has_text="Gardening roses").wait_for(state="detached")
    assert "Pack an umbrella?" in items.filter(has_text="Trip to Oslo").inner_text()  # where it matched
    page.get_by_label("Search chats").fill("")
    items.filter(has_text="Gardening roses").wait_for()

    page.get_by_role("button", name="Rename chat Gardening roses").click()
    title = page.get_by_label("Chat title")
    title.fill("Roses")
    title.press("Enter")
    items.filter(has_text="Gardening roses").wait_for(state="detached")
    assert _api(srv, token, "GET", f"/api/chats/{garden['id']}")["title"] == "Roses"

    page.get_by_role("link", name="Roses", exact=True).click()
    page.get_by_role("heading", name="Roses", level=1).wait_for()
    assert page.title() == "Roses · Chat · MLX Manager"
    page.get_by_role("button", name="Delete chat Roses", exact=True).click()  # the dialog is accepted
    items.filter(has_text="Roses").wait_for(state="detached")
    page.get_by_role("heading", name="New chat", level=1).wait_for()  # it was open: a new chat instead
    r = httpx.get(f"{srv.base_url}/api/chats/{garden['id']}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 404


def test_regenerate_edit_and_send_again_copy_and_export(page: Any, srv: ServerProcess, token: str) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    _new_chat(page)
    _send(page, "First question")
    _replies_done(page, 1)
    chat_id = _chat_id(page)
    before = _api(srv, token, "GET", f"/api/chats/{chat_id}")["messages"]

    def replaced(old: int) -> Any:
        messages = _api(srv, token, "GET", f"/api/chats/{chat_id}")["messages"]
        done = len(messages) == 2 and messages[1]["id"] != old and messages[1]["status"] == "complete"
        return messages if done else None

    page.get_by_role("button", name="Regenerate").click()
    after = _until(lambda: replaced(before[1]["id"]))
    assert after[0]["id"] == before[0]["id"]  # the question stays, the reply is new

    page.get_by_role("button", name="Edit", exact=True).click()
    editor = page.get_by_label("Edit message")
    assert editor.input_value() == "First question"
    editor.fill("Edited question")
    page.get_by_role("button", name="Save & regenerate").click()
    edited = _until(lambda: replaced(after[1]["id"]))
    assert edited[0]["content"] == "Edited question" and edited[0]["id"] == before[0]["id"]
    page.get_by_test_id("user-content").filter(has_text="Edited question").wait_for()
    _replies_done(page, 1)

    page.get_by_role("article", name="Assistant").get_by_role("button", name="Copy").click()
    page.get_by_role("button", name="Copied").wait_for()
    # The reply as written (the page shows it as Markdown, which may fold its line breaks).
    assert page.evaluate("navigator.clipboard.readText()").strip() == edited[1]["content"].strip()

    page.get_by_role("button", name="Export", exact=True).click()
    with page.expect_download() as download:
        page.get_by_role("button", name="Export as Markdown").click()
    text = Path(download.value.path()).read_text()
    assert download.value.suggested_filename == "First-question.md"  # named by the chat's title
    assert "## You\n\nEdited question" in text and f"## Assistant ({MODEL})" in text


def test_first_token_wait_decode_speed_and_the_cut_marker(page: Any, srv: ServerProcess, token: str) -> None:
    _api(srv, token, "POST", f"/admin/models/{MODEL}/unload")
    _new_chat(page, max_tokens=8)
    # The wait before the first token is shown while it lasts: keep every text it had.
    page.evaluate(
        "window.__waits = []; new MutationObserver(() => document.querySelectorAll('[data-testid=waiting]')"
        ".forEach(w => window.__waits.push(w.textContent))).observe(document.body,"
        " {subtree: true, childList: true, characterData: true})"
    )
    _send(page, "Hi")
    _replies_done(page, 1)
    _send(page, "Again")
    _replies_done(page, 2)
    waits = " ".join(page.evaluate("window.__waits"))
    assert "Loading the model" in waits and "Waiting for the first token" in waits, waits

    stored = _api(srv, token, "GET", f"/api/chats/{_chat_id(page)}")["messages"][1]
    assert stored["finish_reason"] == "length" and stored["completion_tokens"] == 8
    assert stored["ttft_ms"] > 0 and stored["decode_ms"] > 0
    first = page.get_by_role("article", name="Assistant").first
    assert first.get_by_test_id("cut").inner_text() == "Cut at max tokens"
    rate = (8 - 1) / (stored["decode_ms"] / 1000)  # from the first token on: the wait is not decoding
    assert first.get_by_test_id("stat-rate").inner_text() == f"{rate:.1f} tokens/s"
    assert first.get_by_test_id("stat-ttft").inner_text() == f"first token after {stored['ttft_ms'] / 1000:.2f} s"
    assert first.get_by_test_id("stat-tokens").inner_text() == "8 tokens"
    assert first.get_by_test_id("reply-model").inner_text() == f"{MODEL} · max tokens 8"


def test_images_thumbnails_remove_vision_only_and_a_failed_one_does_not_break_the_chat(
    page: Any, srv: ServerProcess, token: str
) -> None:
    _new_chat(page, max_tokens=4)
    assert page.get_by_text("Image", exact=True).count() == 0  # a text model: no Image button
    page.get_by_label("Model or profile").select_option(VLM)
    picker = page.locator("input[type=file]")
    picker.set_input_files([_file("a.png", _png(1)), _file("b.png", _png(2))])
    thumbs = page.get_by_role("list", name="Attached images").get_by_role("img")
    page.wait_for_function("() => document.querySelectorAll('form.composer img').length === 2")
    page.get_by_role("button", name="Remove image 1").click()
    assert thumbs.count() == 1

    # Picked for a vision model, then a text model chosen: they cannot go, and say so.
    page.get_by_label("Model or profile").select_option(MODEL)
    page.get_by_text("does not take images").wait_for()
    assert page.get_by_role("button", name="Send").is_disabled()
    page.get_by_label("Model or profile").select_option(VLM)
    page.get_by_role("button", name="Remove image 1").click()

    # An image the server refuses (not an image at all): the send fails and is marked, the chat goes on.
    picker.set_input_files([_file("broken.png", b"not a picture")])
    _send(page, "What is this?")
    page.get_by_test_id("not-sent").wait_for()
    page.get_by_role("article", name="Assistant").get_by_role("alert").wait_for()
    _send(page, "Hello")
    _replies_done(page, 2)
    answered = page.get_by_role("article", name="Assistant").nth(1)
    assert answered.get_by_test_id("stats").inner_text() and answered.get_by_role("alert").count() == 0

    page.get_by_role("article", name="You").first.get_by_role("button", name="Remove", exact=True).click()
    page.get_by_test_id("not-sent").wait_for(state="detached")
    chat_id = _chat_id(page)
    stored = _api(srv, token, "GET", f"/api/chats/{chat_id}")["messages"]
    assert [m["content"] for m in stored if m["role"] == "user"] == ["Hello"]

    # A real picture to the vision model, then the text model on the same chat: both answer.
    picker.set_input_files([_file("c.png", _png(3))])
    _send(page, "Describe it")
    _replies_done(page, 2)
    page.get_by_role("article", name="You").nth(1).get_by_role("img", name="Attached image 1").wait_for()
    page.get_by_label("Model or profile").select_option(MODEL)
    _send(page, "And now?")
    _replies_done(page, 3)
    last = _api(srv, token, "GET", f"/api/chats/{chat_id}")["messages"][-1]
    assert last["status"] == "complete" and last["model"] == MODEL and not last["error"]


def test_options_panel_shows_the_profile_and_leaves_the_toolbar_and_focus_alone(
    page: Any, srv: ServerProcess, token: str
) -> None:
    body = {"name": "brief", "model": MODEL, "temperature": 0.3, "max_tokens": 5, "system_prompt": "Be brief."}
    _api(srv, token, "POST", "/api/profiles", json=body)
    page.goto("/chat")
    page.get_by_role("heading", name="New chat", level=1).wait_for()
    assert page.title() == "New chat · Chat · MLX Manager"
    picker = page.get_by_label("Model or profile")
    picker.select_option("brief")
    toolbar, log = picker.bounding_box(), page.get_by_role("region", name="Conversation").bounding_box()
    page.get_by_role("button", name="Options").click()
    values = page.get_by_test_id("profile-values").inner_text()
    assert "temperature 0.3" in values and "max tokens 5" in values and "system prompt" in values
    assert page.get_by_label("Max tokens").get_attribute("placeholder") == "5 (profile)"
    assert page.get_by_label("Temperature").get_attribute("placeholder") == "0.3 (profile)"
    assert page.get_by_label("System prompt").get_attribute("placeholder") == "Be brief."
    assert picker.bounding_box() == toolbar  # the panel opens over the page, not into the toolbar
    assert page.get_by_role("region", name="Conversation").bounding_box() == log

    page.get_by_label("Max tokens").fill("1900")
    _send(page, "Tell me a very long story")
    page.get_by_role("heading", name="Tell me a very long story", level=1).wait_for()
    page.get_by_role("button", name="Stop").click()
    page.get_by_role("button", name="Send").wait_for()
    page.wait_for_function("() => document.activeElement?.id === 'prompt'")  # focus back in the message box
    assert page.title() == "Tell me a very long story · Chat · MLX Manager"


def test_screenshots_of_the_chat_page(browser: Any, srv: ServerProcess, token: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shots: list[Path] = []
    chat_id = 0
    for name, width, height, scheme in [
        ("chat-history-light-1280", 1280, 800, "light"),
        ("chat-history-dark-1280", 1280, 800, "dark"),
        ("chat-history-390", 390, 844, "light"),
    ]:
        context = browser.new_context(
            base_url=srv.base_url, viewport={"width": width, "height": height}, color_scheme=scheme
        )
        page = context.new_page()
        page.set_default_timeout(30_000)
        try:
            _login(page)
            if not shots:
                _new_chat(page, max_tokens=12)
                _send(page, "Write a haiku about the sea")
                _replies_done(page, 1)
                _send(page, "Another, about mountains")
                _replies_done(page, 2)
                chat_id = _chat_id(page)
            else:
                page.goto(f"/chat?chat={chat_id}")
                page.get_by_test_id("stats").nth(1).wait_for()
            path = ARTIFACTS / f"{name}.png"
            page.screenshot(path=path, full_page=True)
            shots.append(path)
            if width == 390:
                assert page.evaluate("document.documentElement.scrollWidth") <= 390
                page.get_by_role("button", name="Chats", exact=True).click()
                page.get_by_label("Search chats").wait_for()
                page.screenshot(path=ARTIFACTS / "chat-history-390-list.png", full_page=True)
                shots.append(ARTIFACTS / "chat-history-390-list.png")
                page.get_by_role("button", name="Close", exact=True).click()
                page.get_by_label("Search chats").wait_for(state="hidden")
        finally:
            context.close()
    for path in shots:
        assert path.is_file() and path.stat().st_size > 1000, path
