"""The status token: how `mlx-manager status` lists loaded models once accounts exist (then /admin needs an admin).

A running server writes a fresh random token to `<state dir>/status-<port>.token`, readable by its owner only
(0600, created that way, never widened), and accepts it for `GET /admin/models` and nothing else. Whoever can read
the file already runs as the server's user (and could read its database), so it grants nothing new; it is
read-only, lives as long as the server, and is removed at shutdown.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path

from mlx_manager import paths

PREFIX = "mlxs-"  # neither a user key (mlxm-) nor a session token (eyJ...)


def token_file(port: int) -> Path:
    return paths.state_dir() / f"status-{port}.token"


def write(port: int) -> str:
    """A new token, written atomically: mkstemp creates the file 0600, so no one else can ever read it."""
    token = PREFIX + secrets.token_urlsafe(32)
    folder = paths.state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".status-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(token)
        os.replace(tmp, token_file(port))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return token


def read(port: int) -> str | None:
    try:
        token = token_file(port).read_text().strip()
    except OSError:
        return None
    return token if token.startswith(PREFIX) else None


def remove(port: int, token: str) -> None:
    """Remove the file, unless another server on this port (after a restart) has replaced it with its own."""
    if read(port) == token:
        with contextlib.suppress(OSError):
            token_file(port).unlink()


def matches(presented: str | None, token: str | None) -> bool:
    return presented is not None and token is not None and secrets.compare_digest(presented.encode(), token.encode())
