"""Who may create accounts (issue #12, finding 1): where a stranger could reach the server first (a server key is set,
or it listens beyond loopback) the first account, the administrator, needs the server key or the one-time setup
token from the log; later registrations can be switched off, and admins still add users."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mlx_manager.testing.server import ServerProcess, run_server
from tests.api.accounts import PASSWORD, Api, assert_problem, bearer, login, register, signed_in

SERVER_KEY = "sk-setup-test"


@pytest.fixture(scope="module")
def keyed(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    args = ["--model-dir", str(tiny_models_dir), "--api-key", SERVER_KEY]
    with run_server(tmp_path_factory.mktemp("setup-keyed"), args) as srv:
        yield srv


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Listening on every interface, without a key (the operator allowed it): tests reach it on 127.0.0.1."""
    args = ["--host", "0.0.0.0", "--allow-unauthenticated-remote"]
    with run_server(tmp_path_factory.mktemp("setup-remote"), args) as srv:
        yield srv


def _register(server: ServerProcess, username: str, **extra: str) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/api/auth/register", json={"username": username, "password": PASSWORD, **extra}
    )


def _status(server: ServerProcess) -> dict[str, bool]:
    body: dict[str, bool] = httpx.get(f"{server.base_url}/api/auth/status").json()
    return body


def test_with_a_server_key_an_anonymous_caller_cannot_become_the_first_admin(keyed: ServerProcess) -> None:
    assert _status(keyed) == {"has_users": False, "setup_required": True, "registration_open": True}
    assert_problem(_register(keyed, "mallory"), 403, "setup_token_required")
    assert_problem(_register(keyed, "mallory", setup_token="guess"), 403, "setup_token_required")
    assert _status(keyed)["has_users"] is False  # nothing was made
    admin = _register(keyed, "owner", setup_token=SERVER_KEY)  # the server key works as the setup token
    assert admin.status_code == 201 and admin.json()["is_admin"], admin.text
    assert _status(keyed) == {"has_users": True, "setup_required": False, "registration_open": True}
    later = _register(keyed, "later")
    assert later.status_code == 201 and not later.json()["is_admin"] and not later.json()["is_approved"]


def test_beyond_loopback_no_admin_route_is_open_before_the_first_account(remote: ServerProcess) -> None:
    """Else a stranger could make an administrator with POST /api/users, without the setup token."""
    assert _status(remote)["has_users"] is False
    for method, path in (("GET", "/admin/models"), ("GET", "/metrics"), ("GET", "/api/settings")):
        assert httpx.request(method, f"{remote.base_url}{path}").status_code == 401, path
    body = {"username": "mallory", "password": PASSWORD, "is_admin": True}
    assert_problem(httpx.post(f"{remote.base_url}/api/users", json=body), 401)
    assert _status(remote)["has_users"] is False


def test_beyond_loopback_the_first_admin_needs_the_one_time_token_from_the_log(remote: ServerProcess) -> None:
    found = re.search(r"one-time setup token: (\S+)", remote.log())
    assert found, remote.log()[-2000:]
    token = found.group(1)
    assert _status(remote)["setup_required"] is True
    assert_problem(_register(remote, "mallory"), 403, "setup_token_required")
    first = _register(remote, "owner", setup_token=token)
    assert first.status_code == 201 and first.json()["is_admin"], first.text
    # Spent: the same token makes no second admin (just an account awaiting approval, like anyone's).
    again = _register(remote, "second", setup_token=token)
    assert again.status_code == 201 and not again.json()["is_admin"] and not again.json()["is_approved"]


def test_registration_can_be_switched_off_and_admins_still_add_users(keyed: ServerProcess) -> None:
    if not _status(keyed)["has_users"]:
        register(keyed, "owner", setup_token=SERVER_KEY)
    admin = signed_in(keyed, "owner")
    assert admin.ok("PATCH", "/api/settings", json={"allow_registration": False})["allow_registration"] is False
    try:
        assert _status(keyed)["registration_open"] is False
        assert_problem(_register(keyed, "walk-in"), 403, "registration_closed")
        added = admin.ok("POST", "/api/users", 201, json={"username": "invited", "password": PASSWORD})
        assert added["is_approved"] and not added["is_admin"]
        assert Api(keyed, login(keyed, "invited")).ok("GET", "/api/auth/me")["username"] == "invited"
        member = Api(keyed, login(keyed, "invited"))
        assert_problem(member.post("/api/users", json={"username": "x", "password": PASSWORD}), 403)
    finally:
        admin.ok("PATCH", "/api/settings", json={"allow_registration": None})
    assert _status(keyed)["registration_open"] is True


def test_the_server_key_owns_its_stored_responses_and_sees_everyones(keyed: ServerProcess) -> None:
    if not _status(keyed)["has_users"]:
        register(keyed, "owner", setup_token=SERVER_KEY)
    admin = signed_in(keyed, "owner")
    member_id = register(keyed, "responder")["id"]
    admin.ok("POST", f"/api/users/{member_id}/approve")
    member_key = signed_in(keyed, "responder").ok("POST", "/api/keys", 201, json={"name": "k"})["key"]
    body = {"model": "tiny-llama", "input": "Hi", "max_output_tokens": 2}
    url = f"{keyed.base_url}/v1/responses"
    by_server = httpx.post(url, json=body, headers=bearer(SERVER_KEY), timeout=60).json()["id"]
    by_member = httpx.post(url, json=body, headers=bearer(member_key), timeout=60).json()["id"]
    assert httpx.get(f"{url}/{by_server}", headers=bearer(member_key)).status_code == 404
    assert httpx.get(f"{url}/{by_member}", headers=bearer(SERVER_KEY)).status_code == 200  # admin rights
    assert httpx.get(f"{url}/{by_server}", headers=bearer(SERVER_KEY)).status_code == 200
