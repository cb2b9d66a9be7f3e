"""The credential key file (`credentials.key` in the data dir, 0600): Fernet keys, one a line; the first encrypts,
all decrypt. Created at first start; credentials sealed by older versions (under a key derived from the JWT
secret in the same database) are re-encrypted under it then. `rotate` replaces it (`mlx-manager rotate-secrets`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet
from sqlalchemy import Engine
from sqlmodel import Session, select

from mlx_manager.db.models import Credential
from mlx_manager.file_modes import private_dir, private_file
from mlx_manager.manager.secret_box import SecretBox
from mlx_manager.manager.settings_store import server_secret

log = logging.getLogger(__name__)


class KeyFileError(RuntimeError):
    pass


def read_keys(path: Path) -> list[bytes]:
    """The keys in the file, [] when there is none; a file that holds anything else is an error, never replaced."""
    try:
        lines = path.read_bytes().split()
    except FileNotFoundError:
        return []
    try:
        for line in lines:
            Fernet(line)
    except ValueError as exc:
        raise KeyFileError(
            f"{path} does not hold Fernet keys: restore it from a backup, or delete it (stored routing credentials"
            " then have to be entered again)."
        ) from exc
    if not lines:
        raise KeyFileError(f"{path} is empty: restore it from a backup, or delete it.")
    return lines


def write_keys(path: Path, keys: list[bytes], replace: bool = True) -> bool:
    """Write atomically, 0600 from the start. With replace=False an existing file wins (two servers starting at
    once agree on one key); returns whether this call's keys were written."""
    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".credentials-", suffix=".tmp")  # mkstemp: 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(b"\n".join(keys) + b"\n")
            out.flush()
            os.fsync(out.fileno())
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)  # fails if the file exists: never overwrite a key someone else just made
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def load_keys(path: Path) -> list[bytes]:
    """The keys, a new one made (and saved) when there is no file yet."""
    keys = read_keys(path)
    if not keys:
        if write_keys(path, [Fernet.generate_key()], replace=False):
            log.info("Created the credential key %s", path)
        keys = read_keys(path)
    private_file(path)
    return keys


def open_box(db: Engine, path: Path) -> SecretBox:
    """The credential box for a server start: its key file, with older versions' credentials moved under it."""
    box = SecretBox(load_keys(path))
    moved = reseal(db, box, SecretBox.legacy(server_secret(db)))
    if moved:
        log.warning("Re-encrypted %d routing credential(s) under the credential key %s", moved, path)
    return box


def reseal(db: Engine, box: SecretBox, *older: SecretBox) -> int:
    """Seal again under `box`'s first key every credential it cannot open but an older box can; returns how many.
    The old ciphertext is overwritten (secure_delete) and the WAL truncated, so it does not linger in the files."""
    count = 0
    with Session(db) as session:
        session.connection().exec_driver_sql("PRAGMA secure_delete=ON")
        for row in session.exec(select(Credential)).all():
            if box.open(row.secret_encrypted) is not None:
                continue
            secret = next((s for b in older if (s := b.open(row.secret_encrypted)) is not None), None)
            if secret is None:
                continue
            row.secret_encrypted = box.seal(secret)
            session.add(row)
            count += 1
        session.commit()
        if count:
            session.connection().exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return count


@dataclass(frozen=True)
class Rotation:
    resealed: int
    unreadable: list[str]


def rotate(db: Engine, path: Path) -> Rotation:
    """A new credential key: every credential sealed under it, then the old keys dropped from the file. The file
    holds new and old keys while the database changes, so a crash in between loses nothing."""
    old = SecretBox(load_keys(path))
    legacy = SecretBox.legacy(server_secret(db))
    new_key = Fernet.generate_key()
    write_keys(path, [new_key, *read_keys(path)])
    new = SecretBox([new_key])
    resealed = reseal(db, new, old, legacy)
    with Session(db) as session:
        unreadable = [c.name for c in session.exec(select(Credential)).all() if new.open(c.secret_encrypted) is None]
    write_keys(path, [new_key])
    return Rotation(resealed, unreadable)
