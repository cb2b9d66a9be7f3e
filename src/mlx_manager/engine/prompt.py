"""Turn a chat or text prompt into token ids with the model's own template."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from mlx_lm.tokenizer_utils import TokenizerWrapper

from mlx_manager.config import DEFAULT_VOLATILE_PATTERNS
from mlx_manager.engine import tool_prompt
from mlx_manager.engine.errors import InvalidRequestError
from mlx_manager.engine.prompt_limits import check_chars
from mlx_manager.engine.structured import reasoning_opened
from mlx_manager.engine.types import ChatPrompt, Prompt, TextPrompt


def strip_volatile(prompt: ChatPrompt, patterns: Sequence[re.Pattern[str]]) -> ChatPrompt:
    """Remove volatile markers from system messages, so equal instructions give equal prompt heads."""
    if not patterns:
        return prompt
    messages: list[dict[str, Any]] = []
    for message in prompt.messages:
        content = message.get("content")
        if message.get("role") == "system" and isinstance(content, str):
            for pattern in patterns:
                content = pattern.sub("", content)
            message = {**message, "content": content}
        messages.append(message)
    return replace(prompt, messages=messages)


def render_chat(
    tokenizer: TokenizerWrapper,
    prompt: ChatPrompt,
    reasoning: tuple[str, str] | None = None,
    context: tuple[int | None, int] = (None, 0),
) -> tuple[list[int], str]:
    """Token ids and the rendered text (the text tells whether the template opened a reasoning block).

    `reasoning` is the family's tags: a prompt that allows no reasoning has thinking switched off in the
    template, and a block the template opens anyway is closed empty (as Qwen3's template does when switched off).
    `context` (context length, the tokenizer's longest token in characters): text that cannot fit is refused
    before it is tokenized.
    """
    if not tokenizer.has_chat_template:
        raise InvalidRequestError(
            "This model has no chat template, so it cannot serve chat completions. Use /v1/completions.",
            param="model",
        )
    messages, tool_kwargs = tool_prompt.prepare(prompt.messages, prompt.tools, tokenizer.chat_template)
    # A prefilled reply is continued where it stops instead of opening a new assistant turn.
    turn = {"continue_final_message": True} if prompt.continue_final else {"add_generation_prompt": True}
    kwargs = prompt.template_kwargs if prompt.allow_reasoning else {**prompt.template_kwargs, "enable_thinking": False}
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, **turn, **tool_kwargs, **kwargs)
    except Exception as exc:  # jinja raise_exception() and template errors
        raise InvalidRequestError(f"The model's chat template rejected the messages: {exc}") from exc
    text = str(text)
    if not prompt.allow_reasoning and reasoning is not None and reasoning_opened(text, reasoning):
        text += reasoning[1] + "\n\n"
    check_chars(text, *context, param="messages")
    return list(tokenizer.encode(text, add_special_tokens=False)), text


def tokenize(
    tokenizer: TokenizerWrapper,
    prompt: Prompt,
    vocab_size: int,
    reasoning: tuple[str, str] | None = None,
    context: tuple[int | None, int] = (None, 0),
) -> tuple[list[int], str | None]:
    """Prompt token ids, plus the rendered text for chat prompts (`reasoning`: the family's tags; `context`: as
    for render_chat)."""
    if isinstance(prompt, ChatPrompt):
        return render_chat(tokenizer, prompt, reasoning, context)
    if prompt.token_ids is not None:
        bad = [t for t in prompt.token_ids if t < 0 or t >= vocab_size]
        if bad:
            raise InvalidRequestError(
                f"Token ids out of range for this model's vocabulary of {vocab_size}: {bad[:5]}",
                param="prompt",
            )
        return list(prompt.token_ids), None
    check_chars(prompt.text or "", *context, param="prompt")
    return list(tokenizer.encode(prompt.text or "", add_special_tokens=True)), None


__all__ = ["DEFAULT_VOLATILE_PATTERNS", "TextPrompt", "render_chat", "strip_volatile", "tokenize"]
