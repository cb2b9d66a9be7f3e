"""Vision-language models are told apart from text models on disk, and image parts survive tool injection."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import mlx.core as mx

from mlx_manager.engine import tool_prompt
from mlx_manager.engine.discovery import discover_models
from mlx_manager.testing.tiny_vlm import NAME, write_tiny_vlm


def test_a_vision_checkpoint_is_found_as_a_vision_model(tiny_vlm: Path) -> None:
    info = discover_models([tiny_vlm.parent], None)[NAME]
    assert info.vision and info.task == "generate"
    assert info.family == "qwen2.5" and info.model_type == "qwen2_vl" and info.context_length == 2048


def test_text_models_are_not_vision_models(tiny_models_dir: Path) -> None:
    assert not any(info.vision for info in discover_models([tiny_models_dir], None).values())


def test_a_text_only_conversion_of_a_vlm_stays_a_text_model(tmp_path: Path, tiny_vlm: Path) -> None:
    # mlx-lm's conversions of a VLM keep the config (vision_config included) but drop the vision tower.
    folder = tmp_path / "text-only"
    shutil.copytree(tiny_vlm, folder)
    weights = mx.load(str(folder / "model.safetensors"))
    text = {k: v for k, v in weights.items() if not k.startswith("vision_tower")}  # type: ignore[union-attr]
    mx.save_safetensors(str(folder / "model.safetensors"), text)
    assert not discover_models([tmp_path], None)["text-only"].vision


def test_injected_tools_keep_the_image_parts_of_merged_user_turns() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    image_turn = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "and this?"}]}
    messages = [
        {"role": "user", "content": "Look."},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "1", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "1", "content": "ok"},
        image_turn,
    ]
    out, _ = tool_prompt.prepare(messages, tools, template="{{ messages }}")  # a template without tools
    merged = out[-1]["content"]
    assert merged[0] == {"type": "text", "text": "Tool result: ok"}
    assert merged[-2:] == image_turn["content"]


def test_the_tiny_vlm_is_written_identically_each_time(tmp_path: Path, tiny_vlm: Path) -> None:
    again = write_tiny_vlm(tmp_path)
    for name in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (
            hashlib.sha256((again / name).read_bytes()).digest()
            == hashlib.sha256((tiny_vlm / name).read_bytes()).digest()
        )
