"""Small helpers shared by the tiny-model tests."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from mlx_lm import load
from transformers import AutoTokenizer


@functools.cache
def hf_tokenizer(folder: Path) -> Any:
    return AutoTokenizer.from_pretrained(str(folder))


def folder_of(tiny_dir: Path, family: str) -> Path:
    return tiny_dir / f"tiny-{family}"


def load_model(folder: Path) -> tuple[Any, Any]:
    loaded = load(str(folder))
    return loaded[0], loaded[1]


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
