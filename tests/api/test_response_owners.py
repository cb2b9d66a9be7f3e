"""Stored Responses belong to who made them (issue #12, finding 3): another user, or an anonymous caller of an open
server, gets a 404 reading, continuing or deleting one, as for an id that does not exist; admins see everyone's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from mlx_manager.testing.server import ServerProcess, run_server
from tests.api.accounts import Api, approved_user, bearer, new_key, register, signed_in

ASK = {"model": "tiny-llama", "input": "Hi", "max_output_tokens": 2}


@pytest.fixture(scope="module")
def server(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with run_server(tmp_path_factory.mktemp("owners"), ["--model-dir", str(tiny_models_dir)]) as srv:
        yield srv


@pytest.fixture(scope="module")
def admin(server: ServerProcess) -> Api:
    register(server, "admin")
    return signed_in(server, "admin")


def _client(server: ServerProcess, credential: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=credential, max_retries=0, timeout=60)


def test_another_users_stored_response_is_not_found(server: ServerProcess, admin: Api) -> None:
    alice = _client(server, new_key(approved_user(admin, "alice")))
    bob = _client(server, new_key(approved_user(admin, "bob")))
    made = alice.responses.create(**ASK)
    with pytest.raises(openai.NotFoundError):
        bob.responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        bob.responses.create(**ASK, previous_response_id=made.id)
    with pytest.raises(openai.NotFoundError):
        bob.responses.delete(made.id)
    url = f"{server.base_url}/v1/responses"
    anonymous = httpx.get(f"{url}/{made.id}")  # open server: no key needed, but no one else's responses either
    assert anonymous.status_code == 404
    assert httpx.post(url, json={**ASK, "previous_response_id": made.id}, timeout=60).status_code == 404
    assert httpx.delete(f"{url}/{made.id}").status_code == 404
    assert alice.responses.retrieve(made.id).id == made.id  # all of that changed nothing
    assert alice.responses.create(**ASK, previous_response_id=made.id).id != made.id


def test_admins_see_everyones_and_owners_delete_their_own(server: ServerProcess, admin: Api) -> None:
    carol = _client(server, new_key(approved_user(admin, "carol")))
    made = carol.responses.create(**ASK)
    assert httpx.get(f"{server.base_url}/v1/responses/{made.id}", headers=bearer(admin.token or "")).status_code == 200
    carol.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError):
        carol.responses.retrieve(made.id)


def test_anonymous_responses_stay_with_anonymous_callers(server: ServerProcess, admin: Api) -> None:
    url = f"{server.base_url}/v1/responses"
    made = httpx.post(url, json=ASK, timeout=60).json()["id"]
    assert httpx.get(f"{url}/{made}", headers=bearer("sk-placeholder")).status_code == 200  # what SDKs send
    dora = _client(server, new_key(approved_user(admin, "dora")))
    with pytest.raises(openai.NotFoundError):
        dora.responses.retrieve(made)


def test_deleting_a_user_deletes_their_stored_responses(server: ServerProcess, admin: Api) -> None:
    erin = approved_user(admin, "erin")
    made = _client(server, new_key(erin)).responses.create(**ASK)
    user_id = erin.ok("GET", "/api/auth/me")["id"]
    assert admin.delete(f"/api/users/{user_id}").status_code == 204
    assert httpx.get(f"{server.base_url}/v1/responses/{made.id}", headers=bearer(admin.token or "")).status_code == 404
