"""Owner-only modes for what holds secrets: the data and state folders 0700, the database (with its -wal and -shm),
the credential key and the logs 0600. Applied at every start, so installs made before this are fixed too."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from mlx_manager import paths

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> bool:
    """Create the folder owner-only, or narrow an existing one we own (never someone else's, e.g. a shared /tmp).
    True when an existing folder was narrowed."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    return _narrow(path, DIR_MODE)


def private_file(path: Path) -> bool:
    """Narrow an existing file we own to 0600 (True when it was wider); a missing one is left missing."""
    try:
        return _narrow(path, FILE_MODE)
    except FileNotFoundError:
        return False


def touch_private(path: Path) -> None:
    """Create the file 0600 if missing (so SQLite's -wal and -shm, which copy its mode, are private too)."""
    private_dir(path.parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    private_file(path)


def database_files(db: Path) -> list[Path]:
    return [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"), db.with_name(db.name + "-journal")]


def secure_install() -> list[Path]:
    """Make the state this server keeps private: folders 0700, the database, the key and every log 0600.
    Returns what was narrowed (to log once logging is set up)."""
    folders = (paths.data_dir(), paths.state_dir(), paths.logs_dir())
    narrowed = [folder for folder in folders if private_dir(folder)]
    files = [*database_files(paths.database_file()), paths.credential_key_file()]
    files += [p for p in paths.logs_dir().iterdir() if p.is_file() and not p.is_symlink()]
    return narrowed + [path for path in files if private_file(path)]


def _narrow(path: Path, mode: int) -> bool:
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode) or info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & ~mode == 0:
        return False
    os.chmod(path, mode)
    return True
