"""Sessions on a real server (issue #12, findings 2 and 7): a deleted user's token never comes back as whoever gets
the next account (ids are never reused, tokens name a random uid and a session row), logout, password changes,
suspension and an admin's revocation end sessions, and usernames are unique regardless of case."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mlx_manager.testing.server import ServerProcess, run_server
from tests.api.accounts import (
    PASSWORD,
    Api,
    approved_user,
    assert_problem,
    bearer,
    eventually,
    login,
    new_key,
    register,
    signed_in,
)

CHAT = {"model": "tiny-llama", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2}


@pytest.fixture(scope="module")
def server(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with run_server(tmp_path_factory.mktemp("sessions"), ["--model-dir", str(tiny_models_dir)]) as srv:
        yield srv


@pytest.fixture(scope="module")
def admin(server: ServerProcess) -> Api:
    register(server, "admin")
    return signed_in(server, "admin")


def _id(api: Api) -> int:
    return int(api.ok("GET", "/api/auth/me")["id"])


def test_a_deleted_users_session_never_answers_as_the_next_user(server: ServerProcess, admin: Api) -> None:
    carol = approved_user(admin, "carol")
    carol_id = _id(carol)
    carol_key = new_key(carol)
    chat = httpx.post(f"{server.base_url}/v1/chat/completions", json=CHAT, headers=bearer(carol_key), timeout=60)
    assert chat.status_code == 200
    eventually(lambda: admin.ok("GET", "/api/audit", params={"user_id": carol_id})["total"])
    assert admin.delete(f"/api/users/{carol_id}").status_code == 204
    dave = register(server, "dave")  # the next account: it used to get carol's id back
    assert dave["id"] > carol_id
    assert_problem(carol.get("/api/auth/me"), 401)
    assert_problem(carol.post("/api/keys", json={"name": "for dave"}), 401)
    admin.ok("POST", f"/api/users/{dave['id']}/approve")
    assert_problem(carol.get("/api/auth/me"), 401)  # still not dave, now that dave may sign in
    # Carol's request stays hers in the audit log; nothing is attributed to dave.
    assert admin.ok("GET", "/api/audit", params={"user_id": dave["id"]})["total"] == 0
    assert admin.ok("GET", "/api/audit", params={"user_id": carol_id})["total"] >= 1


def test_logout_ends_that_session_only(server: ServerProcess, admin: Api) -> None:
    erin = approved_user(admin, "erin")
    elsewhere = signed_in(server, "erin")
    assert erin.post("/api/auth/logout").status_code == 204
    assert_problem(erin.get("/api/auth/me"), 401, "session_ended")
    assert (
        httpx.post(f"{server.base_url}/v1/chat/completions", json=CHAT, headers=bearer(erin.token or "")).status_code
        == 401
    )
    assert elsewhere.ok("GET", "/api/auth/me")["username"] == "erin"
    key = new_key(elsewhere)
    assert_problem(httpx.post(f"{server.base_url}/api/auth/logout", headers=bearer(key)), 400, "not_a_session")
    assert_problem(httpx.post(f"{server.base_url}/api/auth/logout"), 401)


def test_a_password_change_needs_the_current_one_and_ends_every_session(server: ServerProcess, admin: Api) -> None:
    frank = approved_user(admin, "frank")
    other = signed_in(server, "frank")
    body = {"current_password": "not-it-at-all", "new_password": "a new passphrase"}
    assert_problem(frank.post("/api/auth/password", json=body), 403, "invalid_credentials")
    assert frank.ok("GET", "/api/auth/me")  # a wrong guess is no sign-out
    assert_problem(
        frank.post("/api/auth/password", json={**body, "current_password": PASSWORD, "new_password": "x"}), 400
    )
    fresh = frank.ok("POST", "/api/auth/password", json={**body, "current_password": PASSWORD})
    assert_problem(frank.get("/api/auth/me"), 401)
    assert_problem(other.get("/api/auth/me"), 401)
    assert Api(server, fresh["access_token"]).ok("GET", "/api/auth/me")["username"] == "frank"
    old = httpx.post(f"{server.base_url}/api/auth/login", json={"username": "frank", "password": PASSWORD})
    assert_problem(old, 401, "invalid_credentials")
    assert login(server, "frank", "a new passphrase")


def test_suspending_a_user_or_revoking_their_sessions_signs_them_out(server: ServerProcess, admin: Api) -> None:
    gina = approved_user(admin, "gina")
    gina_id = _id(gina)
    ended = admin.ok("POST", f"/api/users/{gina_id}/revoke-sessions")
    assert ended == {"user_id": gina_id, "sessions_ended": 1}
    assert_problem(gina.get("/api/auth/me"), 401, "session_ended")
    again = signed_in(server, "gina")
    admin.ok("PATCH", f"/api/users/{gina_id}", json={"is_approved": False})
    admin.ok("PATCH", f"/api/users/{gina_id}", json={"is_approved": True})
    assert_problem(again.get("/api/auth/me"), 401, "session_ended")  # ended, not only paused while suspended
    assert signed_in(server, "gina").ok("GET", "/api/auth/me")["id"] == gina_id
    assert_problem(admin.post("/api/users/99999/revoke-sessions"), 404)
    assert_problem(gina.post(f"/api/users/{gina_id}/revoke-sessions"), 401)


def test_usernames_are_unique_and_sign_in_regardless_of_case(server: ServerProcess, admin: Api) -> None:
    harry = register(server, "Harry")
    clash = httpx.post(f"{server.base_url}/api/auth/register", json={"username": "harry", "password": PASSWORD})
    assert_problem(clash, 409, "username_taken")
    admin.ok("POST", f"/api/users/{harry['id']}/approve")
    me = Api(server, login(server, "HARRY")).ok("GET", "/api/auth/me")
    assert me["id"] == harry["id"] and me["username"] == "Harry"
    added = admin.post("/api/users", json={"username": "hArRy", "password": PASSWORD})
    assert_problem(added, 409, "username_taken")
