"""Servers shared by several API test modules that need the same non-default settings (one start each)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mlx_manager.testing.server import ServerProcess, run_server


@pytest.fixture(scope="session")
def one_slot_server(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One running and one queued sequence per model (max_num_seqs 1, max_waiting 1); no accounts, so tests that
    only send requests can share it."""
    env = {"MLX_MANAGER_MAX_NUM_SEQS": "1", "MLX_MANAGER_MAX_WAITING": "1"}
    with run_server(tmp_path_factory.mktemp("one-slot"), ["--model-dir", str(tiny_models_dir)], env=env) as srv:
        yield srv
