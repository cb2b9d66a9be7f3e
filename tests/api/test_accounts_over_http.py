"""Users, sessions and API keys on a real server: the /api routes (problem+json errors, 401/403/404/409), and the
credentials they hand out working on /v1, the Anthropic routes, /admin and /metrics."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from mlx_manager.testing.server import ServerProcess, run_server
from tests.api.accounts import (
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
MESSAGE = {"model": "tiny-llama", "max_tokens": 2, "messages": [{"role": "user", "content": "x"}]}

# Every /api route of this part of the manager, with a body that would be valid.
ROUTES = [
    ("GET", "/api/auth/me", None),
    ("GET", "/api/users", None),
    ("POST", "/api/users/1/approve", None),
    ("PATCH", "/api/users/1", {"is_admin": True}),
    ("DELETE", "/api/users/1", None),
    ("POST", "/api/keys", {"name": "k"}),
    ("GET", "/api/keys", None),
    ("DELETE", "/api/keys/1", None),
    ("GET", "/api/audit", None),
    ("GET", "/api/audit/export", None),
    ("GET", "/api/profiles", None),
    ("POST", "/api/profiles", {"name": "p", "model": "tiny-llama"}),
    ("GET", "/api/profiles/1", None),
    ("PATCH", "/api/profiles/1", {"temperature": 0.5}),
    ("DELETE", "/api/profiles/1", None),
    ("POST", "/api/profiles/1/duplicate", None),
    ("GET", "/api/settings", None),
    ("PATCH", "/api/settings", {"max_models": 2}),
]
# Everyone signed in may use their account, their keys and read profiles; the rest is for admins.
MEMBER_ROUTES = {("GET", "/api/profiles"), ("GET", "/api/profiles/1")}
ADMIN_ONLY = [r for r in ROUTES if not r[1].startswith(("/api/auth", "/api/keys")) and r[:2] not in MEMBER_ROUTES]


@pytest.fixture(scope="module")
def server(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with run_server(tmp_path_factory.mktemp("accounts"), ["--model-dir", str(tiny_models_dir)]) as srv:
        yield srv


@pytest.fixture(scope="module")
def admin(server: ServerProcess) -> Api:
    """The first account: registered before any other test's, so it is the admin."""
    status = httpx.get(f"{server.base_url}/api/auth/status").json()
    assert status == {"has_users": False, "setup_required": False, "registration_open": True}  # loopback, no key
    # Before anyone registers, the admin routes are open on loopback (whoever registers first is the admin anyway).
    assert httpx.get(f"{server.base_url}/admin/models").status_code == 200
    assert httpx.get(f"{server.base_url}/api/settings").status_code == 200
    user = register(server, "admin")
    assert user["is_admin"] and user["is_approved"]
    assert httpx.get(f"{server.base_url}/api/auth/status").json()["has_users"] is True
    return signed_in(server, "admin")


@pytest.fixture(scope="module")
def member(admin: Api) -> Api:
    return approved_user(admin, "member")


def test_every_route_needs_a_session_or_key(server: ServerProcess, admin: Api) -> None:
    http = httpx.Client(base_url=server.base_url)
    for method, path, body in ROUTES:
        for headers in ({}, bearer("not-a-token"), bearer("mlxm-unknown"), {"x-api-key": "eyJ.x.y"}):
            resp = http.request(method, path, json=body, headers=headers)
            assert_problem(resp, 401)
            assert resp.headers["www-authenticate"] == "Bearer"


def test_non_admins_get_403_on_admin_routes(member: Api) -> None:
    for method, path, body in ADMIN_ONLY:
        assert_problem(member.http.request(method, path, json=body), 403, "admin_required")
    assert_problem(member.get("/api/keys", params={"all": "true"}), 403)


def test_later_users_wait_for_approval_then_sign_in(server: ServerProcess, admin: Api) -> None:
    user = register(server, "waiting")
    assert not user["is_admin"] and not user["is_approved"]
    resp = httpx.post(f"{server.base_url}/api/auth/login", json={"username": "waiting", "password": "password-123"})
    assert_problem(resp, 403, "not_approved")
    approved = admin.ok("POST", f"/api/users/{user['id']}/approve")
    assert approved["is_approved"]
    me = Api(server, login(server, "waiting")).ok("GET", "/api/auth/me")
    assert me["username"] == "waiting" and me["last_login_at"] is not None
    assert "waiting" in [u["username"] for u in admin.ok("GET", "/api/users")]


