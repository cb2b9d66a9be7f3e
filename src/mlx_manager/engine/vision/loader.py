"""Load a vision-language model with mlx-vlm: the model and its processor (tokenizer + image processor)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlx.core as mx

from mlx_manager.engine.load_meter import loading
from mlx_manager.engine.loader import LoadedModel, describe_loaded
from mlx_manager.engine.types import ModelInfo


@dataclass(frozen=True)
class VisionParts:
    """What a vision model needs beyond a text model: the processor that turns text and images into inputs."""

    processor: Any  # mlx-vlm's (or transformers') processor for this model type
    model_type: str
    # The id the image placeholders expand to, for checking that the template placed every image.
    image_token_id: int | None
    # mlx-vlm's rule: some templates (Gemma) write BOS themselves, others expect the tokenizer to add it.
    add_special_tokens: bool
    # The id audio placeholders expand to; None for a model without an audio tower.
    audio_token_id: int | None = None


def load_vision_model(info: ModelInfo) -> LoadedModel:
    """Runs on the model's own thread, like load_model: the arrays belong to that thread's stream."""
    path = Path(info.path)
    with loading(info, "vision model") as meter:
        from mlx_lm.utils import load_config, load_tokenizer
        from mlx_vlm import load as vlm_load
        from mlx_vlm.utils import should_add_special_tokens

        model, processor = vlm_load(str(path))
        mx.eval(model.parameters())
        # mlx-lm's wrapper (streaming detokenizer, eos ids, chat template) is what the engine's text path uses.
        tokenizer = load_tokenizer(path, eos_token_ids=load_config(path).get("eos_token_id"))
    if not tokenizer.has_chat_template and getattr(processor, "chat_template", None):
        # Vision checkpoints often keep the template with the processor (chat_template.json) only.
        tokenizer.chat_template = processor.chat_template
        tokenizer.has_chat_template = True
    config = model.config
    image_token_id = getattr(config, "image_token_id", None) or getattr(config, "image_token_index", None)
    audio_token_id = getattr(config, "audio_token_id", None) if info.audio else None
    parts = VisionParts(
        processor=processor,
        model_type=str(config.model_type),
        image_token_id=image_token_id if isinstance(image_token_id, int) else None,
        add_special_tokens=should_add_special_tokens(str(config.model_type), processor),
        audio_token_id=audio_token_id if isinstance(audio_token_id, int) else None,
    )
    return describe_loaded(info, model, tokenizer, meter.memory(), meter.start, vision=parts)
