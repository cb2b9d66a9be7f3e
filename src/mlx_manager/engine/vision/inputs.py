"""A vision model's prompt: the rendered chat text and its images through the model's processor.

Runs on the model's thread (the processor returns MLX arrays). The processor expands each image placeholder the
chat template wrote into the image's tokens, so the ids here are what the model sees and what usage counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import mlx.core as mx

from mlx_manager.engine.errors import InvalidRequestError
from mlx_manager.engine.loader import LoadedModel

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image

_TENSORS = ("input_ids", "pixel_values", "attention_mask")


@dataclass(frozen=True)
class VisionInputs:
    ids: list[int]
    input_ids: mx.array
    pixel_values: mx.array | None = None
    mask: mx.array | None = None
    # Model-specific extras of the processor's output, e.g. Qwen's image_grid_thw.
    extra: dict[str, Any] = field(default_factory=dict)


def prepare_inputs(
    lm: LoadedModel, text: str, images: Sequence[Image], audios: Sequence[np.ndarray] = ()
) -> VisionInputs:
    """`audios`: 16 kHz mono samples for a model that hears; the processor turns them into its features."""
    from mlx_vlm.utils import prepare_inputs as vlm_prepare_inputs

    parts = lm.vision
    assert parts is not None
    try:
        out = vlm_prepare_inputs(
            parts.processor,
            images=list(images) or None,
            audio=list(audios) or None,
            prompts=text,
            image_token_index=parts.image_token_id,
            add_special_tokens=parts.add_special_tokens,
        )
    except Exception as exc:  # processors raise anything from ValueError to IndexError on a bad prompt
        raise InvalidRequestError(
            f"The model's processor could not prepare this prompt with {len(images)} image(s) and"
            f" {len(audios)} audio input(s): {exc}",
            param="messages",
        ) from exc
    input_ids = out["input_ids"]
    ids = cast(list[int], input_ids[0].tolist())
    if images and parts.image_token_id is not None and parts.image_token_id not in ids:
        # Otherwise the model would silently answer without seeing the images.
        raise InvalidRequestError(
            f"The chat template of '{lm.info.id}' did not place the {len(images)} image(s) in the prompt.",
            param="messages",
        )
    if audios and (parts.audio_token_id is None or parts.audio_token_id not in ids):
        raise InvalidRequestError(
            f"The chat template of '{lm.info.id}' did not place the {len(audios)} audio input(s) in the prompt.",
            param="messages",
        )
    return VisionInputs(
        ids=ids,
        input_ids=input_ids,
        pixel_values=out.get("pixel_values"),
        mask=out.get("attention_mask"),
        extra={k: v for k, v in out.items() if k not in _TENSORS and v is not None},
    )


def token_stream(
    lm: LoadedModel, inputs: VisionInputs | None, prompt: list[int], generate_kwargs: dict[str, Any]
) -> Iterator[tuple[int, mx.array]]:
    """(token, logprobs) pairs from mlx-vlm's generate_step: the image prefill, then one token per step.
    `inputs` None: a prompt of token ids only (a completion)."""
    from mlx_vlm.generate import generate_step

    if inputs is None:
        inputs = VisionInputs(ids=prompt, input_ids=mx.array([prompt]))
    processors = [_WholePrompt(p, inputs.ids) for p in generate_kwargs.get("logits_processors") or []]
    kwargs = {**generate_kwargs, "logits_processors": processors, **inputs.extra}
    steps = generate_step(inputs.input_ids, lm.model, inputs.pixel_values, inputs.mask, **kwargs)
    return cast(Iterator[tuple[int, mx.array]], steps)  # generate_step yields token.item(): an int


class _WholePrompt:
    """generate_step hands processors the prompt's last token (after a chunked prefill) and then the new ones;
    the text path hands them the whole prompt first, as repetition penalties expect. This restores that."""

    def __init__(self, processor: Callable[[mx.array, mx.array], mx.array], prompt: list[int]) -> None:
        self.processor = processor
        self.prompt = prompt
        self.head: mx.array | None = None

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        if self.head is None:  # the first call: the part of the prompt generate_step left out
            self.head = mx.array(self.prompt[: max(len(self.prompt) - tokens.size, 0)], dtype=tokens.dtype)
        return self.processor(mx.concatenate([self.head, tokens]), logits)
