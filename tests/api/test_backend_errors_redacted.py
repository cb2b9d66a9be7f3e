"""Upstream error bodies never reach callers (issue #12, finding 6): a backend that echoes the request's
Authorization header in its error body. The caller gets the status, the backend's name, the URL tried and the
backend's own error message with the credential and header-like fragments taken out; the body goes to the log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlx_manager.routing.redact import WITHHELD
from mlx_manager.testing.echo_backend import MARKER, PLAIN_MESSAGE, EchoBackend, echo_backend
from mlx_manager.testing.server import ServerProcess, run_server
from tests.api.accounts import Api, approved_user, login, new_key, register

SECRET = "sk-live-9f8e7d6c5b4a39281706f5e4"
HI = [{"role": "user", "content": "hi"}]


def pieces(secret: str, width: int = 8) -> list[str]:
    return [secret[i : i + width] for i in range(len(secret) - width + 1)]


@pytest.fixture(scope="module")
def setup(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    """A server routing `echo-401-json`, `echo-500-json` and `echo-401-text` to backends that echo the request,
    `plain-404` to one that answers a plain error, and a non-admin user's key."""
    home = tmp_path_factory.mktemp("redact")
    with (
        echo_backend(401) as e401,
        echo_backend(500) as e500,
        echo_backend(401, "echo-text") as text401,
        echo_backend(404, "plain") as plain404,
        run_server(home, ["--model-dir", str(tiny_models_dir)]) as srv,
    ):
        register(srv, "root")
        admin = Api(srv, login(srv, "root"))
        credential = admin.ok(
            "POST", "/api/routing/credentials", 201, json={"name": "k", "provider": "x", "secret": SECRET}
        )["id"]
        backends: dict[str, EchoBackend] = {
            "echo-401-json": e401,
            "echo-500-json": e500,
            "echo-401-text": text401,
            "plain-404": plain404,
        }
        for name, backend in backends.items():
            body: dict[str, Any] = {"name": name, "kind": "openai", "base_url": backend.base_url}
            bid = admin.ok("POST", "/api/routing/backends", 201, json={**body, "credential_id": credential})["id"]
            admin.ok("POST", "/api/routing/rules", 201, json={"pattern": name, "backend_ids": [bid]})
        user_key = new_key(approved_user(admin, "someone"))
        yield srv, user_key
        assert all(f"Bearer {SECRET}" in b.authorization() for b in backends.values())


def assert_clean(message: str) -> None:
    assert SECRET not in message and not any(p in message for p in pieces(SECRET)), message
    assert "Bearer" not in message and "python-httpx" not in message and MARKER not in message, message


@pytest.mark.parametrize(
    ("model", "status"), [("echo-401-json", 401), ("echo-500-json", 502), ("echo-401-text", 401), ("plain-404", 404)]
)
def test_a_backend_that_echoes_its_credential_is_summarised_for_a_non_admin_caller(
    setup: tuple[ServerProcess, str], model: str, status: int
) -> None:
    srv, key = setup
    headers = {"Authorization": f"Bearer {key}"}
    resp = httpx.post(f"{srv.base_url}/v1/chat/completions", json={"model": model, "messages": HI}, headers=headers)
    assert resp.status_code == status, resp.text
    message = resp.json()["error"]["message"]
    upstream = model.split("-")[1]
    assert model in message and f"{upstream} from POST http://127.0.0.1:" in message, message
    if model == "plain-404":  # the backend's own message, when it echoes nothing
        assert PLAIN_MESSAGE in message, message
        return
    assert_clean(message)
    if model.endswith("json"):  # a JSON error that echoes the request is withheld
        assert message.endswith(WITHHELD), message
    else:  # a body that is not a JSON error is never shown
        assert message.endswith(f"{upstream} from POST {message.split(' from POST ')[1]}"), message
    anthropic = httpx.post(
        f"{srv.base_url}/v1/messages", json={"model": model, "messages": HI, "max_tokens": 4}, headers=headers
    )
    assert anthropic.status_code == status and anthropic.json()["type"] == "error", anthropic.text
    assert_clean(anthropic.json()["error"]["message"])


def test_the_server_log_has_the_backends_body_but_never_the_credential(setup: tuple[ServerProcess, str]) -> None:
    srv, _ = setup
    httpx.post(f"{srv.base_url}/v1/chat/completions", json={"model": "echo-401-text", "messages": HI})
    log = srv.log()
    assert f"{MARKER}: rejected credential" in log and "Backend echo-401-text answered 401" in log
    assert SECRET not in log
