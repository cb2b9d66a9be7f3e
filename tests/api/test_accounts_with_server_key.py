"""With a configured --api-key, user keys and sessions work beside it: the server key stays the admin key for
/admin and /metrics, and is no user on the /api routes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from mlx_manager.testing.server import ServerProcess, run_server
from tests.api.accounts import Api, approved_user, assert_problem, bearer, new_key, register, signed_in

SERVER_KEY = "sk-server-secret"
CHAT = {"model": "tiny-llama", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2}


@pytest.fixture(scope="module")
def server(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    args = ["--model-dir", str(tiny_models_dir), "--api-key", SERVER_KEY]
    with run_server(tmp_path_factory.mktemp("server-key"), args) as srv:
        yield srv


@pytest.fixture(scope="module")
def admin(server: ServerProcess) -> Api:
    register(server, "admin", setup_token=SERVER_KEY)  # the first account needs the key here
    return signed_in(server, "admin")


def test_user_keys_and_sessions_work_beside_the_server_key(server: ServerProcess, admin: Api) -> None:
    member = approved_user(admin, "member")
    assert member.token is not None
    for credential in (SERVER_KEY, new_key(member), member.token):
        client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=credential, max_retries=0)
        assert client.chat.completions.create(**CHAT).usage.completion_tokens == 2  # type: ignore[call-overload]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0).models.list()
    body = {"model": "tiny-llama", "max_tokens": 2, "messages": [{"role": "user", "content": "x"}]}
    out = anthropic.Anthropic(base_url=server.base_url, api_key=new_key(member), max_retries=0).messages.create(**body)  # type: ignore[arg-type]
    assert out.usage.output_tokens == 2


def test_admin_routes_take_the_server_key_or_an_admin_and_refuse_members(server: ServerProcess, admin: Api) -> None:
    member = approved_user(admin, "member2")
    url = server.base_url
    assert httpx.get(f"{url}/admin/models", headers=bearer(SERVER_KEY)).status_code == 200
    assert admin.get("/admin/models").status_code == 200
    assert httpx.get(f"{url}/metrics", headers=bearer(new_key(admin))).status_code == 200
    assert httpx.get(f"{url}/admin/models", headers=bearer(new_key(member))).status_code == 403
    assert httpx.get(f"{url}/admin/models").status_code == 401


def test_the_server_key_is_no_user_on_the_api_routes(server: ServerProcess, admin: Api) -> None:
    assert_problem(httpx.get(f"{server.base_url}/api/auth/me", headers=bearer(SERVER_KEY)), 401, "invalid_token")
    for path in ("/api/settings", "/api/users", "/api/routing/rules", "/api/downloads", "/api/audit"):
        assert_problem(httpx.get(f"{server.base_url}{path}", headers=bearer(SERVER_KEY)), 401, "invalid_token")
        assert admin.get(path).status_code == 200, path