def test_bad_logins_and_registrations_are_problems(server: ServerProcess, admin: Api) -> None:
    url = server.base_url
    wrong = httpx.post(f"{url}/api/auth/login", json={"username": "admin", "password": "wrong-password"})
    assert_problem(wrong, 401, "invalid_credentials")
    assert_problem(httpx.post(f"{url}/api/auth/register", json={"username": "admin", "password": "x" * 9}), 409)
    short = assert_problem(httpx.post(f"{url}/api/auth/register", json={"username": "a", "password": "short"}), 400)
    assert short["errors"][0]["loc"] == ["body", "password"]
    extra = httpx.post(f"{url}/api/auth/register", json={"username": "b", "password": "x" * 9, "is_admin": True})
    assert_problem(extra, 400)
    not_json = httpx.post(f"{url}/api/auth/login", content=b"{", headers={"content-type": "application/json"})
    assert_problem(not_json, 400)
    assert_problem(admin.get("/api/users/abc"), 405)  # no such route for GET; a bad id below
    assert_problem(admin.post("/api/users/abc/approve"), 400)
    assert_problem(admin.get("/api/nowhere"), 404)


def test_admins_manage_users_but_never_remove_the_last_admin(server: ServerProcess, admin: Api) -> None:
    me = admin.ok("GET", "/api/auth/me")
    assert_problem(admin.delete(f"/api/users/{me['id']}"), 409, "last_admin")
    assert_problem(admin.patch(f"/api/users/{me['id']}", json={"is_admin": False}), 409, "last_admin")
    for method in ("DELETE", "PATCH"):
        assert_problem(admin.http.request(method, "/api/users/9999", json={"is_admin": True}), 404)
    assert_problem(admin.post("/api/users/9999/approve"), 404)
    second = approved_user(admin, "second-admin")
    second_id = second.ok("GET", "/api/auth/me")["id"]
    assert admin.ok("PATCH", f"/api/users/{second_id}", json={"is_admin": True})["is_admin"]
    assert second.ok("GET", "/api/users")  # admin rights at once: the session names the user, not the role
    key = new_key(second)
    assert admin.delete(f"/api/users/{second_id}").status_code == 204
    assert_problem(second.get("/api/auth/me"), 401)  # its session and its keys die with it
    assert httpx.get(f"{server.base_url}/admin/models", headers=bearer(key)).status_code == 401


def test_keys_are_shown_once_listed_by_prefix_and_admins_list_everyones(admin: Api, member: Api) -> None:
    created = member.ok("POST", "/api/keys", 201, json={"name": "laptop"})
    assert created["key"].startswith("mlxm-") and created["prefix"] == created["key"][:12]
    listed = member.ok("GET", "/api/keys")
    assert listed[0]["name"] == "laptop" and all("key" not in k for k in listed)
    assert {k["user_id"] for k in listed} == {created["user_id"]}
    everyone = admin.ok("GET", "/api/keys", params={"all": "true"})
    assert created["id"] in [k["id"] for k in everyone]
    assert created["id"] not in [k["id"] for k in admin.ok("GET", "/api/keys")]
    assert_problem(member.post("/api/keys", json={"name": ""}), 400)


def test_someone_elses_key_is_not_found_but_an_admin_can_revoke_it(admin: Api, member: Api) -> None:
    other = approved_user(admin, "other")
    key_id = other.ok("POST", "/api/keys", 201, json={"name": "k"})["id"]
    assert_problem(member.delete(f"/api/keys/{key_id}"), 404)
    assert_problem(member.delete("/api/keys/99999"), 404)
    assert admin.ok("DELETE", f"/api/keys/{key_id}")["revoked_at"] is not None


def test_user_keys_work_with_the_openai_and_anthropic_sdks_and_mark_their_use(
    server: ServerProcess, member: Api
) -> None:
    key = new_key(member, "sdk")
    out = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=key, max_retries=0).chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert out.usage.completion_tokens == 2
    client = anthropic.Anthropic(base_url=server.base_url, api_key=key, max_retries=0)
    assert client.messages.create(**MESSAGE).usage.output_tokens == 2  # type: ignore[call-overload]
    via_prefix = httpx.post(f"{server.base_url}/anthropic/v1/messages", json=MESSAGE, headers={"x-api-key": key})
    assert via_prefix.status_code == 200

    def used() -> bool:
        return any(k["last_used_at"] for k in member.ok("GET", "/api/keys") if k["prefix"] == key[:12])

    eventually(used)


