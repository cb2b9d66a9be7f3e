"""cpu_dtype from the command line, the environment and the TOML file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mlx_manager.api.app import engine_config
from mlx_manager.config import load_settings
from mlx_manager.testing.server import free_port, server_env


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLX_MANAGER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLX_MANAGER_CPU_DTYPE", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


def test_cpu_dtype_defaults_to_auto_and_reaches_the_pool_from_toml_env_and_cli(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings().cpu_dtype == "auto"
    (home / "config.toml").write_text('cpu_dtype = "keep"\n')
    assert engine_config(load_settings()).pool.cpu_dtype == "keep"
    monkeypatch.setenv("MLX_MANAGER_CPU_DTYPE", "float32")
    assert engine_config(load_settings()).pool.cpu_dtype == "float32"
    assert load_settings(cpu_dtype="auto").cpu_dtype == "auto"


def test_an_unknown_cpu_dtype_on_the_command_line_is_refused_naming_the_setting(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mlx_manager", "serve", "--port", str(free_port()), "--cpu-dtype", "float16"],
        env=server_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert "invalid configuration" in out.stderr and "cpu_dtype" in out.stderr
