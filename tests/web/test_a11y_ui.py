"""Every page for everyone (issue #16): axe-core (the npm package, from ui/node_modules, offline) finds no serious or
critical violation on any page in the light and dark themes and at 390 px; every page is usable from the keyboard
(skip link, focus reaches its main control, focus always visible); at 390 px nothing scrolls sideways and the
Models table's buttons are on screen; each page has its own tab title and a heading. Screenshots of every page
(light, dark, 390 px) go to test-artifacts/ui/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlx_manager.testing.server import ServerProcess
from tests.api.accounts import Api, login, register
from tests.web.conftest import PASSWORD

MODEL = "tiny-llama"
ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "ui" / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = ROOT / "test-artifacts" / "ui"
# path, the page's name (in its tab title), its heading, and a control the keyboard must reach.
PAGES = [
    ("/", "Dashboard", "Dashboard", "Prompt"),
    ("/chat", "Chat", "New chat", "Message"),
    ("/models", "Models", "Models", "Download by repo id"),
    ("/profiles", "Profiles", "Profiles", "System prompt"),
    ("/settings", "Settings", "Settings", "Key name"),
    ("/logs", "Logs", "Logs", "Endpoint"),
    ("/routing", "Routing", "Routing", "Model name to test"),
    ("/batches", "Batches", "Batches", None),  # a list only: nothing to type into
]


@pytest.fixture(scope="module")
def srv(ui_server: ServerProcess) -> ServerProcess:
    """Something on every page: a profile, a key, a routing rule, audit rows, a loaded model."""
    register(ui_server, "admin", PASSWORD)
    admin = Api(ui_server, login(ui_server, "admin", PASSWORD))
    admin.ok("POST", "/api/profiles", 201, json={"name": "terse", "model": MODEL, "max_tokens": 32, "top_p": 0.9})
    key = admin.ok("POST", "/api/keys", 201, json={"name": "laptop"})["key"]
    body = {"name": "peer", "kind": "openai", "base_url": "http://127.0.0.1:9/v1"}
    backend = admin.ok("POST", "/api/routing/backends", 201, json=body)
    admin.ok("POST", "/api/routing/rules", 201, json={"pattern": "remote-*", "match_type": "glob",
                                                      "backend_ids": [backend["id"]]})  # fmt: skip
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    r = httpx.post(f"{ui_server.base_url}/v1/chat/completions", json=chat, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    return ui_server


def _context(browser: Any, srv: ServerProcess, *, width: int = 1280, dark: bool = False) -> Any:
    if not AXE.is_file():
        pytest.fail(f"axe-core is missing ({AXE}): run `cd ui && npm install`")
    context = browser.new_context(
        base_url=srv.base_url,
        viewport={"width": width, "height": 844 if width < 700 else 900},
        color_scheme="dark" if dark else "light",
    )
    context.add_init_script(path=AXE)  # before the page's own scripts, untouched by its Content-Security-Policy
    return context


@pytest.fixture
def signed_in(browser: Any, srv: ServerProcess) -> Iterator[Any]:
    """A function giving a signed-in page at a width and theme; every context is closed afterwards."""
    contexts: list[Any] = []

    def make(width: int = 1280, dark: bool = False) -> Any:
        context = _context(browser, srv, width=width, dark=dark)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto("/login")
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in", exact=True).click()
        page.get_by_role("heading", name="Dashboard").wait_for()
        return page

    yield make
    for context in contexts:
        context.close()


def _open(page: Any, path: str, heading: str) -> None:
    page.goto(path)
    page.get_by_role("heading", name=heading, exact=True).first.wait_for()
    page.wait_for_load_state("networkidle")


def _serious(page: Any) -> list[str]:
    """axe-core's serious and critical violations on the page, one line each."""
    found = page.evaluate("async () => (await axe.run(document, { resultTypes: ['violations'] })).violations")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in found
        if v["impact"] in ("serious", "critical")
    ]


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_no_serious_accessibility_violations_on_any_page(signed_in: Any, browser: Any, srv: ServerProcess,
                                                         theme: str) -> None:  # fmt: skip
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    problems: dict[str, list[str]] = {}
    context = _context(browser, srv, dark=theme == "dark")
    try:
        login = context.new_page()
        login.goto("/login")
        login.get_by_role("heading", name="Log in").wait_for()
        problems["/login"] = _serious(login)
        login.screenshot(path=ARTIFACTS / f"login-{theme}.png", full_page=True)
    finally:
        context.close()
    page = signed_in(dark=theme == "dark")
    for path, name, heading, _ in PAGES:
        _open(page, path, heading)
        problems[path] = _serious(page)
        page.screenshot(path=ARTIFACTS / f"{name.lower()}-{theme}.png", full_page=True)
    assert not any(problems.values()), {p: v for p, v in problems.items() if v}


def test_phone_width_has_no_sideways_scroll_buttons_on_screen_and_no_violations(signed_in: Any) -> None:
    page = signed_in(width=390)
    problems: dict[str, list[str]] = {}
    for path, name, heading, _ in PAGES:
        _open(page, path, heading)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{path} scrolls sideways at 390 px ({width} px wide)"
        problems[path] = _serious(page)
        page.screenshot(path=ARTIFACTS / f"{name.lower()}-390.png", full_page=True)
        if path == "/models":
            row = page.get_by_test_id("local-model").filter(has=page.get_by_text(MODEL, exact=True))
            for button in row.get_by_role("button").all():  # Load or Unload, Delete
                box = button.bounding_box()
                assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, box
    assert not any(problems.values()), {p: v for p, v in problems.items() if v}


def test_every_page_has_its_own_title_and_a_heading(signed_in: Any) -> None:
    page = signed_in()
    titles = set()
    for path, name, heading, _ in PAGES:
        _open(page, path, heading)
        assert page.get_by_role("heading", level=1).count() == 1, path
        title = page.title()
        assert name in title and title.endswith("MLX Manager"), (path, title)
        titles.add(title)
    assert len(titles) == len(PAGES)


def test_every_page_is_usable_from_the_keyboard(signed_in: Any) -> None:
    page = signed_in()
    for path, _, heading, control in PAGES:
        _open(page, path, heading)
        target = page.get_by_label(control, exact=True).first if control else None
        # The chat page puts the focus in its message box by itself.
        if target is not None and page.evaluate("document.activeElement !== document.body"):
            assert target.evaluate("e => e === document.activeElement"), f"{path}: focus starts elsewhere"
            continue
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to content", path
        page.keyboard.press("Enter")  # the skip link: the next Tab lands in the page, past the navigation
        if target is None:
            continue
        reached, seen = False, 0
        for _ in range(80):
            page.keyboard.press("Tab")
            seen += 1
            focused = page.evaluate(
                "() => { const e = document.activeElement; const s = getComputedStyle(e);"
                " return { inNav: !!e.closest('nav'), outline: s.outlineStyle, width: s.outlineWidth } }"
            )
            assert not focused["inNav"], f"{path}: the skip link did not skip the navigation"
            assert focused["outline"] != "none" and focused["width"] != "0px", f"{path}: focus not visible"
            if target.evaluate("e => e === document.activeElement"):
                reached = True
                break
        assert reached, f"{path}: Tab never reached {control!r} in {seen} presses"
