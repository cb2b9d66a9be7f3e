"""Where MLX Manager keeps its files: XDG directories, or everything under MLX_MANAGER_HOME."""

from __future__ import annotations

import os
from pathlib import Path

APP = "mlx-manager"


def _home_override() -> Path | None:
    value = os.environ.get("MLX_MANAGER_HOME")
    return Path(value).expanduser() if value else None


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    return Path(value).expanduser() if value else Path.home() / fallback


def config_dir() -> Path:
    home = _home_override()
    return home if home else _xdg("XDG_CONFIG_HOME", ".config") / APP


def state_dir() -> Path:
    """PID file, run state and logs."""
    home = _home_override()
    return home / "state" if home else _xdg("XDG_STATE_HOME", ".local/state") / APP


def data_dir() -> Path:
    """Imported models and, later, the database."""
    home = _home_override()
    return home if home else _xdg("XDG_DATA_HOME", ".local/share") / APP


def cache_dir() -> Path:
    home = _home_override()
    return home / "cache" if home else _xdg("XDG_CACHE_HOME", ".cache") / APP


def models_dir() -> Path:
    return data_dir() / "models"


def logs_dir() -> Path:
    return state_dir() / "logs"


def pid_file() -> Path:
    return state_dir() / "server.pid"


def run_file() -> Path:
    """JSON describing the running server (pid, address, start time)."""
    return state_dir() / "server.json"


def user_config_file() -> Path:
    return config_dir() / "config.toml"


def database_file() -> Path:
    return data_dir() / "mlx-manager.db"


def credential_key_file() -> Path:
    """The key that encrypts routing credentials, kept apart from the database (manager/credential_keys.py)."""
    return data_dir() / "credentials.key"