def test_a_revoked_key_gets_401_in_each_apis_shape(server: ServerProcess, member: Api) -> None:
    created = member.ok("POST", "/api/keys", 201, json={"name": "to revoke"})
    key = created["key"]
    member.ok("DELETE", f"/api/keys/{created['id']}")
    with pytest.raises(openai.AuthenticationError) as oai:
        openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=key, max_retries=0).chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert oai.value.body["code"] == "revoked_api_key"  # type: ignore[index]
    with pytest.raises(anthropic.AuthenticationError) as ant:
        anthropic.Anthropic(base_url=server.base_url, api_key=key, max_retries=0).messages.create(**MESSAGE)  # type: ignore[call-overload]
    assert ant.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    resp = httpx.post(f"{server.base_url}/v1/messages", json=MESSAGE, headers={"x-api-key": key})
    assert resp.status_code == 401 and resp.json()["type"] == "error"
    assert_problem(httpx.get(f"{server.base_url}/api/auth/me", headers=bearer(key)), 401, "revoked_api_key")


def test_a_session_token_works_on_v1_and_the_ui_routes(server: ServerProcess, member: Api) -> None:
    assert member.token is not None
    client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=member.token, max_retries=0)
    assert client.chat.completions.create(**CHAT).usage.completion_tokens == 2  # type: ignore[call-overload]
    assert member.ok("GET", "/api/auth/me")["username"] == "member"


def test_admin_and_metrics_need_an_admin_once_users_exist(server: ServerProcess, admin: Api, member: Api) -> None:
    url = server.base_url
    for path in ("/admin/models", "/metrics"):
        assert httpx.get(f"{url}{path}").status_code == 401
        assert httpx.get(f"{url}{path}", headers=bearer("unused")).status_code == 401
        forbidden = httpx.get(f"{url}{path}", headers=bearer(new_key(member)))
        assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "permission_denied"
        assert admin.get(path).status_code == 200
        assert httpx.get(f"{url}{path}", headers={"x-api-key": new_key(admin)}).status_code == 200
    # The model APIs stay open on loopback: nothing requires a key here.
    assert httpx.post(f"{url}/v1/chat/completions", json=CHAT, timeout=60).status_code == 200


def test_require_api_key_closes_v1_until_switched_off(server: ServerProcess, admin: Api, member: Api) -> None:
    url = server.base_url
    key = new_key(member)
    assert admin.ok("PATCH", "/api/settings", json={"require_api_key": True})["require_api_key"] is True
    try:
        missing = httpx.post(f"{url}/v1/chat/completions", json=CHAT)
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"
        placeholder = httpx.post(f"{url}/v1/chat/completions", json=CHAT, headers=bearer("unused"))
        assert placeholder.status_code == 401 and placeholder.json()["error"]["code"] == "invalid_api_key"
        anth = httpx.post(f"{url}/v1/messages", json=MESSAGE)
        assert anth.status_code == 401 and anth.json()["error"]["type"] == "authentication_error"
        assert httpx.get(f"{url}/v1/models", headers=bearer(key)).status_code == 200
        out = httpx.post(f"{url}/v1/messages", json=MESSAGE, headers={"x-api-key": key}, timeout=60)
        assert out.status_code == 200
        assert httpx.get(f"{url}/health").status_code == 200
    finally:
        admin.ok("PATCH", "/api/settings", json={"require_api_key": False})
    assert httpx.post(f"{url}/v1/chat/completions", json=CHAT, headers=bearer("unused"), timeout=60).status_code == 200


def test_the_openapi_schema_lists_every_route_with_models_and_problems(server: ServerProcess) -> None:
    schema = httpx.get(f"{server.base_url}/openapi.json").json()
    for method, path, body in [*ROUTES, ("POST", "/api/auth/register", {}), ("POST", "/api/auth/login", {})]:
        template = path.replace("/users/1", "/users/{user_id}").replace("/keys/1", "/keys/{key_id}")
        template = template.replace("/profiles/1", "/profiles/{profile_id}")
        operation = schema["paths"][template][method.lower()]
        responses = operation["responses"]
        assert "422" not in responses
        success = next(v for k, v in responses.items() if k.startswith("2"))
        if method != "DELETE" or "/keys/" in path:
            assert "$ref" in str(success["content"]["application/json"]["schema"]) or path.endswith("export")
        if body:
            assert "$ref" in str(operation["requestBody"]["content"]["application/json"]["schema"])
        errors = [v for k, v in responses.items() if k[0] == "4"]
        assert errors and all(list(e["content"]) == ["application/problem+json"] for e in errors), (path, responses)
    assert {"Problem", "UserPublic", "ApiKeyCreated", "ProfilePublic", "SettingsPublic", "AuditPage"} <= set(
        schema["components"]["schemas"]
    )
