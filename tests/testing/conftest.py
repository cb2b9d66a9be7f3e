"""The tiny models, written once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlx_manager.testing.tiny_models import write_tiny_models


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny-models")
    write_tiny_models(out)
    return out
