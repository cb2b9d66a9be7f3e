"""Bad input on the manager's routes is a 400 problem naming the field, never a 500 from SQLite: null for a field
whose column is NOT NULL, integers past SQLite's 64-bit range, NaN and infinities, lone surrogates, wrong types."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import SQLModel

from mlx_manager.api.manager.fields import PartialUpdate
from mlx_manager.api.manager.routing import BackendUpdate, RuleUpdate
from mlx_manager.api.manager.schemas import ProfileUpdate, UserUpdate
from mlx_manager.db.models import Backend, Profile, RoutingRule, User
from mlx_manager.testing.server import ServerProcess, run_server
from tests.api.accounts import Api, assert_problem, register, signed_in

BEYOND = 2**63  # one past SQLite's largest integer
RAW = {"content-type": "application/json"}


PATCHED_TABLES = [(BackendUpdate, Backend), (RuleUpdate, RoutingRule), (ProfileUpdate, Profile), (UserUpdate, User)]


@pytest.mark.parametrize(("update", "table"), PATCHED_TABLES)
def test_patch_bodies_take_null_exactly_for_the_nullable_columns(
    update: type[PartialUpdate], table: type[SQLModel]
) -> None:
    columns = table.__table__.columns  # type: ignore[attr-defined]
    assert set(update.model_fields) <= set(columns.keys())
    assert update.clearable == {name for name in update.model_fields if columns[name].nullable}


@pytest.fixture(scope="module")
def server(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with run_server(tmp_path_factory.mktemp("bad-input"), ["--model-dir", str(tiny_models_dir)]) as srv:
        yield srv


@pytest.fixture(scope="module")
def admin(server: ServerProcess) -> Api:
    register(server, "admin")
    return signed_in(server, "admin")


@pytest.fixture(scope="module")
def ids(admin: Api) -> dict[str, int]:
    backend = admin.ok("POST", "/api/routing/backends", 201, json={"name": "here", "kind": "local"})["id"]
    rule = admin.ok("POST", "/api/routing/rules", 201, json={"pattern": "x", "backend_ids": [backend]})["id"]
    profile = admin.ok("POST", "/api/profiles", 201, json={"name": "p", "model": "tiny-llama", "max_tokens": 5})["id"]
    user = admin.ok("GET", "/api/auth/me")["id"]
    return {"backend": backend, "rule": rule, "profile": profile, "user": user}


def _names(field: str, resp: httpx.Response) -> None:
    body = assert_problem(resp, 400)
    assert f"'{field}'" in body["detail"], body
    assert body["errors"][0]["loc"][-1] == field.split(".")[-1], body


NULLS = [
    ("/api/routing/backends/{backend}", "enabled"),
    ("/api/routing/backends/{backend}", "timeout_seconds"),
    ("/api/routing/rules/{rule}", "pattern"),
    ("/api/routing/rules/{rule}", "match_type"),
    ("/api/routing/rules/{rule}", "priority"),
    ("/api/routing/rules/{rule}", "backend_ids"),
    ("/api/routing/rules/{rule}", "enabled"),
    ("/api/profiles/{profile}", "name"),
    ("/api/profiles/{profile}", "model"),
    ("/api/users/{user}", "is_admin"),
    ("/api/users/{user}", "is_approved"),
]


@pytest.mark.parametrize(("path", "field"), NULLS)
def test_null_for_a_not_null_column_is_a_400_naming_it(admin: Api, ids: dict[str, int], path: str, field: str) -> None:
    _names(field, admin.patch(path.format(**ids), json={field: None}))


def test_null_still_clears_the_nullable_fields(admin: Api, ids: dict[str, int]) -> None:
    cleared = {"base_url": None, "credential_id": None}
    backend = admin.ok("PATCH", f"/api/routing/backends/{ids['backend']}", json=cleared)
    assert backend["base_url"] is None and backend["credential_id"] is None
    assert admin.ok("PATCH", f"/api/profiles/{ids['profile']}", json={"max_tokens": None})["max_tokens"] is None
    assert admin.ok("PATCH", f"/api/routing/rules/{ids['rule']}", json={"remote_model": None})["remote_model"] is None
    assert "max_models" not in admin.ok("PATCH", "/api/settings", json={"max_models": None})["overridden"]


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("GET", f"/api/profiles/{BEYOND}", "profile_id"),
        ("PATCH", f"/api/profiles/{10**30}", "profile_id"),
        ("POST", f"/api/profiles/{BEYOND}/duplicate", "profile_id"),
        ("PATCH", f"/api/routing/backends/{BEYOND}", "backend_id"),
        ("DELETE", f"/api/routing/rules/{BEYOND}", "rule_id"),
        ("DELETE", f"/api/routing/credentials/{BEYOND}", "credential_id"),
        ("PATCH", f"/api/users/{BEYOND}", "user_id"),
        ("POST", f"/api/users/{BEYOND}/approve", "user_id"),
        ("DELETE", f"/api/keys/{BEYOND}", "key_id"),
        ("GET", f"/api/audit?offset={BEYOND}", "offset"),
        ("GET", f"/api/audit?user_id={10**30}", "user_id"),
        ("GET", f"/api/audit/export?user_id={BEYOND}", "user_id"),
    ],
)
def test_ids_and_numbers_past_64_bits_in_the_url_are_a_400_naming_them(
    admin: Api, method: str, path: str, field: str
) -> None:
    _names(field, admin.http.request(method, path, json={}))


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/api/routing/rules", {"pattern": "y", "backend_ids": [1], "priority": BEYOND}, "priority"),
        ("PATCH", "/api/routing/rules/{rule}", {"priority": -BEYOND - 1}, "priority"),
        ("POST", "/api/routing/rules", {"pattern": "y", "backend_ids": [BEYOND]}, "backend_ids.0"),
        ("POST", "/api/routing/backends", {"name": "b", "kind": "local", "credential_id": BEYOND}, "credential_id"),
        ("POST", "/api/profiles", {"name": "q", "model": "tiny-llama", "max_tokens": 10**30}, "max_tokens"),
        ("PATCH", "/api/profiles/{profile}", {"context_length": BEYOND}, "context_length"),
        ("PATCH", "/api/settings", {"memory_budget_bytes": BEYOND}, "memory_budget_bytes"),
        ("PATCH", "/api/settings", {"audit_retention_days": 10**30}, "audit_retention_days"),
        ("PATCH", "/api/routing/backends/{backend}", {"enabled": [1]}, "enabled"),
        ("PATCH", "/api/routing/backends/{backend}", {"timeout_seconds": "soon"}, "timeout_seconds"),
        ("PATCH", "/api/routing/rules/{rule}", {"backend_ids": ["one"]}, "backend_ids.0"),
        ("POST", "/api/routing/backends", {"name": "r", "kind": "openai", "base_url": "http://[::1"}, "base_url"),
        ("POST", "/api/routing/backends", {"name": "r", "kind": "openai", "base_url": "http://h:99999/"}, "base_url"),
        ("PATCH", "/api/routing/backends/{backend}", {"base_url": "http://a b/"}, "base_url"),
        ("PATCH", "/api/routing/backends/{backend}", {"base_url": "http://\x00/"}, "base_url"),
    ],
)
def test_out_of_range_and_wrong_typed_fields_are_a_400_naming_them(
    admin: Api, ids: dict[str, int], method: str, path: str, body: dict[str, Any], field: str
) -> None:
    _names(field, admin.http.request(method, path.format(**ids), json=body))


@pytest.mark.parametrize(
    ("method", "path", "raw", "field"),
    [
        ("PATCH", "/api/settings", b'{"idle_ttl_seconds": Infinity}', "idle_ttl_seconds"),
        ("PATCH", "/api/settings", b'{"room_wait_seconds": NaN}', "room_wait_seconds"),
        ("POST", "/api/profiles", b'{"name": "s", "model": "m", "temperature": NaN}', "temperature"),
        ("POST", "/api/keys", b'{"name": "\\ud800"}', "name"),
        ("POST", "/api/profiles", b'{"name": "s", "model": "m", "system_prompt": "a\\udfffb"}', "system_prompt"),
        ("POST", "/api/routing/credentials", b'{"name": "c", "provider": "p", "secret": "\\ud800"}', "secret"),
        ("POST", "/api/auth/login", b'{"username": "\\ud800", "password": "x"}', "username"),
    ],
)
def test_nan_infinity_and_lone_surrogates_are_a_400_naming_the_field(
    admin: Api, method: str, path: str, raw: bytes, field: str
) -> None:
    _names(field, admin.http.request(method, path, content=raw, headers=RAW))


def test_a_refused_setting_leaves_the_saved_ones_readable(admin: Api) -> None:
    assert_problem(admin.patch("/api/settings", json={"memory_budget_bytes": BEYOND}), 400)
    largest = admin.ok("PATCH", "/api/settings", json={"memory_budget_bytes": BEYOND - 1})
    assert largest["memory_budget_bytes"] == BEYOND - 1
    assert admin.ok("GET", "/api/settings")["memory_budget_bytes"] == BEYOND - 1
    admin.ok("PATCH", "/api/settings", json={"memory_budget_bytes": None})


def test_the_openapi_says_which_patch_fields_may_be_null(server: ServerProcess) -> None:
    schemas = httpx.get(f"{server.base_url}/openapi.json").json()["components"]["schemas"]

    def nullable(model: str, field: str) -> bool:
        prop = schemas[model]["properties"][field]
        return {"type": "null"} in prop.get("anyOf", [])

    assert not nullable("BackendUpdate", "enabled") and nullable("BackendUpdate", "credential_id")
    assert not nullable("ProfileUpdate", "name") and nullable("ProfileUpdate", "max_tokens")
    assert not nullable("UserUpdate", "is_admin") and nullable("SettingsUpdate", "max_models")
    assert schemas["BackendUpdate"]["properties"]["enabled"]["type"] == "boolean"
