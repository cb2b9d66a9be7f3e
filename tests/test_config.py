"""Settings resolve CLI > environment > TOML (local over user) > defaults."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from mlx_manager import paths
from mlx_manager.config import load_settings


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLX_MANAGER_HOME", str(tmp_path / "home"))
    for var in ("MLX_MANAGER_PORT", "MLX_MANAGER_HOST", "MLX_MANAGER_MODEL_DIRS", "MLX_MANAGER_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


def test_defaults(home: Path) -> None:
    s = load_settings()
    assert (s.host, s.port, s.max_models, s.api_key) == ("127.0.0.1", 8080, 4, None)
    assert s.all_model_dirs() == [home / "models"]


def test_precedence_cli_over_env_over_toml(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (home / "config.toml").write_text("port = 1111\nmax_models = 7\nhost = '127.0.0.2'\n")
    assert load_settings().port == 1111
    Path("mlx-manager.toml").write_text("port = 2222\n")
    s = load_settings()
    assert (s.port, s.max_models, s.host) == (2222, 7, "127.0.0.2")
    monkeypatch.setenv("MLX_MANAGER_PORT", "3333")
    assert load_settings().port == 3333
    assert load_settings(port=4444).port == 4444


def test_model_dirs_from_env_are_path_separated(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLX_MANAGER_MODEL_DIRS", "/a:/b")
    assert load_settings().model_dirs == [Path("/a"), Path("/b")]


def test_home_relocates_all_state(home: Path) -> None:
    assert paths.pid_file().is_relative_to(home)
    assert paths.logs_dir().is_relative_to(home)
    assert paths.models_dir() == home / "models"
    assert paths.user_config_file() == home / "config.toml"


def test_invalid_values_are_rejected(home: Path) -> None:
    with pytest.raises(ValueError, match="port"):
        load_settings(port=70000)


def test_a_typo_in_the_toml_file_is_an_error_not_ignored(home: Path) -> None:
    (home / "config.toml").write_text("max_model = 2\n")
    with pytest.raises(ValueError, match="max_model"):
        load_settings()


def test_generation_defaults_merge_toml_env_and_cli_key_by_key(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (home / "config.toml").write_text("[generation]\ntemperature = 0.3\ntop_p = 0.8\n")
    monkeypatch.setenv("MLX_MANAGER_GENERATION__TOP_K", "20")
    s = load_settings(generation={"top_p": "0.5"})
    assert s.generation.defaults().items() == {"temperature": 0.3, "top_p": 0.5, "top_k": 20}


def test_generation_defaults_out_of_range_or_misspelt_are_errors(home: Path) -> None:
    with pytest.raises(ValueError, match="temperature"):
        load_settings(generation={"temperature": 3})
    (home / "config.toml").write_text("[generation]\ntemprature = 0.3\n")
    with pytest.raises(ValueError, match="temprature"):
        load_settings()


def test_the_settings_module_imports_nothing_of_the_engine_manager_or_api() -> None:
    # config.py is the bottom of the package: everything reads its defaults, it reads nobody's.
    code = "import sys, mlx_manager.config; print(sorted(m for m in sys.modules if m.startswith('mlx_manager.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert ast.literal_eval(out) == ["mlx_manager.config", "mlx_manager.paths", "mlx_manager.sampling_defaults"]
