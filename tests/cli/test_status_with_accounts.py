"""`mlx-manager status` lists the loaded models also once accounts exist, through the server's status token: a
0600 file in the state dir that opens GET /admin/models and nothing else, gone when the server stops."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx

from mlx_manager.testing.server import free_port
from tests.api.accounts import PASSWORD, bearer
from tests.cli.test_lifecycle import cli


def _register_admin(base: str, api_key: str | None = None) -> None:
    account = {"username": "root", "password": PASSWORD}
    response = httpx.post(f"{base}/api/auth/register", json=account)
    if response.status_code == 403 and api_key is not None:  # the first account may ask for the server's key
        response = httpx.post(f"{base}/api/auth/register", json={**account, "setup_token": api_key})
    assert response.status_code == 201, response.text


def test_status_lists_loaded_models_after_an_admin_registered(tmp_path: Path, tiny_models_dir: Path) -> None:
    port = free_port()
    started = cli(
        tmp_path, "start", "--port", str(port), "--model-dir", str(tiny_models_dir), "--preload", "tiny-llama"
    )
    assert started.returncode == 0, started.stderr + started.stdout
    base = f"http://127.0.0.1:{port}"
    token_file = tmp_path / "state" / f"status-{port}.token"
    try:
        _register_admin(base)
        assert httpx.get(f"{base}/admin/models").status_code == 401  # /admin needs an admin now

        status = cli(tmp_path, "status")
        assert status.returncode == 0, status.stderr
        assert "loaded:  tiny-llama" in status.stdout, status.stdout

        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text()
        assert httpx.get(f"{base}/admin/models", headers=bearer(token)).status_code == 200
        # Read-only, and only that route: loading, unloading, the other /admin routes and /api stay closed.
        assert httpx.post(f"{base}/admin/models/tiny-llama/unload", headers=bearer(token)).status_code == 401
        assert httpx.get(f"{base}/admin/models/local", headers=bearer(token)).status_code == 401
        assert httpx.get(f"{base}/metrics", headers=bearer(token)).status_code == 401
        assert httpx.get(f"{base}/api/users", headers=bearer(token)).status_code == 401
        assert httpx.get(f"{base}/admin/models", headers=bearer(token[:-1] + "x")).status_code == 401
    finally:
        stopped = cli(tmp_path, "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert not token_file.exists()


def test_status_with_an_api_key_server_and_accounts_still_lists_models(tmp_path: Path, tiny_models_dir: Path) -> None:
    # A server key given at start is never stored, so status cannot use it: the status token does the work.
    port = free_port()
    args = ["--port", str(port), "--model-dir", str(tiny_models_dir), "--preload", "tiny-qwen3", "--api-key", "k3y"]
    started = cli(tmp_path, "start", *args)
    assert started.returncode == 0, started.stderr + started.stdout
    try:
        _register_admin(f"http://127.0.0.1:{port}", api_key="k3y")
        status = cli(tmp_path, "status")
        assert "loaded:  tiny-qwen3" in status.stdout, status.stdout
    finally:
        cli(tmp_path, "stop")
