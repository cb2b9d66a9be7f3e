"""Rate limits on signing in, registering and making keys (issue #12, finding 7), with the server's default limits:
failures lock a username and a client address for a while (429 + Retry-After, as a problem), and a burst of wrong
passwords hashes a few at a time instead of taking a gigabyte. Clients are told apart by their loopback source
address (127.0.0.x), as distinct machines would be."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from mlx_manager.testing.server import ServerProcess, run_server
from tests.api.accounts import PASSWORD, Api, approved_user, assert_problem, register, signed_in

LOGIN_FAILURES = 10  # the default login_rate_limit: 10/minute
REGISTRATIONS = 10  # register_rate_limit: 10/minute
KEYS = 30  # key_rate_limit: 30/minute


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with run_server(tmp_path_factory.mktemp("rate-limits"), []) as srv:
        yield srv


@pytest.fixture(scope="module")
def admin(server: ServerProcess) -> Api:
    register(server, "admin")
    return signed_in(server, "admin")


def _from(server: ServerProcess, address: str) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=server.base_url, transport=transport, timeout=120)


def _login(client: httpx.Client, username: str, password: str = PASSWORD) -> httpx.Response:
    return client.post("/api/auth/login", json={"username": username, "password": password})


def _peak_rss(server: ServerProcess) -> int:
    """The server process's peak resident memory so far (VmHWM), in bytes."""
    status = Path(f"/proc/{server.proc.pid}/status").read_text()
    line = next(row for row in status.splitlines() if row.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def _retry_after(resp: httpx.Response) -> int:
    assert_problem(resp, 429, "rate_limited")
    return int(resp.headers["retry-after"])


def test_wrong_passwords_lock_the_username_and_the_client_for_a_while(server: ServerProcess, admin: Api) -> None:
    approved_user(admin, "victim")
    approved_user(admin, "bystander")
    attacker, elsewhere = _from(server, "127.0.0.2"), _from(server, "127.0.0.3")
    for _ in range(LOGIN_FAILURES):
        assert_problem(_login(attacker, "victim", "wrong-guess"), 401, "invalid_credentials")
    assert 0 < _retry_after(_login(attacker, "victim", "wrong-guess")) <= 60
    assert 0 < _retry_after(_login(attacker, "victim")) <= 60  # even the right password: the name is locked
    assert _retry_after(_login(elsewhere, "victim")) > 0  # from any address
    assert _login(elsewhere, "bystander").status_code == 200  # other names from other addresses are not
    assert _retry_after(_login(attacker, "bystander")) > 0  # the attacker's address is locked for every name


def test_registrations_are_limited_per_client(server: ServerProcess, admin: Api) -> None:
    client = _from(server, "127.0.0.4")
    for n in range(REGISTRATIONS):
        made = client.post("/api/auth/register", json={"username": f"walk-in-{n}", "password": PASSWORD})
        assert made.status_code == 201, made.text
    refused = client.post("/api/auth/register", json={"username": "one-more", "password": PASSWORD})
    assert _retry_after(refused) > 0
    assert (
        _from(server, "127.0.0.5")
        .post("/api/auth/register", json={"username": "one-more", "password": PASSWORD})
        .status_code
        == 201
    )


def test_key_creation_is_limited_per_user(server: ServerProcess, admin: Api) -> None:
    maker = approved_user(admin, "key-maker")
    for n in range(KEYS):
        maker.ok("POST", "/api/keys", 201, json={"name": f"k{n}"})
    assert _retry_after(maker.post("/api/keys", json={"name": "one too many"})) > 0


def test_a_burst_of_wrong_logins_hashes_a_few_at_a_time(server: ServerProcess, admin: Api) -> None:
    """40 at once, each from its own address for its own name (no limit applies): each argon2 hash takes 64 MiB,
    and 40 together took the server from 185 MB to 1.1 GB before hashing was capped."""
    before = _peak_rss(server)

    def wrong(n: int) -> int:
        with _from(server, f"127.0.1.{n + 1}") as client:
            return _login(client, f"nobody-{n}", "wrong-guess").status_code

    with ThreadPoolExecutor(40) as pool:
        statuses = list(pool.map(wrong, range(40)))
    assert statuses == [401] * 40
    grown = _peak_rss(server) - before
    assert grown < 400 << 20, f"peak memory grew by {grown >> 20} MiB"
