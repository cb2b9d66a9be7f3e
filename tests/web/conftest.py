"""The web UI's end-to-end tests: a real server serving the built UI, driven by the system Chromium through
Playwright (never a downloaded browser). Missing build or browser is a failure saying how to get them."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlx_manager.api.web import WEB_DIR
from mlx_manager.testing.server import ServerProcess, run_server

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
PASSWORD = "a long passphrase"


def chromium_path() -> str:
    for name in (os.environ.get("CHROMIUM_PATH", ""), "chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name) if name else None
        if found:
            return found
    pytest.fail("No Chromium: run `bash scripts/install.sh --dev` (apt-get install chromium) or set CHROMIUM_PATH")


@pytest.fixture(scope="session")
def ui_built() -> Path:
    if not (WEB_DIR / "index.html").is_file():
        how = "run `bash scripts/install.sh --dev` or `cd ui && npm ci && npm run build`"
        pytest.fail(f"The web UI is not built ({WEB_DIR}): {how}")
    return WEB_DIR


@pytest.fixture(scope="session")
def playwright(ui_built: Path) -> Iterator[Any]:
    """One Playwright driver for the session: a second sync_playwright() in the same thread refuses to start."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("The playwright package is missing: run `bash scripts/install.sh --dev`")
    # scripts/test.sh preloads OpenBLAS for MLX; Playwright's node driver and Chromium crash with it.
    preload = os.environ.pop("LD_PRELOAD", None)
    try:
        pw = sync_playwright().start()
    finally:
        if preload is not None:
            os.environ["LD_PRELOAD"] = preload
    try:
        yield pw
    finally:
        pw.stop()


@contextlib.contextmanager
def chromium(pw: Any, *extra_args: str) -> Iterator[Any]:
    """The system Chromium, headless, with `extra_args` after the sandbox/GPU switches."""
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    args = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", *extra_args]
    browser = pw.chromium.launch(executable_path=chromium_path(), args=args, env=env)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture(scope="session")
def browser(playwright: Any) -> Iterator[Any]:
    with chromium(playwright) as launched:
        yield launched


@pytest.fixture(scope="module")
def ui_server(
    ui_built: Path, tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    with run_server(tmp_path_factory.mktemp("ui-home"), ["--model-dir", str(tiny_models_dir)]) as srv:
        yield srv


def session_token(base_url: str, username: str) -> str:
    r = httpx.post(f"{base_url}/api/auth/login", json={"username": username, "password": PASSWORD}, timeout=30)
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])
