"""Models are found in model folders and in a hub-layout cache; broken ones are skipped."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from mlx_manager.engine.discovery import discover_models, hf_cache_dir


def _hub_snapshot(cache: Path, repo: str, source: Path, revision: str = "abc123") -> Path:
    """Lay a model out as huggingface_hub does: blobs, a snapshot of symlinks, refs/main."""
    repo_dir = cache / f"models--{repo.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (repo_dir / "blobs").mkdir()
    for f in source.iterdir():
        if f.is_file() and not f.name.startswith("."):
            blob = repo_dir / "blobs" / f"blob-{f.name}"
            shutil.copy(f, blob)
            (snapshot / f.name).symlink_to(blob)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(revision)
    return snapshot


def test_hub_cache_models_are_listed_by_repo_id(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    _hub_snapshot(tmp_path / "hub", "mlx-community/Tiny-Qwen3", tiny_models["tiny-qwen3"])
    found = discover_models([], tmp_path / "hub")
    info = found["mlx-community/Tiny-Qwen3"]
    assert info.source == "hf-cache" and info.family == "qwen3" and info.size_bytes > 0


def test_folder_models_use_the_folder_name(tiny_models_dir: Path) -> None:
    found = discover_models([tiny_models_dir], None)
    assert {"tiny-llama", "tiny-qwen3", "tiny-mistral", "tiny-gemma3", "tiny-llama-4bit"} <= set(found)
    assert found["tiny-llama-4bit"].quantization_bits == 4


def test_a_model_folder_given_directly_is_found(tiny_models: dict[str, Path]) -> None:
    assert list(discover_models([tiny_models["tiny-gemma3"]], None)) == ["tiny-gemma3"]


def test_broken_folders_are_skipped_with_a_warning(
    tmp_path: Path, tiny_models: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    good = tmp_path / "models" / "good"
    shutil.copytree(tiny_models["tiny-llama"], good)
    no_weights = tmp_path / "models" / "no-weights"
    shutil.copytree(tiny_models["tiny-llama"], no_weights)
    for f in no_weights.glob("*.safetensors"):
        f.unlink()
    bad_type = tmp_path / "models" / "bad-type"
    bad_type.mkdir()
    (bad_type / "config.json").write_text('{"model_type": "not-a-real-arch"}')
    broken_json = tmp_path / "models" / "broken-json"
    broken_json.mkdir()
    (broken_json / "config.json").write_text("{")
    with caplog.at_level(logging.WARNING):
        found = discover_models([tmp_path / "models"], None)
    assert list(found) == ["good"]
    for name in ("no-weights", "bad-type", "broken-json"):
        assert name in caplog.text


def test_partial_hub_download_is_not_listed(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    snapshot = _hub_snapshot(tmp_path / "hub", "org/partial", tiny_models["tiny-llama"])
    (snapshot / "model.safetensors").resolve().unlink()  # dangling symlink, as an interrupted download leaves
    assert "org/partial" not in discover_models([], tmp_path / "hub")


def test_hf_cache_dir_honours_hf_hub_cache_and_hf_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", "/x/hf")
    assert hf_cache_dir() == Path("/x/hf/hub")
    monkeypatch.setenv("HF_HUB_CACHE", "/y/cache")
    assert hf_cache_dir() == Path("/y/cache")
