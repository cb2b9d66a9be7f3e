"""Secrets at rest (issue #12, finding 4): the data dir, database, logs and credential key are owner-only, the
credential key is not derived from the JWT secret in the database, an older install is fixed and its credentials
moved under the new key at start, and `mlx-manager rotate-secrets` replaces both secrets."""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet
from sqlmodel import Session

from mlx_manager.db.models import Backend, Credential, RoutingRule
from mlx_manager.db.session import open_database
from mlx_manager.manager.secret_box import SecretBox
from mlx_manager.manager.settings_store import server_secret
from mlx_manager.testing.echo_backend import EchoBackend, echo_backend
from mlx_manager.testing.server import run_server, server_env
from tests.api.accounts import Api, login, register

SECRET = "sk-provider-secret-0123456789abcdef"
HI = [{"role": "user", "content": "hi"}]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def jwt_secret(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT value FROM settings WHERE key = 'jwt_secret'").fetchone()
    return str(row[0]).strip('"')


def sealed(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return str(conn.execute("SELECT secret_encrypted FROM credentials").fetchone()[0])


def key_box(home: Path) -> SecretBox:
    return SecretBox((home / "credentials.key").read_bytes().split())


def route_to(admin: Api, backend: EchoBackend) -> None:
    credential = admin.ok(
        "POST", "/api/routing/credentials", 201, json={"name": "p", "provider": "x", "secret": SECRET}
    )
    body: dict[str, Any] = {"name": "echo", "kind": "openai", "base_url": backend.base_url}
    backend_id = admin.ok("POST", "/api/routing/backends", 201, json={**body, "credential_id": credential["id"]})["id"]
    admin.ok("POST", "/api/routing/rules", 201, json={"pattern": "remote", "backend_ids": [backend_id]})


def ask_remote(base_url: str) -> httpx.Response:
    return httpx.post(f"{base_url}/v1/chat/completions", json={"model": "remote", "messages": HI}, timeout=30)


def assert_private(home: Path) -> None:
    for folder in (home, home / "state", home / "state" / "logs"):
        assert mode(folder) == 0o700, (folder, oct(mode(folder)))
    files = [home / "mlx-manager.db", home / "credentials.key", *(home / "state" / "logs").iterdir()]
    files += [p for p in (home / "mlx-manager.db-wal", home / "mlx-manager.db-shm") if p.exists()]
    assert home / "state" / "logs" / "server.log" in files
    for path in files:
        assert mode(path) == 0o600, (path, oct(mode(path)))


def test_data_logs_and_key_are_owner_only_and_credentials_do_not_open_with_the_jwt_secret(
    tmp_path: Path, tiny_models_dir: Path
) -> None:
    home = tmp_path / "home"
    with echo_backend() as backend, run_server(home, ["--model-dir", str(tiny_models_dir)]) as srv:
        register(srv, "root")
        route_to(Api(srv, login(srv, "root")), backend)
        ask_remote(srv.base_url)
        assert f"Bearer {SECRET}" in backend.authorization()  # the stored credential still reaches its backend
        assert_private(home)
        db = home / "mlx-manager.db"
        # Someone holding the database (and so the JWT secret) cannot open the credential; the key file can.
        assert SecretBox.legacy(jwt_secret(db)).open(sealed(db)) is None
        assert key_box(home).open(sealed(db)) == SECRET


def test_an_older_install_is_made_private_and_its_credentials_move_to_the_key_file(
    tmp_path: Path, tiny_models_dir: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    db_path = home / "mlx-manager.db"
    logs = home / "state" / "logs"
    logs.mkdir(parents=True)
    (logs / "server.log.1").write_text("an old log\n")
    with echo_backend() as backend:
        # What an older version left: a credential sealed under a key derived from the JWT secret, 0644/0755.
        db = open_database(db_path)
        with Session(db) as session:
            legacy = SecretBox.legacy(server_secret(db))
            credential = Credential(name="p", provider="x", secret_encrypted=legacy.seal(SECRET))
            session.add(credential)
            session.commit()
            row = Backend(name="echo", kind="openai", base_url=f"{backend.base_url}/v1", credential_id=credential.id)
            session.add(row)
            session.commit()
            session.add(RoutingRule(pattern="remote", backend_ids=[row.id or 0]))
            session.commit()
        db.dispose()
        old_sealed = sealed(db_path)
        for path in (home, home / "state", logs):
            path.chmod(0o755)
        for path in (db_path, logs / "server.log.1"):
            path.chmod(0o644)

        with run_server(home, ["--model-dir", str(tiny_models_dir)]) as srv:
            assert_private(home)
            assert sealed(db_path) != old_sealed
            assert legacy.open(sealed(db_path)) is None and key_box(home).open(sealed(db_path)) == SECRET
            ask_remote(srv.base_url)
            assert f"Bearer {SECRET}" in backend.authorization()
            assert "was readable by other users" in srv.log()
        assert old_sealed.encode() not in db_path.read_bytes()  # overwritten, not left in a free page


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlx_manager", *args], env=server_env(home), capture_output=True, text=True, timeout=60
    )


def test_rotate_secrets_replaces_the_credential_key_and_ends_sessions(tmp_path: Path, tiny_models_dir: Path) -> None:
    home = tmp_path / "home"
    args = ["--model-dir", str(tiny_models_dir)]
    with echo_backend() as backend:
        with run_server(home, args) as srv:
            register(srv, "root")
            token = login(srv, "root")
            route_to(Api(srv, token), backend)
            refused = cli(home, "rotate-secrets")
            assert refused.returncode == 1 and "stop it first" in refused.stderr
        old_key = (home / "credentials.key").read_bytes()
        old_sealed = sealed(home / "mlx-manager.db")

        out = cli(home, "rotate-secrets")
        assert out.returncode == 0, out.stderr
        assert "1 re-encrypted" in out.stdout and "session secret replaced" in out.stdout
        new_key = (home / "credentials.key").read_bytes()
        assert new_key != old_key and len(new_key.split()) == 1 and mode(home / "credentials.key") == 0o600
        assert SecretBox([Fernet.generate_key(), *old_key.split()]).open(sealed(home / "mlx-manager.db")) is None
        assert sealed(home / "mlx-manager.db") != old_sealed

        with run_server(home, args) as srv:
            me = httpx.get(f"{srv.base_url}/api/auth/me", headers={"Authorization": f"Bearer {token}"})
            assert me.status_code == 401  # signed with the old session secret
            assert Api(srv, login(srv, "root")).ok("GET", "/api/auth/me")["username"] == "root"
            backend.seen.clear()
            ask_remote(srv.base_url)
            assert f"Bearer {SECRET}" in backend.authorization()  # the credential opens under the new key
