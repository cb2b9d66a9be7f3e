"""Helpers for the tests of the manager's /api routes: accounts, sessions and keys on a real server."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from mlx_manager.testing.server import ServerProcess

PASSWORD = "password-123"
T = TypeVar("T")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Api:
    """An httpx client for one server, signed in or not."""

    def __init__(self, server: ServerProcess, token: str | None = None) -> None:
        self.server = server
        self.token = token
        self.http = httpx.Client(base_url=server.base_url, timeout=60, headers=bearer(token) if token else {})

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get(path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.post(path, **kw)

    def patch(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.patch(path, **kw)

    def delete(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.delete(path, **kw)

    def ok(self, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        resp = self.http.request(method, path, **kw)
        assert resp.status_code == status, (method, path, resp.status_code, resp.text)
        return resp.json() if resp.content else None


def register(
    server: ServerProcess, username: str, password: str = PASSWORD, setup_token: str | None = None
) -> dict[str, Any]:
    """A new account; `setup_token` (or the server key) for the first one where the server asks for it."""
    body = {"username": username, "password": password, **({"setup_token": setup_token} if setup_token else {})}
    resp = httpx.post(f"{server.base_url}/api/auth/register", json=body)
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


def login(server: ServerProcess, username: str, password: str = PASSWORD) -> str:
    resp = httpx.post(f"{server.base_url}/api/auth/login", json={"username": username, "password": password})
    assert resp.status_code == 200, resp.text
    token: str = resp.json()["access_token"]
    return token


def signed_in(server: ServerProcess, username: str) -> Api:
    return Api(server, login(server, username))


def approved_user(admin: Api, username: str) -> Api:
    """A new, approved, non-admin user, signed in."""
    user = register(admin.server, username)
    admin.ok("POST", f"/api/users/{user['id']}/approve")
    return signed_in(admin.server, username)


def new_key(api: Api, name: str = "test") -> str:
    key: str = api.ok("POST", "/api/keys", 201, json={"name": name})["key"]
    return key


def assert_problem(resp: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """An RFC 7807 problem with this status (and code)."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json"), resp.headers["content-type"]
    body: dict[str, Any] = resp.json()
    assert {"type", "title", "status", "detail", "instance"} <= set(body), body
    assert body["status"] == status and body["instance"] == resp.request.url.path
    assert body["request_id"] == resp.headers["x-request-id"], body
    if code is not None:
        assert body.get("code") == code, body
    return body


def eventually(check: Callable[[], T | None], timeout: float = 10.0) -> T:
    """Poll until `check` returns something truthy (the audit log is written in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)
